"""Hybrid ranking for a knowledge base: relevance, the retriever's score and recency.

Articles come from a first-stage retriever (here: made-up vector-search
similarities) with their last-updated dates. The fused score (docs/hybrid.md)::

    fused = 0.7 * p(yes) + 0.2 * minmax(retriever score) + 0.1 * recency

where ``recency`` halves every ``--half-life-days`` (default 180), or, with
``--step-days N``, is 0.8 for articles older than N days and 1.0 otherwise::

    python examples/hybrid_recency.py                                   # Qwen/Qwen3-Reranker-0.6B
    python examples/hybrid_recency.py --model /models/Qwen3-Reranker-0.6B --step-days 30
    python examples/hybrid_recency.py --model tiny-random --now 2026-12-01  # offline smoke test

``tiny-random`` builds a tiny random-weight checkpoint (needs the ``fixtures``
extra): everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone

from qwen3_rerank_core import DEFAULT_MODEL, Fusion, ModelLoadError, Qwen3Reranker, recency_decay

QUERY = "How do I rotate the API key of a service account?"
# made-up articles: text, retriever similarity, last updated (ISO date or datetime; offsets are honoured)
ARTICLES = [
    (
        "Service accounts: create a second key, deploy it, then delete the old key.",
        0.82,
        "2024-02-11",
    ),
    (
        "API keys now expire after 90 days; rotate them from the console.",
        0.79,
        "2026-11-02T09:30:00+01:00",
    ),
    ("Billing: how to download invoices for a service account.", 0.74, "2026-11-25"),
    (
        "Key rotation with the CLI: `accounts keys rotate --account NAME`.",
        0.71,
        "2026-08-19T16:00:00Z",
    ),
    ("Legacy API keys (v1) cannot be rotated; migrate to v2 keys first.", 0.69, "2023-05-30"),
    ("Troubleshooting 401 errors after a key change.", 0.66, "2026-10-01"),
]
FUSION = Fusion(relevance=0.7, first_stage=0.2, signals={"recency": 0.1})


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
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--half-life-days", type=float, default=None, help="(default 180)")
    shape.add_argument("--step-days", type=float, default=None, help="x 0.8 when older")
    parser.add_argument("--top-n", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model = args.model
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
    now = args.now or datetime.now(timezone.utc)
    dates = [a[2] for a in ARTICLES]
    if args.step_days is not None:
        recency = recency_decay(dates, now=now, step_days=args.step_days)
    else:
        recency = recency_decay(dates, now=now, half_life_days=args.half_life_days or 180.0)
    try:
        with Qwen3Reranker(model=model, device=args.device) as reranker:
            results = reranker.rerank(
                QUERY,
                [a[0] for a in ARTICLES],
                fusion=FUSION,
                first_stage_scores=[a[1] for a in ARTICLES],
                signals={"recency": recency},
                top_n=args.top_n,
            )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B", file=sys.stderr
        )
        return 2

    print(f"Query: {QUERY}\nModel: {args.model}\nFusion: {FUSION.spec}\n")
    print(f"{'rank':>4}  {'index':>5}  {'p(yes)':>7}  {'fused':>7}  first_stage  recency  article")
    for rank, r in enumerate(results, start=1):
        assert r.fusion is not None
        print(
            f"{rank:>4}  {r.index:>5}  {r.score:>7.4f}  {r.fused_score:>7.4f}  "
            f"{r.fusion.first_stage:>11.4f}  {r.fusion.signal('recency'):>7.4f}  {r.document}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
