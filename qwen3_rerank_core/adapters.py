"""What the framework adapters (LlamaIndex, LangChain) share, so that they stay thin.

The adapters only translate between their framework's objects and
:class:`~qwen3_rerank_core.Qwen3Reranker`; the checks and the settings logic
live here, once, with the same error messages as the core's.

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

from collections.abc import Mapping, Sequence
from typing import Any

from ._config import RerankConfig
from ._reranker import Qwen3Reranker
from ._validation import _preview, check_instruction, check_query

__all__ = [
    "ENGINE_FIELDS",
    "build_reranker",
    "check_instruction",
    "check_items",
    "check_optional_instruction",
    "check_query",
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


def check_optional_instruction(instruction: object) -> str | None:
    """``None`` or a non-empty ``str`` (for an adapter's ``instruction`` field)."""
    return None if instruction is None else check_instruction(instruction)


def check_items(
    items: object, types: type | tuple[type, ...], *, name: str, kinds: str
) -> list[Any]:
    """A new list of ``items``, which must be a sequence (not a ``str``, a generator,
    a set or a dict) of ``types``; errors name the bad value and its index."""
    if isinstance(items, (str, bytes, bytearray)) or not isinstance(items, Sequence):
        raise TypeError(
            f"{name} must be a list of {kinds}, got {type(items).__name__}: {_preview(items)}"
        )
    checked = list(items)
    for i, item in enumerate(checked):
        if not isinstance(item, types):
            raise TypeError(
                f"{name}[{i}] must be a {kinds}, got {type(item).__name__}: {_preview(item)}"
            )
    return checked


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
