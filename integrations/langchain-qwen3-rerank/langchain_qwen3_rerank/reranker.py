"""``QwenRerank``: a LangChain document compressor backed by ``qwen3_rerank_core``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict
from typing_extensions import TypedDict, Unpack

from qwen3_rerank_core.adapters import check_items, check_query, engine_model


class RerankOptions(TypedDict, total=False):
    """Keywords of :meth:`QwenRerank.rerank`; an absent one takes the field's value."""

    top_n: int | None
    min_score: float | None
    instruction: str | None


_Base = engine_model(BaseDocumentCompressor, "QwenRerankBase", module=__name__, items="documents")


class QwenRerank(_Base):  # type: ignore[valid-type,misc]
    """Reorder documents by Qwen3-Reranker relevance, best first.

    Each returned document is a copy (same ``id``, deep-copied metadata) with
    ``metadata["relevance_score"]`` = p(yes) in [0, 1]. Pass model settings, or
    ``reranker=`` an existing ``Qwen3Reranker`` (not both) to share one loaded model.
    The engine settings (``model``, ``backend``, ``max_length``, ``device``, ...)
    are fields typed, defaulted and described as in ``RerankConfig``.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    def rerank(
        self, documents: Sequence[str | Document], query: str, **options: Unpack[RerankOptions]
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` best first, like langchain-cohere.

        ``top_n``, ``min_score`` and ``instruction`` (keywords) default to the fields;
        ``None`` turns ``top_n`` / ``min_score`` off for this call.
        """
        texts, settings = self._call(documents, query, options)
        return _dicts(self._reranker.rerank(query, texts, **settings)) if texts else []

    async def arerank(
        self, documents: Sequence[str | Document], query: str, **options: Unpack[RerankOptions]
    ) -> list[dict[str, Any]]:
        """Async :meth:`rerank`; never blocks the event loop."""
        texts, settings = self._call(documents, query, options)
        return _dicts(await self._reranker.arerank(query, texts, **settings)) if texts else []

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Copies of the best documents, best first, with ``metadata["relevance_score"]``."""
        docs = _valid_documents(documents, query, Document)
        return _copies(docs, self.rerank(docs, query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, on the core's native async path."""
        docs = _valid_documents(documents, query, Document)
        return _copies(docs, await self.arerank(docs, query))

    def _call(
        self, documents: Sequence[str | Document], query: str, options: Mapping[str, Any]
    ) -> tuple[list[str], dict[str, Any]]:
        """The texts of ``documents`` and the core's keyword arguments for one call."""
        unknown = sorted(set(options) - set(RerankOptions.__annotations__))
        if unknown:
            raise TypeError(f"rerank() got unexpected keyword argument(s) {unknown}")
        texts = _texts(documents, query)
        top_n, min_score = options.get("top_n", ...), options.get("min_score", ...)
        instruction = options.get("instruction")
        return texts, {
            "top_n": self.top_n if top_n is ... else top_n,
            "min_score": self.min_score if min_score is ... else min_score,
            "instruction": self.instruction if instruction is None else instruction,
        }


def _valid_documents(documents: object, query: object, types: type | tuple[type, ...]) -> list[Any]:
    """A new list of the caller's documents (``types``), after checking the query."""
    check_query(query)
    kinds = "Document" if types is Document else "str or Document"
    return check_items(documents, types, name="documents", kinds=kinds)


def _texts(documents: Sequence[str | Document], query: str) -> list[str]:
    docs = _valid_documents(documents, query, (str, Document))
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
