"""``QwenRerank``: a LangChain document compressor backed by ``qwen3_rerank_core``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any, ClassVar

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, field_validator, model_validator
from typing_extensions import Self, TypedDict, Unpack

from qwen3_rerank_core import RerankResult
from qwen3_rerank_core.adapters import (
    AdapterSettings,
    ItemReader,
    check_document_template,
    check_items,
    check_metadata_keys,
    check_query,
)


class RerankOptions(TypedDict, total=False):
    """Keywords of :meth:`QwenRerank.rerank`; an absent one takes the field's value."""

    top_n: int | None
    min_score: float | None
    instruction: str | None


_DOCUMENTS: ItemReader[str | Document] = ItemReader(
    "documents", lambda d: d.metadata if isinstance(d, Document) else {}
)


class QwenRerank(AdapterSettings, BaseDocumentCompressor):
    """Reorder documents by Qwen3-Reranker relevance, best first.

    Each returned document is a copy (same ``id``, deep-copied metadata) with
    ``metadata["relevance_score"]`` = p(yes) in [0, 1]. Pass model settings, or
    ``reranker=`` an existing ``Qwen3Reranker`` (not both) to share one loaded model.
    The engine settings (``model``, ``backend``, ``max_length``, ``device``, ...)
    are fields declared with ``RerankConfig``'s types, defaults and descriptions
    (``qwen3_rerank_core.adapters.AdapterSettings``), so type checkers see them.

    Hybrid ranking (docs/hybrid.md): with ``fusion=``, ``metadata["relevance_score"]``
    is the fused score (the order) and ``metadata["rerank_score"]`` is p(yes); the
    first stage is the input order, or ``metadata[first_stage_key]``; ``signals`` come
    from metadata keys or callables on each ``Document``. ``document_template`` or
    ``metadata_keys`` put metadata in the scored text (with or without fusion).
    """

    first_stage_key: str | None = Field(
        default=None,
        description="With fusion: the metadata key holding the retriever's score; "
        "None: the input order is the first-stage rank.",
    )
    document_template: str | None = Field(
        default=None,
        description='The scored text, e.g. "[{source} {date}] {page_content}": '
        "metadata fields by name; None: page_content.",
    )
    metadata_keys: list[str] | None = Field(
        default=None,
        description='Metadata put before page_content as "key: value" lines, in this order.',
    )

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    fusion_only_fields: ClassVar[tuple[str, ...]] = ("first_stage_key",)

    _check_template = field_validator("document_template", mode="before")(
        lambda v: check_document_template(v, content="page_content")
    )
    _check_keys = field_validator("metadata_keys", mode="before")(check_metadata_keys)

    @model_validator(mode="after")
    def _one_text_format(self) -> Self:
        if self.document_template is not None and self.metadata_keys:
            raise ValueError("give document_template or metadata_keys, not both")
        if self.first_stage_key is not None and not self.first_stage_key:
            raise ValueError("first_stage_key must be a non-empty metadata key or None")
        return self

    def rerank(
        self, documents: Sequence[str | Document], query: str, **options: Unpack[RerankOptions]
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` best first, like langchain-cohere.

        ``top_n``, ``min_score`` and ``instruction`` (keywords) default to the fields;
        ``None`` turns ``top_n`` / ``min_score`` off for this call. With ``fusion``,
        ``relevance_score`` is the fused score and ``"rerank_score"`` p(yes).
        """
        texts, settings = self._call(documents, query, options)
        return _dicts(self.reranker.rerank(query, texts, **settings)) if texts else []

    async def arerank(
        self, documents: Sequence[str | Document], query: str, **options: Unpack[RerankOptions]
    ) -> list[dict[str, Any]]:
        """Async :meth:`rerank`; never blocks the event loop."""
        texts, settings = self._call(documents, query, options)
        return _dicts(await self.reranker.arerank(query, texts, **settings)) if texts else []

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
        docs = _valid_documents(documents, query, (str, Document))
        texts = [self._text(d, i) for i, d in enumerate(docs)]
        top_n, min_score = options.get("top_n", ...), options.get("min_score", ...)
        instruction = options.get("instruction")
        scores = (
            None if self.first_stage_key is None else _DOCUMENTS.scores(docs, self.first_stage_key)
        )
        return texts, {
            "top_n": self.top_n if top_n is ... else top_n,
            "min_score": self.min_score if min_score is ... else min_score,
            "instruction": self.instruction if instruction is None else instruction,
            **_DOCUMENTS.fusion_options(self.fusion, self.signals, docs, scores),
        }

    def _text(self, document: str | Document, index: int) -> str:
        body = document.page_content if isinstance(document, Document) else document
        return _DOCUMENTS.text(
            document, index, body, template=self.document_template, keys=self.metadata_keys
        )


def _valid_documents(documents: object, query: object, types: type | tuple[type, ...]) -> list[Any]:
    """A new list of the caller's documents (``types``), after checking the query."""
    check_query(query)
    kinds = "Document" if types is Document else "str or Document"
    return check_items(documents, types, name="documents", kinds=kinds)


def _dicts(results: Sequence[RerankResult]) -> list[dict[str, Any]]:
    """Cohere-style dicts; with fusion, relevance_score is the fused score and
    rerank_score p(yes)."""
    return [
        {"index": r.index, "relevance_score": r.score}
        if r.fusion is None
        else {"index": r.index, "relevance_score": r.fused_score, "rerank_score": r.score}
        for r in results
    ]


def _copies(documents: Sequence[Document], ranked: list[dict[str, Any]]) -> list[Document]:
    out = []
    for item in ranked:
        doc = documents[item["index"]]
        metadata = deepcopy(doc.metadata)
        metadata.update((k, v) for k, v in item.items() if k != "index")
        out.append(doc.model_copy(update={"metadata": metadata}))
    return out
