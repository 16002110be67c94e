"""Ours with padded batches against ours with ragged ones (rows without their padding), in
one process, interleaved.

One reranker loads the bf16-saved benchmark checkpoint at our default dtype; each round
scores a workload's first query once with the padding kept (``RAGGED_MIN_PADDING`` above
1) and once at the shipped threshold, alternating which goes first, and the medians and
the largest score difference are printed. Example::

    .venv/bin/python benchmarks/ragged_ab.py --config 8x512 --workload b --docs-scale 0.3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


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
    from qwen3_rerank_core import DEFAULT_INSTRUCTION
    from qwen3_rerank_core._backends import _lean

    shipped = _lean.RAGGED_MIN_PADDING
    thresholds = {"padded": 2.0, "ragged": shipped}
    scores: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {"padded": [], "ragged": []}

    def call(name: str) -> float:
        _lean.RAGGED_MIN_PADDING = thresholds[name]
        start = time.perf_counter()
        scores[name] = list(backend.score_groups(groups, DEFAULT_INSTRUCTION)[0])
        return time.perf_counter() - start

    try:
        call("padded")  # warmup
        for i in range(rounds):
            for name in ("padded", "ragged") if i % 2 == 0 else ("ragged", "padded"):
                times[name].append(call(name))
    finally:
        _lean.RAGGED_MIN_PADDING = shipped
    diff = max(abs(a - b) for a, b in zip(scores["padded"], scores["ragged"], strict=True))
    return Comparison(statistics.median(times["padded"]), statistics.median(times["ragged"]), diff)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="8x512")
    p.add_argument("--workload", default="b")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs-scale", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--save-dtype", default="bfloat16", help="the checkpoint's saved dtype")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")

    import torch
    from checkpoints import build_checkpoint
    from workloads import WORKLOADS, make_workload

    from qwen3_rerank_core import Qwen3Reranker

    torch.set_num_threads(args.threads)
    folder = build_checkpoint(
        args.config, seed=0, cache_dir=REPO / ".cache" / "fixtures", dtype=args.save_dtype
    )
    backend = Qwen3Reranker(model=str(folder), device="cpu").load()._get_backend()
    tokenizer = backend._tokenizer  # type: ignore[attr-defined]
    wl = make_workload(WORKLOADS[args.workload], tokenizer, seed=0, docs_scale=args.docs_scale)
    groups = [wl.items[0]]
    result = compare(backend, groups, args.rounds)
    print(
        f"{args.config} {args.workload}, {len(groups[0][1])} documents: padded "
        f"{result.padded:.3f} s, ragged {result.ragged:.3f} s, ragged / padded speed "
        f"{result.padded / result.ragged:.2f}x, max |d| {result.max_diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
