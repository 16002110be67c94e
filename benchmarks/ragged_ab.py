"""Ours with padded batches against ours with ragged ones (rows without their padding), in
one process, interleaved.

One reranker loads the bf16-saved benchmark checkpoint at our default dtype; each round
scores a workload's first query once with the padding kept (``RAGGED_MIN_PADDING`` above
1) and once at the shipped threshold, alternating which goes first, and the medians and
the largest score difference are printed. Example::

    .venv/bin/python benchmarks/ragged_ab.py --config 8x512 --workload b --docs-scale 0.3
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab


@dataclass(frozen=True)
class Comparison:
    padded: float
    """Median seconds of a call with every batch padded."""
    ragged: float
    """Median seconds at the shipped ``RAGGED_MIN_PADDING``."""
    max_diff: float
    """Largest score difference between the two."""


def compare(backend: Any, groups: list[tuple[str, list[str]]], rounds: int) -> Comparison:
    """Score ``groups`` with ``backend`` (the transformers backend's lean forward) ``rounds``
    times each way, alternating which goes first, after one warmup call."""
    from qwen3_rerank_core._backends import _lean

    shipped = _lean.RAGGED_MIN_PADDING
    thresholds = {"padded": 2.0, "ragged": shipped}
    score, scores = ab.scorer({"padded": backend, "ragged": backend}, groups)

    def call(name: str) -> None:
        _lean.RAGGED_MIN_PADDING = thresholds[name]
        score(name)

    try:
        call("padded")  # warmup
        medians = ab.interleaved(call, ("padded", "ragged"), rounds)
    finally:
        _lean.RAGGED_MIN_PADDING = shipped
    diff = ab.largest_difference(scores["padded"], scores["ragged"])
    return Comparison(medians["padded"], medians["ragged"], diff)


def main() -> int:
    args = ab.parse_args(__doc__, rounds=5, workload="b")

    from qwen3_rerank_core import Qwen3Reranker

    backend = Qwen3Reranker(model=str(ab.checkpoint(args)), device="cpu").load()._get_backend()
    tokenizer = backend._tokenizer  # type: ignore[attr-defined]
    groups = ab.first_query(args.workload, tokenizer, args.docs_scale)
    result = compare(backend, groups, args.rounds)
    print(
        f"{args.config} {args.workload}, {len(groups[0][1])} documents: padded "
        f"{result.padded:.3f} s, ragged {result.ragged:.3f} s, ragged / padded speed "
        f"{result.padded / result.ragged:.2f}x, max |d| {result.max_diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
