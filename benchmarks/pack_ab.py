"""Ours with packed oneDNN products against ours with the default BLAS, in one process,
interleaved.

Two rerankers load the same bf16-saved benchmark checkpoint at our default dtype, one with
the lean forward's projections packed for oneDNN and one on the default BLAS (the choice
:func:`~qwen3_rerank_core._backends._lean.onednn_preferred` makes per CPU, forced each way
at load); both score a workload's first query ``--rounds`` times in alternating order after
one warmup each, and the medians and the largest score difference are printed. Example::

    .venv/bin/python benchmarks/pack_ab.py --config 0.6b --workload a --docs-scale 0.1
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab


@dataclass(frozen=True)
class Comparison:
    packed: float
    """Median seconds of a call with packed oneDNN products."""
    blas: float
    """Median seconds of a call with the default BLAS."""
    max_diff: float
    """Largest score difference between the two."""


def load(load_backend: Callable[[], Any], *, packed: bool) -> Any:
    """``load_backend()`` with the lean forward's products packed for oneDNN or not, whatever
    this CPU's :func:`onednn_preferred` says (restored afterwards)."""
    from qwen3_rerank_core._backends import _lean

    preferred = _lean.onednn_preferred
    _lean.onednn_preferred = lambda dtype: packed
    try:
        backend = load_backend()
    finally:
        _lean.onednn_preferred = preferred
    if backend._lean.packed is not packed:
        raise RuntimeError(
            f"asked for packed={packed}, the lean forward has {backend._lean.packed}"
        )
    return backend


def compare(packed: Any, blas: Any, groups: list[tuple[str, list[str]]], rounds: int) -> Comparison:
    """Score ``groups`` with the ``packed`` and ``blas`` backends ``rounds`` times each,
    alternating which goes first, after one warmup call each."""
    from qwen3_rerank_core import DEFAULT_INSTRUCTION

    backends = {"packed": packed, "blas": blas}
    scores: dict[str, list[float]] = {}

    def call(name: str) -> None:
        scores[name] = list(backends[name].score_groups(groups, DEFAULT_INSTRUCTION)[0])

    call("packed")
    call("blas")
    medians = ab.interleaved(call, ("packed", "blas"), rounds)
    diff = max(abs(a - b) for a, b in zip(scores["packed"], scores["blas"], strict=True))
    return Comparison(medians["packed"], medians["blas"], diff)


def main() -> int:
    args = ab.parse_args(__doc__, rounds=5, workload="a")

    from qwen3_rerank_core import Qwen3Reranker

    folder = str(ab.checkpoint(args))

    def load_backend() -> Any:
        return Qwen3Reranker(model=folder, device="cpu").load()._get_backend()

    packed = load(load_backend, packed=True)
    blas = load(load_backend, packed=False)
    groups = ab.first_query(args.workload, packed._tokenizer, args.docs_scale)
    result = compare(packed, blas, groups, args.rounds)
    print(
        f"{args.config} {args.workload}, {len(groups[0][1])} documents, "
        f"{packed._lean._dtype}: packed {result.packed:.3f} s, BLAS {result.blas:.3f} s, "
        f"BLAS / packed speed {result.packed / result.blas:.2f}x, max |d| {result.max_diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
