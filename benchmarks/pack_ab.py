"""Ours with packed oneDNN products against ours with the default BLAS, in one process,
interleaved.

Two rerankers load the same bf16-saved benchmark checkpoint at our default dtype, one with
the lean forward's projections packed for oneDNN and one on the default BLAS (the choice
:func:`~qwen3_rerank_core._backends._lean.onednn_preferred` makes per CPU, forced each way
at load); both score a workload's first query ``--rounds`` times in alternating order after
one warmup each, and the medians and the largest score difference are printed. With
``--st``, sentence-transformers' ``CrossEncoder`` pinned to our dtype (the apples-to-apples
peer: the benchmark's ``st`` contender) takes its turn in the same rounds, and ours' speed
against it is printed for both product paths. Example::

    .venv/bin/python benchmarks/pack_ab.py --config 0.6b --workload a --docs-scale 0.1
"""

from __future__ import annotations

import contextlib
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
    peer: float | None = None
    """Median seconds of the peer's call, where one took turns."""


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


def compare(
    packed: Any,
    blas: Any,
    groups: list[tuple[str, list[str]]],
    rounds: int,
    peer: Callable[[], object] | None = None,
) -> Comparison:
    """Score ``groups`` with the ``packed`` and ``blas`` backends (and ``peer()``, where
    given) ``rounds`` times each, alternating their order, after one warmup call each."""
    race = ab.race({"packed": packed, "blas": blas}, groups, rounds, peer)
    medians = race.medians
    return Comparison(medians["packed"], medians["blas"], race.max_diff, medians.get("peer"))


def main() -> int:
    args = ab.parse_args(
        __doc__,
        rounds=5,
        workload="a",
        flags={"st": "also time sentence-transformers, pinned to our dtype, in the same rounds"},
    )

    from qwen3_rerank_core import Qwen3Reranker

    folder = str(ab.checkpoint(args))

    def load_backend() -> Any:
        return Qwen3Reranker(model=folder, device="cpu").load()._get_backend()

    packed = load(load_backend, packed=True)
    blas = load(load_backend, packed=False)
    workload = ab.first_query_workload(args.workload, packed._tokenizer, args.docs_scale)
    dtype = packed._lean._dtype
    with contextlib.ExitStack() as stack:
        peer = stack.enter_context(ab.st_peer(folder, dtype, workload)) if args.st else None
        result = compare(packed, blas, workload.items, args.rounds, peer)
    line = (
        f"{args.config} {args.workload}, {workload.n_docs} documents, "
        f"{dtype}: packed {result.packed:.3f} s, BLAS {result.blas:.3f} s, "
        f"BLAS / packed speed {result.packed / result.blas:.2f}x, max |d| {result.max_diff:.1e}"
    )
    if result.peer is not None:
        line += (
            f"; sentence-transformers {result.peer:.3f} s: ours packed "
            f"{result.peer / result.packed:.2f}x, ours BLAS {result.peer / result.blas:.2f}x"
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
