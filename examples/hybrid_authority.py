"""Authority-first ranking for legal search: metadata in the text, an instruction, a boost.

Each candidate carries its source and date in its text, so the reranker reads
them ("[source: Supreme People's Court Gazette 2024] [2024-03] ..."), and the
instruction tells it what to prefer. A boost for binding sources is then fused
with the relevance (docs/hybrid.md)::

    fused = 0.85 * p(yes) + 0.15 * binding

with ``binding`` 1.0 for statutes and Supreme People's Court material, else 0.0::

    python examples/hybrid_authority.py                                   # Qwen/Qwen3-Reranker-0.6B
    python examples/hybrid_authority.py --model /models/Qwen3-Reranker-0.6B
    python examples/hybrid_authority.py --model tiny-random               # offline smoke test

``tiny-random`` builds a tiny random-weight checkpoint (needs the ``fixtures``
extra): everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from qwen3_rerank_core import DEFAULT_MODEL, Fusion, ModelLoadError, Qwen3Reranker, boost

QUERY = "Can a landlord keep the whole deposit for minor wear and tear?"
INSTRUCTION = (
    "Given a legal question, retrieve passages that answer it; prefer binding sources "
    "(statutes, Supreme People's Court) and recent ones, as stated in each passage's header"
)
BINDING = {"Civil Code", "Supreme People's Court Gazette"}
# made-up passages for the example: source, year, month, text
PASSAGES = [
    ("Law firm blog", 2025, 1, "Landlords often keep deposits; tenants rarely win in court."),
    (
        "Civil Code",
        2021,
        1,
        "A lessee who uses the leased property as agreed is not liable for its normal wear and tear.",
    ),
    (
        "Supreme People's Court Gazette",
        2024,
        3,
        "A deposit may only offset damage beyond reasonable use; ordinary wear and tear does not qualify.",
    ),
    (
        "Online forum",
        2023,
        7,
        "My landlord kept 100% of my deposit for scuffed walls, is that legal?",
    ),
    (
        "Intermediate Court judgment",
        2019,
        11,
        "Deduction for repainting upheld where the tenant caused damage beyond normal use.",
    ),
]
FUSION = Fusion(relevance=0.85, signals={"binding": 0.15})


def candidate_text(source: str, year: int, month: int, text: str) -> str:
    """The text the reranker reads: the metadata header, then the passage."""
    return f"[source: {source} {year}] [{year}-{month:02d}] {text}"


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
    texts = [candidate_text(*p) for p in PASSAGES]
    binding = boost([p[0] in BINDING for p in PASSAGES])
    try:
        with Qwen3Reranker(model=model, device=args.device) as reranker:
            results = reranker.rerank(
                QUERY,
                texts,
                instruction=INSTRUCTION,
                fusion=FUSION,
                signals={"binding": binding},
                top_n=args.top_n,
            )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B", file=sys.stderr
        )
        return 2

    print(f"Query: {QUERY}\nModel: {args.model}\nFusion: {FUSION.spec}\n")
    print(f"{'rank':>4}  {'index':>5}  {'p(yes)':>7}  {'fused':>7}  binding  passage")
    for rank, r in enumerate(results, start=1):
        assert r.fusion is not None
        print(
            f"{rank:>4}  {r.index:>5}  {r.score:>7.4f}  {r.fused_score:>7.4f}  "
            f"{r.fusion.signal('binding'):>7.2f}  {r.document}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
