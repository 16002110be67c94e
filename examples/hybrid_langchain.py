"""Hybrid ranking in LangChain: ``QwenRerank(fusion=...)`` as a document compressor.

The documents are what a LangChain retriever returns (here made-up legal passages,
each with its retriever score in ``metadata["score"]``, its source and date). The
reranker reads the source and date in front of each passage (``document_template``),
and the compressor fuses (docs/hybrid.md)::

    fused = 0.75 * p(yes) + 0.15 * minmax(metadata["score"]) + 0.1 * binding

with ``binding`` 1.0 for statutes and Supreme People's Court material (a callable on
the document). Each output document's ``metadata["relevance_score"]`` is the fused
score (the order), ``metadata["rerank_score"]`` its p(yes). With a retriever:
``ContextualCompressionRetriever(base_compressor=compressor, base_retriever=...)``::

    python examples/hybrid_langchain.py                                   # Qwen/Qwen3-Reranker-0.6B
    python examples/hybrid_langchain.py --model /models/Qwen3-Reranker-0.6B --top-n 3
    python examples/hybrid_langchain.py --model tiny-random               # offline smoke test

``tiny-random`` builds a tiny random-weight checkpoint (needs the ``fixtures``
extra): everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from langchain_core.documents import Document
from langchain_qwen3_rerank import QwenRerank

from qwen3_rerank_core import DEFAULT_MODEL, Fusion, ModelLoadError

QUERY = "Can a landlord keep the whole deposit for minor wear and tear?"
BINDING = {"Civil Code", "Supreme People's Court Gazette"}
TEMPLATE = "[{source} {date}] {page_content}"
# made-up retriever output: source, date, retriever score (BM25), text
PASSAGES = [
    ("Law firm blog", "2025-01", 14.2, "Landlords often keep deposits; tenants rarely win in court."),
    ("Civil Code", "2021-01", 11.9, "The lessor shall return the deposit, less damage beyond normal use."),
    ("Online forum", "2023-07", 13.1, "My landlord kept all of my deposit for a scratch, is that legal?"),
    ("Supreme People's Court Gazette", "2024-03", 9.4, "Normal wear and tear does not justify keeping a deposit."),
    ("Local court", "2019-11", 8.7, "Deduction for repainting upheld where the tenant caused the damage."),
]  # fmt: skip
FUSION = Fusion(relevance=0.75, first_stage=0.15, signals={"binding": 0.1})


def retrieved_documents() -> list[Document]:
    """The first stage's output, as a LangChain retriever gives it."""
    return [
        Document(
            page_content=text, id=f"p{i}", metadata={"source": src, "date": day, "score": score}
        )
        for i, (src, day, score, text) in enumerate(PASSAGES)
    ]


def is_binding(document: Document) -> bool:
    return document.metadata["source"] in BINDING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("QWEN3_RERANK_MODEL", DEFAULT_MODEL),
        help="hub id or local folder (env QWEN3_RERANK_MODEL); 'tiny-random' for an offline smoke test",
    )
    parser.add_argument("--top-n", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model = args.model
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
    compressor = QwenRerank(
        model=model,
        device=args.device,
        fusion=FUSION,
        first_stage_key="score",
        signals={"binding": is_binding},
        document_template=TEMPLATE,
        top_n=args.top_n,
    )
    documents = retrieved_documents()
    try:
        ranked = compressor.compress_documents(documents, QUERY)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B", file=sys.stderr
        )
        return 2
    finally:
        compressor.reranker.close()

    position = {d.id: i for i, d in enumerate(documents)}
    print(f"Query: {QUERY}\nModel: {args.model}\nFusion: {FUSION.spec}\n")
    print(f"{'rank':>4}  {'index':>5}  {'p(yes)':>7}  {'fused':>7}  retriever  binding  passage")
    for rank, doc in enumerate(ranked, start=1):
        meta = doc.metadata
        print(
            f"{rank:>4}  {position[doc.id]:>5}  {meta['rerank_score']:>7.4f}  "
            f"{meta['relevance_score']:>7.4f}  {meta['score']:>9.2f}  "
            f"{is_binding(doc)!s:>7}  {TEMPLATE.format(page_content=doc.page_content, **meta)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
