"""What the framework adapters (LlamaIndex, LangChain) share, so that they stay thin.

The adapters only translate between their framework's objects and
:class:`~qwen3_rerank_core.Qwen3Reranker`; the checks and the settings logic
live here, once, with the same error messages as the core's. Their engine
settings are not written in the adapters either: :func:`engine_model` adds one
pydantic field per :data:`ENGINE_FIELDS` name, whose type, default and
description are :class:`~qwen3_rerank_core.RerankConfig`'s own, so a change to
a setting reaches both adapters with no edit there.

Example::

    >>> from qwen3_rerank_core.adapters import check_items, check_query
    >>> check_query("what is 2+2?")
    'what is 2+2?'
    >>> check_items(["a", "b"], str, name="documents", kinds="str")
    ['a', 'b']
    >>> check_items("ab", str, name="documents", kinds="str")
    Traceback (most recent call last):
    ...
    TypeError: documents must be a list of str, got str: 'ab'
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, PrivateAttr, SecretStr, field_validator
from pydantic import create_model as pydantic_create_model

from ._backends import backend_spec
from ._config import RerankConfig
from ._reranker import Qwen3Reranker
from ._validation import _preview, check_instruction, check_query, check_sequence

__all__ = [
    "ENGINE_FIELDS",
    "build_reranker",
    "check_instruction",
    "check_items",
    "check_optional_instruction",
    "check_query",
    "engine_annotation",
    "engine_field",
    "engine_model",
    "settings_with_reranker",
]

#: Adapter fields that configure the engine; with ``reranker=`` they are read
#: from that reranker's config instead.
ENGINE_FIELDS: tuple[str, ...] = (
    "model",
    "backend",
    "max_length",
    "device",
    "dtype",
    "max_batch_tokens",
    "max_batch_size",
    "show_progress",
    "base_url",
    "api_key",
)


_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RerankConfig)}


def _is_secret(name: str) -> bool:
    """Settings that RerankConfig keeps out of its repr (``api_key``) are secrets."""
    return not _CONFIG_FIELDS[name].repr


def _registered_backend(name: str) -> str:
    backend_spec(name)  # ValueError naming the registered backends
    return name


def _as_adapter_type(hint: Any, *, secret: bool) -> Any:
    """A config type as an adapter field: ``tuple[X, ...]`` -> ``list[X]``, a secret
    ``str`` -> ``SecretStr`` (unions are translated member by member)."""
    if hint is str and secret:
        return SecretStr
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]  # type: ignore[misc]
    members = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, type(int | None)) else ()
    )
    if members:
        return functools.reduce(operator.or_, (_as_adapter_type(m, secret=secret) for m in members))
    return hint


def engine_annotation(name: str) -> Any:
    """The adapter field type of the setting ``name``, derived from RerankConfig's."""
    if name == "backend":  # a registered name: checked against the registry, not a Literal
        return Annotated[str, AfterValidator(_registered_backend)]
    hint = typing.get_type_hints(RerankConfig)[name]
    return _as_adapter_type(hint, secret=_is_secret(name))


def engine_field(name: str) -> Any:
    """A pydantic ``Field`` with RerankConfig's default and description of ``name``
    (a secret is excluded from serialization)."""
    config_field = _CONFIG_FIELDS[name]
    extra: dict[str, Any] = {"exclude": True} if _is_secret(name) else {}
    return Field(default=config_field.default, description=config_field.metadata["doc"], **extra)


def _adapter_reranker(self: Any) -> Qwen3Reranker:
    """The engine; pass it as ``reranker=`` to share the loaded model."""
    engine: Qwen3Reranker = self._reranker
    return engine


def _shared_fields(items: str) -> dict[str, Any]:
    """The fields every adapter has: the engine settings and the call options."""
    fields: dict[str, Any] = {n: (engine_annotation(n), engine_field(n)) for n in ENGINE_FIELDS}
    fields["instruction"] = (
        str | None,
        Field(default=None, description="Task instruction; None uses the reranker's default."),
    )
    fields["top_n"] = (
        int | None,
        Field(
            default=None, ge=1, description=f"How many {items} to return, best first; None: all."
        ),
    )
    fields["min_score"] = (
        float | None,
        Field(
            default=None,
            ge=0.0,
            le=1.0,
            description=f"Drop {items} scoring below this; None: keep.",
        ),
    )
    fields["reranker_kwargs"] = (
        dict[str, Any],
        Field(
            default_factory=dict,
            description="Other RerankConfig settings, e.g. local_files_only, timeout, max_retries.",
        ),
    )
    return fields


def _adapter_init(base: type[BaseModel]) -> Callable[..., None]:
    """The adapters' constructor: ``reranker=`` an existing engine, or one built from the fields."""

    def __init__(self: Any, *, reranker: Qwen3Reranker | None = None, **data: Any) -> None:
        base.__init__(self, **settings_with_reranker(reranker, data))
        self._reranker = (
            reranker
            if reranker is not None
            else build_reranker(
                {field: getattr(self, field) for field in ENGINE_FIELDS},
                self.reranker_kwargs,
                owner=type(self).__name__,
            )
        )

    return __init__


def engine_model(base: type[Any], name: str, *, module: str, items: str) -> type[Any]:
    """``base`` (a framework's pydantic class) with what every adapter has in common.

    That is: one field per :data:`ENGINE_FIELDS` setting (type, default and
    description from :class:`RerankConfig`), ``instruction``, ``top_n`` and
    ``min_score`` (which apply to the ``items``: "documents", "nodes") and
    ``reranker_kwargs``, a constructor taking ``reranker=`` (an existing
    :class:`Qwen3Reranker`, else one is built from the fields) and the
    ``reranker`` property. An adapter subclasses the result.
    """
    return pydantic_create_model(
        name,
        __base__=base,
        __module__=module,
        __validators__={
            "_check_instruction": field_validator("instruction")(check_optional_instruction)
        },
        __namespace__={
            "_reranker": PrivateAttr(),
            "__init__": _adapter_init(base),
            "reranker": property(_adapter_reranker),
        },
        **_shared_fields(items),
    )


def check_optional_instruction(instruction: object) -> str | None:
    """``None`` or a non-empty ``str`` (for an adapter's ``instruction`` field)."""
    return None if instruction is None else check_instruction(instruction)


def check_items(
    items: object, types: type | tuple[type, ...], *, name: str, kinds: str
) -> list[Any]:
    """A new list of ``items``, which must be a sequence (not a ``str``, a generator,
    a set or a dict) of ``types``; errors name the bad value and its index."""
    return check_sequence(
        items, name=name, what=f"a list of {kinds}", item_types=types, item_kind=kinds
    )


def settings_with_reranker(reranker: object, data: dict[str, Any]) -> dict[str, Any]:
    """An adapter's constructor data, completed from ``reranker=`` when one is given.

    ``reranker`` must be a :class:`Qwen3Reranker` or ``None``; with one, engine
    settings in ``data`` are refused (they would be ignored) and the engine
    fields are filled from its config so the adapter shows the truth.
    """
    if reranker is None:
        return data
    if not isinstance(reranker, Qwen3Reranker):
        raise TypeError(
            f"reranker must be a Qwen3Reranker or None, got {type(reranker).__name__}: "
            f"{_preview(reranker)}"
        )
    given = sorted(set(data) & {*ENGINE_FIELDS, "reranker_kwargs"})
    if given:
        raise ValueError(f"pass either reranker= or model settings, not both: {given}")
    return {**data, **{name: getattr(reranker.config, name) for name in ENGINE_FIELDS}}


def build_reranker(
    fields: Mapping[str, Any], reranker_kwargs: Mapping[str, Any], *, owner: str
) -> Qwen3Reranker:
    """The engine of an adapter whose ``fields`` hold :data:`ENGINE_FIELDS` (``api_key``
    may be a pydantic ``SecretStr``) and whose ``reranker_kwargs`` hold other settings."""
    clash = sorted(set(reranker_kwargs) & {*ENGINE_FIELDS, "instruction"})
    if clash:
        raise ValueError(f"set {clash} as {owner} fields, not in reranker_kwargs")
    values = {name: fields[name] for name in ENGINE_FIELDS}
    secret = values["api_key"]
    if secret is not None and not isinstance(secret, str):
        values["api_key"] = secret.get_secret_value()
    if isinstance(values["base_url"], list):
        values["base_url"] = tuple(values["base_url"])
    return Qwen3Reranker(RerankConfig.from_dict({**reranker_kwargs, **values}))
