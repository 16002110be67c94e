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
from qwen3_rerank_core.adapters import (
    ENGINE_FIELDS,
    build_reranker,
    check_items,
    check_optional_instruction,
    check_query,
    settings_with_reranker,
)

_DEFAULTS = RerankConfig()


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
    max_batch_tokens: int | None = Field(
        default=_DEFAULTS.max_batch_tokens,
        description="Token budget of one forward pass; None: chosen for the device and model.",
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
        super().__init__(**settings_with_reranker(reranker, data))
        self._reranker = (
            reranker
            if reranker is not None
            else build_reranker(
                {name: getattr(self, name) for name in ENGINE_FIELDS},
                self.reranker_kwargs,
                owner="QwenRerank",
            )
        )

    _check_instruction = field_validator("instruction")(check_optional_instruction)

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
        docs = _checked(documents, query, Document)
        return _copies(docs, self.rerank(docs, query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, on the core's native async path."""
        docs = _checked(documents, query, Document)
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


def _checked(documents: object, query: object, types: type | tuple[type, ...]) -> list[Any]:
    """A new list of the caller's documents (``types``), after checking the query."""
    check_query(query)
    kinds = "Document" if types is Document else "str or Document"
    return check_items(documents, types, name="documents", kinds=kinds)


def _texts(documents: Sequence[str | Document], query: str) -> list[str]:
    docs = _checked(documents, query, (str, Document))
    return [d.page_content if isinstance(d, Document) else d for d in docs]


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
