"""LangChain: a ContextualCompressionRetriever that reranks with Qwen3-Reranker.

    pip install -e ".[transformers]" -e integrations/langchain-qwen3-rerank langchain-classic

    python examples/langchain_compression_retriever.py                     # Qwen/Qwen3-Reranker-0.6B (hub)
    python examples/langchain_compression_retriever.py --model /models/Qwen3-Reranker-0.6B
    QWEN3_RERANK_MODEL=/models/Qwen3-Reranker-0.6B python examples/langchain_compression_retriever.py
    python examples/langchain_compression_retriever.py --model tiny-random  # offline smoke test
    python examples/langchain_compression_retriever.py --query "Why are leaves green?" --top-n 2

An ``InMemoryVectorStore`` retrieves ``--k`` documents and ``QwenRerank`` (a document
compressor) keeps the best ``--top-n``, each with ``metadata["relevance_score"]``. The
store uses ``DeterministicFakeEmbedding`` so that the script runs offline; its vectors are
random (one per text), so it retrieves in an arbitrary order and, by default, every
document: the reranker alone decides the order. Swap in your own embeddings. The same
retriever is then called asynchronously (``ainvoke``), which runs the core's ``arerank``.

``tiny-random`` builds a tiny random-weight Qwen3 checkpoint with the real
tokenizer (needs ``pip install "qwen3-rerank-core[fixtures]"``): it checks that
everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_qwen3_rerank import QwenRerank

from qwen3_rerank_core import DEFAULT_MODEL, ModelLoadError, RerankConfig
from qwen3_rerank_core.offline import HubUnreachableError, check_hub

QUERY = "How do plants make their food?"
ASYNC_QUERY = "What does chlorophyll do?"
TEXTS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar inside leaves.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Chlorophyll absorbs red and blue light and reflects green light, so leaves look green.",
    "Food trucks make their money at lunchtime near office buildings.",
    "Roots take up water and minerals that the plant moves to its leaves.",
    "How do you make bread? Mix flour, water, salt and yeast, then bake it.",
    "Stomata on the underside of leaves let carbon dioxide in and oxygen out.",
    "Power plants make electricity by burning coal or gas to drive turbines.",
    "Glucose made in the leaves is stored as starch in roots and seeds.",
    "Their new restaurant serves plant-based food all day.",
]


def print_documents(title: str, docs: list[Document]) -> None:
    print(title)
    print(f"{'rank':>4}  {'score':>6}  {'source':<6}  text")
    for rank, d in enumerate(docs, start=1):
        score = d.metadata["relevance_score"]
        print(f"{rank:>4}  {score:>6.4f}  {d.metadata['source']:<6}  {d.page_content}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("QWEN3_RERANK_MODEL", DEFAULT_MODEL),
        help="hub id or local folder (env QWEN3_RERANK_MODEL); 'tiny-random' for a smoke test",
    )
    parser.add_argument("--backend", default="transformers", choices=RerankConfig.backend_names())
    parser.add_argument("--base-url", default=None, help="vLLM server URL (backend=remote)")
    parser.add_argument("--device", default=None, help="'cpu', 'cuda', ...; default: picks")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--async-query", default=ASYNC_QUERY, help="query of the ainvoke call")
    parser.add_argument(
        "--instruction", default=None, help="task instruction (default: web search)"
    )
    parser.add_argument("--k", type=int, default=len(TEXTS), help="documents retrieved")
    parser.add_argument("--top-n", type=int, default=3, help="documents kept after reranking")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model = args.model
    local_only = False
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
        print(
            "Using a tiny RANDOM-WEIGHT checkpoint: the pipeline runs, the scores mean nothing.\n"
        )
    elif args.backend != "remote":
        try:  # offline: fail in seconds, in one line (a cached model loads from the cache)
            local_only = check_hub(model)
        except HubUnreachableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_documents(
        [Document(page_content=t, metadata={"source": f"doc-{i:02d}"}) for i, t in enumerate(TEXTS)]
    )
    compressor = QwenRerank(
        model=model,
        backend=args.backend,
        base_url=args.base_url,
        device=args.device,
        instruction=args.instruction,
        top_n=args.top_n,
        reranker_kwargs={"local_files_only": local_only},
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor,
        base_retriever=store.as_retriever(search_kwargs={"k": args.k}),
    )

    print(f"Query: {args.query}\nModel: {args.model}\n")
    try:
        docs = retriever.invoke(args.query)
        async_docs = asyncio.run(retriever.ainvoke(args.async_query))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B "
            "(or QWEN3_RERANK_MODEL=...), or try the pipeline with --model tiny-random.",
            file=sys.stderr,
        )
        return 2
    finally:
        compressor.reranker.close()
    print_documents(f"Reranked by Qwen3-Reranker (top {args.top_n} of {args.k} retrieved):", docs)
    print_documents(f"Async (ainvoke), query {args.async_query!r}:", async_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
