"""Hybrid ranking in LlamaIndex: ``QwenRerank(fusion=...)`` as a node postprocessor.

The nodes are what a LlamaIndex retriever returns (here made-up help-centre articles
with made-up vector-search similarities as ``NodeWithScore.score``), with metadata:
when each article was last updated and whether it is official documentation. The
postprocessor fuses (docs/hybrid.md)::

    fused = 0.7 * p(yes) + 0.2 * minmax(node.score) + 0.1 * recency + 0.05 * official

``recency`` halves every 180 days (a callable on the node); ``official`` is the
metadata key of the same name. Each output node's ``score`` is the fused score,
``metadata["relevance_score"]`` its p(yes), ``metadata["retrieval_score"]`` the
incoming score. In a query engine: ``index.as_query_engine(node_postprocessors=[rerank])``::

    python examples/hybrid_llama_index.py                                   # Qwen/Qwen3-Reranker-0.6B
    python examples/hybrid_llama_index.py --model /models/Qwen3-Reranker-0.6B --top-n 3
    python examples/hybrid_llama_index.py --model tiny-random --now 2026-12-01  # offline smoke test

``tiny-random`` builds a tiny random-weight checkpoint (needs the ``fixtures``
extra): everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone

from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.qwen3_rerank import QwenRerank

from qwen3_rerank_core import DEFAULT_MODEL, Fusion, ModelLoadError, recency_decay

QUERY = "How do I rotate the API key of a service account?"
# made-up retriever output: text, similarity, last updated, official documentation
ARTICLES = [
    ("Service accounts: create a second key, deploy it, then delete the old key.", 0.82, "2024-02-11", True),
    ("API keys now expire after 90 days; rotate them from the console.", 0.79, "2026-11-02", True),
    ("Billing: how to download invoices for a service account.", 0.74, "2026-11-25", True),
    ("Forum: I rotated my key with `accounts keys rotate` and it just worked.", 0.71, "2026-08-19", False),
    ("Legacy API keys (v1) cannot be rotated; migrate to v2 keys first.", 0.69, "2023-05-30", True),
    ("Troubleshooting 401 errors after a key change.", 0.66, "2026-10-01", False),
]  # fmt: skip
FUSION = Fusion(relevance=0.7, first_stage=0.2, signals={"recency": 0.1, "official": 0.05})
HALF_LIFE_DAYS = 180.0


def retrieved_nodes() -> list[NodeWithScore]:
    """The first stage's output, as a LlamaIndex retriever gives it."""
    return [
        NodeWithScore(
            node=TextNode(
                text=text, id_=f"kb-{i}", metadata={"updated": day, "official": official}
            ),
            score=similarity,
        )
        for i, (text, similarity, day, official) in enumerate(ARTICLES)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("QWEN3_RERANK_MODEL", DEFAULT_MODEL),
        help="hub id or local folder (env QWEN3_RERANK_MODEL); 'tiny-random' for an offline smoke test",
    )
    parser.add_argument(
        "--now", default=None, help="ISO date the ages count from (default: now, UTC)"
    )
    parser.add_argument("--top-n", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model = args.model
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
    now = args.now or datetime.now(timezone.utc)

    def recency(node: NodeWithScore) -> float:
        return recency_decay([node.metadata["updated"]], now=now, half_life_days=HALF_LIFE_DAYS)[0]

    rerank = QwenRerank(
        model=model,
        device=args.device,
        fusion=FUSION,
        signals={"recency": recency, "official": "official"},
        keep_retrieval_score=True,
        top_n=args.top_n,
    )
    nodes = retrieved_nodes()
    try:
        ranked = rerank.postprocess_nodes(nodes, query_str=QUERY)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B", file=sys.stderr
        )
        return 2
    finally:
        rerank.reranker.close()

    position = {n.node.node_id: i for i, n in enumerate(nodes)}
    print(f"Query: {QUERY}\nModel: {args.model}\nFusion: {FUSION.spec}\n")
    print(f"{'rank':>4}  {'index':>5}  {'p(yes)':>7}  {'fused':>7}  retrieval  official  article")
    for rank, node in enumerate(ranked, start=1):
        meta = node.node.metadata
        print(
            f"{rank:>4}  {position[node.node.node_id]:>5}  {meta['relevance_score']:>7.4f}  "
            f"{node.score:>7.4f}  {meta['retrieval_score']:>9.4f}  {meta['official']!s:>8}  "
            f"{node.node.get_content()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
