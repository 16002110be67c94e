"""Ours with attention on our CPU kernel against ours on torch's SDPA, in one process,
interleaved.

Two rerankers load the same bf16-saved benchmark checkpoint at our default dtype (or
``--dtype``); one keeps attention on our CPU kernel of that dtype (float32: AVX2; bf16:
AVX-512 BF16, :func:`~qwen3_rerank_core._backends._cpu_attention.cpu_attention`), the
other runs it on SDPA, the lean forward's fallback. Both score a workload's first query
``--rounds`` times in alternating order after one warmup each; the medians and the largest
score difference are printed. With ``--st``, sentence-transformers' ``CrossEncoder``
pinned to our dtype takes its turn in the same rounds, and ours' speed against it is
printed both ways. Example::

    .venv/bin/python benchmarks/attention_ab.py --config 0.6b --workload a --docs-scale 0.1
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
    kernel: float
    """Median seconds of a call with attention on our kernel."""
    sdpa: float
    """Median seconds of a call with attention on SDPA."""
    max_diff: float
    """Largest score difference between the two."""
    peer: float | None = None
    """Median seconds of the peer's call, where one took turns."""


def on_sdpa(backend: Any) -> Any:
    """``backend`` with its lean forward's attention moved to SDPA (our kernel off)."""
    backend._lean.cpu_kernel = False
    return backend


def compare(
    kernel: Any,
    sdpa: Any,
    groups: list[tuple[str, list[str]]],
    rounds: int,
    peer: Callable[[], object] | None = None,
) -> Comparison:
    """Score ``groups`` with the ``kernel`` and ``sdpa`` backends (and ``peer()``, where
    given) ``rounds`` times each, alternating their order, after one warmup call each."""
    race = ab.race({"kernel": kernel, "sdpa": sdpa}, groups, rounds, peer)
    medians = race.medians
    return Comparison(medians["kernel"], medians["sdpa"], race.max_diff, medians.get("peer"))


def main() -> int:
    args = ab.parse_args(
        __doc__,
        rounds=5,
        workload="a",
        flags={"st": "also time sentence-transformers, pinned to our dtype, in the same rounds"},
        dtype=True,
    )

    from qwen3_rerank_core import Qwen3Reranker

    folder = str(ab.checkpoint(args))

    def load_backend() -> Any:
        return Qwen3Reranker(model=folder, device="cpu", dtype=args.dtype).load()._get_backend()

    kernel = load_backend()
    if not kernel._lean.cpu_kernel:
        print(f"our attention kernel does not run here in {kernel._lean._dtype}")
        return 1
    sdpa = on_sdpa(load_backend())
    workload = ab.first_query_workload(args.workload, kernel._tokenizer, args.docs_scale)
    dtype = kernel._lean._dtype
    with contextlib.ExitStack() as stack:
        peer = stack.enter_context(ab.st_peer(folder, dtype, workload)) if args.st else None
        result = compare(kernel, sdpa, workload.items, args.rounds, peer)
    line = (
        f"{args.config} {args.workload}, {workload.n_docs} documents, {dtype}: "
        f"kernel {result.kernel:.3f} s, SDPA {result.sdpa:.3f} s, "
        f"kernel / SDPA speed {result.sdpa / result.kernel:.2f}x, max |d| {result.max_diff:.1e}"
    )
    if result.peer is not None:
        line += (
            f"; sentence-transformers {result.peer:.3f} s: ours on the kernel "
            f"{result.peer / result.kernel:.2f}x, ours on SDPA {result.peer / result.sdpa:.2f}x"
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
