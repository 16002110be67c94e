"""Ours eager against ours with ``compile=True``, in one process, interleaved.

Both rerankers load the same bf16-saved benchmark checkpoint at our default dtype; the
compiled one's first call (which compiles) is timed apart, then both score workload a's
first query ``--rounds`` times in alternating order, and the medians and the largest
score difference are printed. Example::

    .venv/bin/python benchmarks/compile_ab.py --config 8x512 --docs-scale 0.3 --rounds 7
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab


@dataclass(frozen=True)
class Comparison:
    first_call: float
    """Seconds of the compiled reranker's first call (it compiles)."""
    eager: float
    """Median seconds of an eager call."""
    compiled: float
    """Median seconds of a compiled call."""
    max_diff: float
    """Largest score difference between the two."""


def compare(
    eager: Any, compiled: Any, groups: list[tuple[str, list[str]]], rounds: int
) -> Comparison:
    """Score ``groups`` with the ``eager`` and ``compiled`` backends (transformers, the
    second loaded with ``compile=True``) ``rounds`` times each, alternating which goes
    first, after the compiled one's first call and one eager warmup."""
    call, scores = ab.scorer({"eager": eager, "compiled": compiled}, groups)
    start = time.perf_counter()
    call("compiled")
    first_call = time.perf_counter() - start
    call("eager")  # warmup
    medians = ab.interleaved(call, ("eager", "compiled"), rounds)
    diff = ab.largest_difference(scores["eager"], scores["compiled"])
    return Comparison(first_call, medians["eager"], medians["compiled"], diff)


def main() -> int:
    args = ab.parse_args(__doc__, rounds=7)

    from qwen3_rerank_core import Qwen3Reranker

    folder = str(ab.checkpoint(args))
    eager = Qwen3Reranker(model=folder, device="cpu").load()._get_backend()
    compiled = Qwen3Reranker(model=folder, device="cpu", compile=True).load()._get_backend()
    tokenizer = eager._tokenizer  # type: ignore[attr-defined]
    groups = ab.first_query("a", tokenizer, args.docs_scale)
    result = compare(eager, compiled, groups, args.rounds)
    print(f"first compiled call (compiles): {result.first_call:.1f} s")
    print(
        f"{args.config}, {len(groups[0][1])} documents: eager {result.eager:.3f} s, compiled "
        f"{result.compiled:.3f} s, compiled / eager speed {result.eager / result.compiled:.2f}x, "
        f"max |d| {result.max_diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
