"""``QwenRerank``: a LangChain document compressor backed by ``qwen3_rerank_core``."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from types import EllipsisType
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from qwen3_rerank_core import Qwen3Reranker, RerankConfig

_DEFAULTS = RerankConfig()
# Fields that configure the engine; with ``reranker=`` they are read from its config.
_ENGINE_FIELDS = ("model", "backend", "max_length", "device", "dtype", "max_batch_tokens",
                  "max_batch_size", "show_progress", "base_url", "api_key")  # fmt: skip


class QwenRerank(BaseDocumentCompressor):
    """Reorder documents by Qwen3-Reranker relevance, best first.

    Each returned document is a copy (same ``id``, deep-copied metadata) with
    ``metadata["relevance_score"]`` = p(yes) in [0, 1]. Pass model settings, or
    ``reranker=`` an existing ``Qwen3Reranker`` (not both) to share one loaded model.
    """

    model: str = Field(
        default=_DEFAULTS.model,
        description="Hub id or local folder of a Qwen3-Reranker checkpoint; "
        "for backend='remote' the served model name.",
    )
    backend: Literal["transformers", "vllm", "remote"] = Field(
        default=_DEFAULTS.backend, description="'transformers', 'vllm' or 'remote' (vLLM server)."
    )
    instruction: str | None = Field(
        default=None, description="Task instruction; None uses the reranker's default."
    )
    top_n: int | None = Field(
        default=None, ge=1, description="How many documents to return, best first; None: all."
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop documents scoring below this."
    )
    max_length: int = Field(default=_DEFAULTS.max_length, description="Most tokens per prompt.")
    device: str | None = Field(default=None, description="'cpu', 'cuda', ...; None picks.")
    dtype: str | None = Field(default=None, description="'float32', 'bfloat16', ...; None picks.")
    max_batch_tokens: int = Field(
        default=_DEFAULTS.max_batch_tokens, description="Token budget of one forward pass."
    )
    max_batch_size: int = Field(
        default=_DEFAULTS.max_batch_size, description="Most documents in one forward pass."
    )
    show_progress: bool = Field(default=False, description="Show a progress bar over batches.")
    base_url: str | list[str] | None = Field(
        default=None, description="vLLM server URL, or a list of replicas (backend='remote')."
    )
    api_key: SecretStr | None = Field(
        default=None, exclude=True, description="Bearer token for the server; never serialized."
    )
    reranker_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other RerankConfig settings, e.g. local_files_only, timeout, max_retries.",
    )

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    _reranker: Qwen3Reranker = PrivateAttr()

    def __init__(self, *, reranker: Qwen3Reranker | None = None, **data: Any) -> None:
        if reranker is not None and not isinstance(reranker, Qwen3Reranker):
            raise TypeError(
                f"reranker must be a Qwen3Reranker or None, got {type(reranker).__name__}: "
                f"{_preview(reranker)}"
            )
        if reranker is not None:
            given = sorted(set(data) & {*_ENGINE_FIELDS, "reranker_kwargs"})
            if given:
                raise ValueError(f"pass either reranker= or model settings, not both: {given}")
            data.update({name: getattr(reranker.config, name) for name in _ENGINE_FIELDS})
        super().__init__(**data)
        self._reranker = reranker if reranker is not None else self._build()

    @field_validator("instruction")
    @classmethod
    def _check_instruction(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"instruction must not be empty or whitespace, got {value!r}")
        return value

    def _build(self) -> Qwen3Reranker:
        clash = sorted(set(self.reranker_kwargs) & {*_ENGINE_FIELDS, "instruction"})
        if clash:
            raise ValueError(f"set {clash} as QwenRerank fields, not in reranker_kwargs")
        values = {name: getattr(self, name) for name in _ENGINE_FIELDS}
        values["api_key"] = self.api_key.get_secret_value() if self.api_key else None
        if isinstance(self.base_url, list):
            values["base_url"] = tuple(self.base_url)
        return Qwen3Reranker(RerankConfig.from_dict({**self.reranker_kwargs, **values}))

    @property
    def reranker(self) -> Qwen3Reranker:
        """The engine; pass it as ``reranker=`` to share the loaded model."""
        return self._reranker

    def rerank(
        self,
        documents: Sequence[str | Document],
        query: str,
        *,
        top_n: int | EllipsisType | None = ...,
        min_score: float | EllipsisType | None = ...,
        instruction: str | None = None,
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` best first, like langchain-cohere.

        ``top_n``, ``min_score`` and ``instruction`` default to the fields; ``None``
        turns ``top_n`` / ``min_score`` off for this call.
        """
        texts = _texts(documents, query)
        if not texts:
            return []
        options = self._options(top_n, min_score, instruction)
        return _dicts(self._reranker.rerank(query, texts, **options))

    async def arerank(
        self,
        documents: Sequence[str | Document],
        query: str,
        *,
        top_n: int | EllipsisType | None = ...,
        min_score: float | EllipsisType | None = ...,
        instruction: str | None = None,
    ) -> list[dict[str, Any]]:
        """Async :meth:`rerank`; never blocks the event loop."""
        texts = _texts(documents, query)
        if not texts:
            return []
        options = self._options(top_n, min_score, instruction)
        return _dicts(await self._reranker.arerank(query, texts, **options))

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Copies of the best documents, best first, with ``metadata["relevance_score"]``."""
        docs = _checked(documents, query, documents_only=True)
        return _copies(docs, self.rerank(docs, query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, on the core's native async path."""
        docs = _checked(documents, query, documents_only=True)
        return _copies(docs, await self.arerank(docs, query))

    def _options(
        self,
        top_n: int | EllipsisType | None,
        min_score: float | EllipsisType | None,
        instruction: str | None,
    ) -> dict[str, Any]:
        return {
            "top_n": self.top_n if top_n is ... else top_n,
            "min_score": self.min_score if min_score is ... else min_score,
            "instruction": self.instruction if instruction is None else instruction,
        }


def _preview(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked(documents: object, query: object, *, documents_only: bool = False) -> list[Any]:
    """A new list of the caller's documents, after checking them and the query.

    Refuses a ``str`` (which would otherwise be ranked character by character), a
    generator or other non-sequence, and items that are not ``Document`` (or ``str``
    where allowed), naming the index.
    """
    if not isinstance(query, str):
        raise TypeError(
            f"QwenRerank needs a str query, got {type(query).__name__}: {_preview(query)}"
        )
    if not query.strip():
        raise ValueError(f"QwenRerank needs a non-empty query, got {query!r}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:  # the core's check, also when there is nothing to rank
        raise ValueError(
            f"query is not valid Unicode text (lone surrogate at position {exc.start}): "
            f"{_preview(query)}"
        ) from None
    kinds = "Document" if documents_only else "str or Document"
    if isinstance(documents, (str, bytes, bytearray)) or not isinstance(documents, Sequence):
        raise TypeError(
            f"documents must be a list of {kinds}, got {type(documents).__name__}: "
            f"{_preview(documents)}"
        )
    checked = list(documents)
    for i, doc in enumerate(checked):
        if not (isinstance(doc, Document) or (isinstance(doc, str) and not documents_only)):
            raise TypeError(
                f"documents[{i}] must be a {kinds}, got {type(doc).__name__}: {_preview(doc)}"
            )
    return checked


def _texts(documents: Sequence[str | Document], query: str) -> list[str]:
    return [d.page_content if isinstance(d, Document) else d for d in _checked(documents, query)]


def _dicts(results: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"index": r.index, "relevance_score": r.score} for r in results]


def _copies(documents: Sequence[Document], ranked: list[dict[str, Any]]) -> list[Document]:
    out = []
    for item in ranked:
        doc = documents[item["index"]]
        metadata = deepcopy(doc.metadata)
        metadata["relevance_score"] = item["relevance_score"]
        out.append(doc.model_copy(update={"metadata": metadata}))
    return out
