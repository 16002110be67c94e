"""What the framework adapters (LlamaIndex, LangChain) share, so that they stay thin.

The adapters only translate between their framework's objects and
:class:`~qwen3_rerank_core.Qwen3Reranker`; the checks and the settings logic
live here, once, with the same error messages as the core's. Their fields are
declared here too, once, as typed class attributes of :class:`AdapterSettings`
(which both adapters subclass), so that type checkers and IDEs see every
setting: one field per :data:`ENGINE_FIELDS` name, with
:class:`~qwen3_rerank_core.RerankConfig`'s type, default and description
(``tests/test_typing_adapters.py`` keeps them equal, and fails when a
RerankConfig setting is neither an adapter field nor listed in
:data:`NOT_ADAPTER_FIELDS` with its reason).

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
import inspect
import logging
import os
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ._backends import backend_spec
from ._config import CacheSetting, RerankConfig
from ._fusion import Fusion, _finite
from ._reranker import Qwen3Reranker
from ._validation import _preview, check_instruction, check_query, check_sequence

ItemT = TypeVar("ItemT")
logger = logging.getLogger("qwen3_rerank_core")

__all__ = [
    "ENGINE_FIELDS",
    "NOT_ADAPTER_FIELDS",
    "AdapterSettings",
    "build_reranker",
    "check_instruction",
    "check_items",
    "check_optional_instruction",
    "check_query",
    "engine_field",
    "settings_with_reranker",
]

#: The RerankConfig settings that are *not* adapter fields, each with the reason.
#: Every other setting is one (:data:`ENGINE_FIELDS`): a new RerankConfig setting
#: needs a field on :class:`AdapterSettings` or an entry here, or the tests fail.
NOT_ADAPTER_FIELDS: Mapping[str, str] = {
    "instruction": "an adapter field of its own: the call option (None: the reranker's "
    "default), not an engine setting, and never copied from reranker=",
    **dict.fromkeys(
        (
            "reuse_prefix",
            "coalesce_calls",
            "local_files_only",
            "attn_implementation",
            "compile",
            "timeout",
            "max_retries",
            "max_docs_per_request",
            "max_concurrency",
            "prompt_format",
        ),
        "an advanced setting, rarely changed: set it in reranker_kwargs",
    ),
}

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RerankConfig)}

#: Adapter fields that configure the engine: every RerankConfig setting not in
#: :data:`NOT_ADAPTER_FIELDS`, in RerankConfig's order; with ``reranker=`` they
#: are read from that reranker's config instead.
ENGINE_FIELDS: tuple[str, ...] = tuple(n for n in _CONFIG_FIELDS if n not in NOT_ADAPTER_FIELDS)


def _is_secret(name: str) -> bool:
    """Settings that RerankConfig keeps out of its repr (``api_key``) are secrets."""
    return not _CONFIG_FIELDS[name].repr


def _registered_backend(name: str) -> str:
    backend_spec(name)  # ValueError naming the registered backends
    return name


def _as_secret(value: SecretStr | str | None) -> SecretStr | None:
    """``api_key`` is typed ``SecretStr | str | None`` so that a plain ``str`` type-checks;
    the value kept is a ``SecretStr`` (or None)."""
    return SecretStr(value) if isinstance(value, str) else value


def _dump_cache(cache: CacheSetting) -> str | None:
    """A cache setting as text: the path, or the store's type (a store is an object)."""
    if cache is None or isinstance(cache, str):
        return cache
    if isinstance(cache, os.PathLike):
        return os.fspath(cache)
    return f"<{type(cache).__name__}>"


#: The ``cache`` field: RerankConfig's type, checked by RerankConfig when the engine is
#: built (a store is any object with ``mget``/``mset``); dumped as a path or a type name.
CacheField = Annotated[
    CacheSetting, PlainValidator(lambda cache: cache), PlainSerializer(_dump_cache)
]


def engine_field(name: str) -> Any:
    """A pydantic ``Field`` with RerankConfig's default and description of ``name``
    (a secret is excluded from serialization and from the repr)."""
    config_field = _CONFIG_FIELDS[name]
    extra: dict[str, Any] = {"exclude": True, "repr": False} if _is_secret(name) else {}
    return Field(default=config_field.default, description=config_field.metadata["doc"], **extra)


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


# ------------------------------------------------------------ hybrid ranking
#: Where a signal's value comes from: a metadata key, or a callable on the item
#: (a LlamaIndex ``NodeWithScore``, a LangChain ``Document``) that returns it.
SignalSource = Union[str, Callable[[Any], Any]]  # noqa: UP007 (a runtime alias on 3.10)


def check_fusion(value: object) -> Fusion | None:
    """``None``, a :class:`~qwen3_rerank_core.Fusion`, or its spec string (read by
    :meth:`Fusion.from_spec <qwen3_rerank_core.Fusion.from_spec>`).

    Example::

        >>> check_fusion("relevance=0.7,first_stage=0.3").first_stage
        0.3
    """
    if value is None or isinstance(value, Fusion):
        return value
    if isinstance(value, str):
        return Fusion.from_spec(value)
    raise TypeError(
        f"fusion must be a Fusion, a fusion spec str or None, got {type(value).__name__}: "
        f"{_preview(value)}"
    )


def check_signal_sources(value: object) -> dict[str, SignalSource]:
    """A new dict of signal name -> metadata key (a non-empty ``str``) or callable."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"signals must be a mapping of name -> metadata key or callable, got "
            f"{type(value).__name__}: {_preview(value)}"
        )
    out: dict[str, SignalSource] = {}
    for name, source in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"signal names must be non-empty str, got {name!r}")
        if isinstance(source, str) and not source:
            raise ValueError(f"signals[{name!r}] must be a non-empty metadata key, got ''")
        if not isinstance(source, str) and not callable(source):
            raise TypeError(
                f"signals[{name!r}] must be a metadata key (str) or a callable, got "
                f"{type(source).__name__}: {_preview(source)}"
            )
        out[name] = source
    return out


def _source_name(source: SignalSource) -> str:
    if isinstance(source, str):
        return source
    return f"<callable {getattr(source, '__qualname__', type(source).__name__)}>"


#: The ``fusion`` field of an adapter: a Fusion, a spec string or None; dumped as the spec.
#: ``str`` is in the type so that a spec string type-checks; the value is a Fusion or None.
FusionField = Annotated[
    Union[Fusion, str, None],  # noqa: UP007
    PlainValidator(check_fusion),
    PlainSerializer(lambda f: None if f is None else f.spec),
]
#: The ``signals`` field: name -> metadata key or callable; dumped with the callables' names.
SignalsField = Annotated[
    dict[str, SignalSource],
    PlainValidator(check_signal_sources),
    PlainSerializer(lambda m: {name: _source_name(s) for name, s in m.items()}),
]


def check_fusion_settings(
    fusion: Fusion | None, signals: Mapping[str, SignalSource], others: Mapping[str, object]
) -> None:
    """An adapter's fusion fields agree: ``signals`` and ``others`` (the adapter's own
    options that only fusion uses) need ``fusion``, and ``signals`` names exactly the
    signals that ``fusion`` weighs."""
    if fusion is None:
        given = [name for name, v in {"signals": signals, **others}.items() if v]
        if given:
            raise ValueError(
                f"fusion= (a Fusion or a fusion spec) is needed for {', '.join(given)}"
            )
        return
    unweighted = sorted(set(signals) - set(fusion.signals))
    if unweighted:
        raise ValueError(
            f"signals {unweighted} have no weight in fusion.signals "
            f"(weights for: {sorted(fusion.signals) or 'none'})"
        )
    sourceless = sorted(set(fusion.signals) - set(signals))
    if sourceless:
        raise ValueError(
            f"fusion weighs signals {sourceless} but signals= says nowhere where their "
            "values come from (a metadata key or a callable each)"
        )


#: ``reranker``'s default: the adapter builds its engine from its settings.
_BUILT_FROM_SETTINGS: Any = None


class AdapterSettings(BaseModel):
    """The fields and construction every adapter has in common; an adapter subclasses
    it next to its framework's pydantic base (``class QwenRerank(AdapterSettings,
    BaseNodePostprocessor)``).

    The fields are typed class attributes, so type checkers and IDEs see them:
    one per :data:`ENGINE_FIELDS` setting (type, default and description of
    :class:`RerankConfig`'s; a ``tuple`` there is a ``list`` here, and ``api_key``
    is kept as a ``SecretStr``), the call options ``instruction``, ``top_n`` and
    ``min_score``, ``reranker_kwargs`` (the other RerankConfig settings), the
    hybrid-ranking fields ``fusion`` and ``signals`` and ``reranker``: an existing
    :class:`Qwen3Reranker` to share (engine settings are then refused, and the
    engine fields show its config), else one is built from the fields.

    An adapter names in :attr:`fusion_only_fields` its own options that mean
    nothing without ``fusion`` (checked with it by :func:`check_fusion_settings`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    #: The adapter's own fields that need ``fusion``.
    fusion_only_fields: ClassVar[tuple[str, ...]] = ()

    reranker: Annotated[Qwen3Reranker, SkipJsonSchema()] = Field(
        default=_BUILT_FROM_SETTINGS,
        exclude=True,
        repr=False,
        description="An existing Qwen3Reranker to share (no engine settings then: they "
        "show its config); None: one is built from the settings.",
    )

    # RerankConfig's settings (ENGINE_FIELDS): same names, types, defaults, descriptions
    model: str = engine_field("model")
    backend: Annotated[str, AfterValidator(_registered_backend)] = engine_field("backend")
    max_length: int = engine_field("max_length")
    device: str | None = engine_field("device")
    dtype: str | None = engine_field("dtype")
    max_batch_tokens: int | None = engine_field("max_batch_tokens")
    max_batch_size: int = engine_field("max_batch_size")
    show_progress: bool = engine_field("show_progress")
    base_url: str | list[str] | None = engine_field("base_url")
    api_key: Annotated[SecretStr | str | None, AfterValidator(_as_secret)] = engine_field("api_key")
    cache: CacheField = engine_field("cache")
    cache_size: int = engine_field("cache_size")

    # call options
    instruction: str | None = Field(
        default=None, description="Task instruction; None uses the reranker's default."
    )
    top_n: int | None = Field(
        default=None, ge=1, description="How many to return, best first; None: all."
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop those scoring below this; None: keep."
    )
    reranker_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other RerankConfig settings, e.g. local_files_only, timeout, max_retries.",
    )

    # hybrid ranking (docs/hybrid.md)
    fusion: FusionField = Field(
        default=None,
        description="Hybrid ranking: a Fusion or its spec string; the results are then "
        "ordered by the fused score (docs/hybrid.md). None: by p(yes).",
    )
    signals: SignalsField = Field(
        default_factory=dict,
        description="Signal name -> a metadata key or a callable on the node or document, "
        "giving its value; each name needs a weight in fusion.signals.",
    )

    _check_instruction = field_validator("instruction")(check_optional_instruction)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """An adapter's docstring (``help()``) ends with its settings and their descriptions."""
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__doc__ and "\nSettings:\n" not in cls.__doc__:
            lines = [
                f"    {name}: {info.description}"
                for name, info in cls.model_fields.items()
                if info.description
            ]
            cls.__doc__ = inspect.cleandoc(cls.__doc__) + "\n\nSettings:\n" + "\n".join(lines)

    @model_validator(mode="before")
    @classmethod
    def _settings_from_reranker(cls, data: Any) -> Any:
        """With ``reranker=``: no engine settings, and the engine fields show its config."""
        if not isinstance(data, dict):
            return data
        reranker = data.get("reranker")
        if reranker is None:
            return {k: v for k, v in data.items() if k != "reranker"}
        return settings_with_reranker(reranker, data)

    @model_validator(mode="after")
    def _check_fusion_settings(self) -> Any:
        extra = {name: getattr(self, name) for name in self.fusion_only_fields}
        check_fusion_settings(check_fusion(self.fusion), self.signals, extra)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Build the engine from the settings when no ``reranker=`` was given."""
        super().model_post_init(context)
        if self.reranker is None:
            self.reranker = build_reranker(
                {name: getattr(self, name) for name in ENGINE_FIELDS},
                self.reranker_kwargs,
                owner=type(self).__name__,
            )


def check_document_template(template: object, *, content: str) -> str | None:
    """``None`` or a ``str.format`` template whose fields are names (metadata keys,
    and ``content``, which must be there): ``"[{source} {date}] {page_content}"``."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise TypeError(
            f"document_template must be a str or None, got {type(template).__name__}: "
            f"{_preview(template)}"
        )
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"document_template {template!r} is not a format string: {exc}") from None
    for field in fields:
        if not field or field.isdigit():
            raise ValueError(
                f"document_template {template!r}: fields must be names, e.g. {{source}}; "
                f"got {{{field}}} (write {{{{ and }}}} for literal braces)"
            )
    if content not in {f.split(".")[0].split("[")[0] for f in fields}:
        raise ValueError(f"document_template {template!r} must contain {{{content}}}")
    return template


def check_metadata_keys(keys: object) -> list[str] | None:
    """``None`` or a list of distinct, non-empty metadata keys."""
    if keys is None:
        return None
    checked = check_sequence(
        keys, name="metadata_keys", what="a list of str", item_types=str, item_kind="str"
    )
    for i, key in enumerate(checked):
        if not key.strip():
            raise ValueError(f"metadata_keys[{i}] must be a non-empty key, got {key!r}")
    repeated = sorted({k for k in checked if checked.count(k) > 1})
    if repeated:
        raise ValueError(f"metadata_keys names {repeated} more than once")
    return checked


class _TemplateFields(dict[str, Any]):
    """A document's metadata and content for ``str.format_map``; a missing field names
    the document."""

    def __init__(self, metadata: Mapping[str, Any], where: str) -> None:
        super().__init__(metadata)
        self.where = where

    def __missing__(self, key: str) -> Any:
        keys = ", ".join(map(repr, self)) or "none"
        raise ValueError(
            f"document_template field {key!r} is not in the metadata of {self.where} "
            f"(its fields: {keys})"
        )


@dataclasses.dataclass(frozen=True)
class ItemReader(Generic[ItemT]):
    """How an adapter reads its items for hybrid ranking: their ``name`` in errors
    (``"nodes"``, ``"documents"``) and a function giving an item's metadata.

    The adapters give their framework's getter; the extraction of signals,
    first-stage scores and templated texts is written once, here. Errors name the
    item (``documents[2]``), the key and the bad value; nothing is dropped.

    Example::

        >>> reader = ItemReader("documents", lambda d: d)
        >>> reader.signals([{"new": True}, {"new": False}], {"fresh": "new"})
        {'fresh': [1.0, 0.0]}
        >>> reader.text({"source": "FAQ"}, 0, "Reset it.", template="[{source}] {body}",
        ...             content="body")
        '[FAQ] Reset it.'
    """

    name: str
    metadata: Callable[[ItemT], Mapping[str, Any]]

    def field(self, item: ItemT, index: int, key: str, purpose: str) -> Any:
        """``metadata[key]`` of ``item``; a missing key is an error naming both."""
        metadata = self.metadata(item)
        if key not in metadata:
            keys = ", ".join(map(repr, metadata)) or "none"
            raise ValueError(
                f"{purpose}: {self.name}[{index}] has no metadata key {key!r} (its keys: {keys})"
            )
        return metadata[key]

    def signals(
        self, items: Sequence[ItemT], sources: Mapping[str, SignalSource]
    ) -> dict[str, list[float]]:
        """Each signal's value for each item: ``metadata[key]``, or ``source(item)``."""
        out: dict[str, list[float]] = {}
        for name, source in sources.items():
            values = []
            for i, item in enumerate(items):
                if isinstance(source, str):
                    what = f"{self.name}[{i}].metadata[{source!r}]"
                    value = self.field(item, i, source, f"signal {name!r}")
                else:
                    what = f"{_source_name(source)} of {self.name}[{i}]"
                    value = source(item)
                values.append(_finite(f"signal {name!r}: {what}", value, allow_bool=True))
            out[name] = values
        return out

    def scores(self, items: Sequence[ItemT], key: str) -> list[float]:
        """The first-stage score of each item from ``metadata[key]``."""
        return [
            _finite(
                f"first-stage score {self.name}[{i}].metadata[{key!r}]",
                self.field(item, i, key, "first_stage_key"),
            )
            for i, item in enumerate(items)
        ]

    def first_stage(
        self, fusion: Fusion, scores: Sequence[float | None] | None
    ) -> list[float] | None:
        """The first-stage scores of a call, or ``None`` (the input order is the rank).

        When some items have no score (``None``) and others do, the input order is
        the rank of all (a warning is logged); ``Fusion(mode="score")`` then is an
        error naming the first item without one.
        """
        if scores is None:
            return None
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing and fusion.mode == "score":
            raise ValueError(
                f'Fusion mode "score" needs a first-stage score for every item; '
                f"{self.name}[{missing[0]}] has none ({len(missing)} of {len(scores)})"
            )
        if not missing:
            return [
                _finite(f"first-stage score of {self.name}[{i}]", s) for i, s in enumerate(scores)
            ]
        if len(missing) < len(scores):
            logger.warning(
                "%d of %d %s have no first-stage score: the input order is the "
                "first-stage rank of all",
                len(missing),
                len(scores),
                self.name,
            )
        return None

    def fusion_options(
        self,
        fusion: Fusion | str | None,
        sources: Mapping[str, SignalSource],
        items: Sequence[ItemT],
        scores: Sequence[float | None] | None,
    ) -> dict[str, Any]:
        """The core's hybrid-ranking keywords for one call (``{}`` without fusion;
        ``fusion`` is an adapter's field: a spec string is read as one)."""
        fusion = check_fusion(fusion)
        if fusion is None:
            return {}
        return {
            "fusion": fusion,
            "first_stage_scores": self.first_stage(fusion, scores),
            "signals": self.signals(items, sources),
        }

    def text(
        self,
        item: ItemT,
        index: int,
        body: str,
        *,
        template: str | None = None,
        content: str = "page_content",
        keys: Sequence[str] | None = None,
    ) -> str:
        """The text to score: ``body`` (the item's content) formatted by ``template``
        (fields: metadata keys and ``content``), or with ``key: value`` lines of the
        metadata ``keys`` before it. The template is formatted, never the body or the
        values, so braces in them are kept as they are."""
        if template is not None:
            fields = _TemplateFields(self.metadata(item), f"{self.name}[{index}]")
            fields[content] = body
            return template.format_map(fields)
        if keys:
            header = [f"{key}: {self.field(item, index, key, 'metadata_keys')}" for key in keys]
            return "\n".join([*header, body])
        return body
