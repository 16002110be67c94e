"""Hybrid ranking for e-commerce search: relevance plus business signals and recency.

The reranker's p(yes) says how well a product matches the query; the shop also
wants new products, best sellers and products in stock higher, and listings
older than 30 days slightly lower. The fused score (docs/hybrid.md) is::

    fused = 0.6 * p(yes) + 0.1 * new + 0.05 * best_seller + 0.05 * in_stock + 0.1 * recency

with ``new``/``best_seller``/``in_stock`` 1.0 or 0.0 (``boost``) and ``recency``
1.0, or 0.8 for listings older than 30 days (``recency_decay(step_days=30)``)::

    python examples/hybrid_ecommerce.py                                  # Qwen/Qwen3-Reranker-0.6B
    python examples/hybrid_ecommerce.py --model /models/Qwen3-Reranker-0.6B  # a local folder
    python examples/hybrid_ecommerce.py --model tiny-random --now 2026-12-01  # offline smoke test

``tiny-random`` builds a tiny random-weight checkpoint (needs the ``fixtures``
extra): everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone

from qwen3_rerank_core import (
    DEFAULT_MODEL,
    Fusion,
    ModelLoadError,
    Qwen3Reranker,
    boost,
    recency_decay,
)

QUERY = "lightweight laptop for travel"
# made-up products: title, tagged new, units sold last month, stock, listed on
PRODUCTS = [
    ("Ultralight 13-inch laptop, 980 g, 18 h battery", False, 2400, 12, "2026-06-02"),
    ("14-inch business laptop, 1.2 kg, backlit keyboard", True, 310, 4, "2026-11-20"),
    ("Gaming laptop, 17-inch, 2.9 kg, RTX graphics", True, 1500, 0, "2026-11-28"),
    ("Laptop sleeve for 13-inch notebooks, water resistant", False, 5200, 300, "2025-12-01"),
    ("Convertible 12-inch laptop with stylus, 1.0 kg", False, 90, 0, "2026-10-15"),
    ("Travel adapter with USB-C charging for laptops", True, 800, 45, "2026-11-30"),
]
FUSION = Fusion(
    relevance=0.6,
    signals={"new": 0.1, "best_seller": 0.05, "in_stock": 0.05, "recency": 0.1},
)


def signals(now: str | datetime) -> dict[str, list[float]]:
    """The business and recency signals of PRODUCTS, one value per product."""
    return {
        "new": boost([p[1] for p in PRODUCTS]),
        "best_seller": boost([p[2] for p in PRODUCTS], threshold=1000),
        "in_stock": boost([p[3] for p in PRODUCTS]),  # > 0 units
        "recency": recency_decay([p[4] for p in PRODUCTS], now=now, step_days=30),
    }


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
        "--now", default=None, help="ISO date the ages count from (default: today, UTC)"
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
    titles = [p[0] for p in PRODUCTS]
    try:
        with Qwen3Reranker(model=model, device=args.device) as reranker:
            results = reranker.rerank(
                QUERY, titles, fusion=FUSION, signals=signals(now), top_n=args.top_n
            )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B", file=sys.stderr
        )
        return 2

    print(f"Query: {QUERY}\nModel: {args.model}\nFusion: {FUSION.spec}\n")
    names = list(FUSION.signals)
    print(
        f"{'rank':>4}  {'index':>5}  {'p(yes)':>7}  {'fused':>7}  " + "  ".join(names) + "  product"
    )
    for rank, r in enumerate(results, start=1):
        assert r.fusion is not None
        parts = "  ".join(f"{r.fusion.signal(n):>{len(n)}.2f}" for n in names)
        print(
            f"{rank:>4}  {r.index:>5}  {r.score:>7.4f}  {r.fused_score:>7.4f}  {parts}  {r.document}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
