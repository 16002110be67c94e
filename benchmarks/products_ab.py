"""Ours with the bf16 products on our CPU kernel against ours on oneDNN's, in one process,
interleaved.

Two rerankers load the same bf16-saved benchmark checkpoint at our default dtype (bf16 on
a CPU with AVX-512 BF16); one runs its products on our kernel
(:func:`~qwen3_rerank_core._backends._cpu_linear.cpu_linear`: float32 results, the
residual adds in the output and down products), the other on oneDNN's packed products
(bf16 results), the lean forward's other bf16 path. Both score a workload's first query
``--rounds`` times in alternating order after one warmup each; the medians, the largest
score difference between the two and each one's largest and mean deviation from ours in
float32 are printed. With ``--st``, sentence-transformers' ``CrossEncoder`` pinned to
bf16 takes its turn in the same rounds. Example::

    .venv/bin/python benchmarks/products_ab.py --config 0.6b --workload a --docs-scale 0.1
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab


def load(load_backend: Any, *, ours: bool) -> Any:
    """A backend from ``load_backend()``, its products on our kernel (``ours``) or on
    oneDNN's (our kernel hidden from the lean forward while it loads)."""
    from qwen3_rerank_core._backends import _lean

    with contextlib.ExitStack() as stack:
        if not ours:
            stack.enter_context(mock.patch.object(_lean, "cpu_linear", lambda: None))
        backend = load_backend()
    if backend._lean is None or backend._lean.cpu_products is not ours:
        raise RuntimeError(f"asked for our products={ours}, the lean forward has others")
    return backend


def deviations(scores: list[float], exact: list[float]) -> tuple[float, float]:
    """Largest and mean ``|score - exact|``."""
    diffs = [abs(a - b) for a, b in zip(scores, exact, strict=True)]
    return max(diffs), sum(diffs) / len(diffs)


def main() -> int:
    args = ab.parse_args(
        __doc__,
        rounds=5,
        workload="a",
        flags={"st": "also time sentence-transformers, pinned to bf16, in the same rounds"},
    )

    from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker

    folder = str(ab.checkpoint(args))

    def load_backend(dtype: str | None = None) -> Any:
        return Qwen3Reranker(model=folder, device="cpu", dtype=dtype).load()._get_backend()

    try:
        ours = load(load_backend, ours=True)
    except RuntimeError:
        print("our product kernel does not run here (it needs bf16 on AVX-512 BF16, no AMX)")
        return 1
    onednn = load(load_backend, ours=False)
    workload = ab.first_query_workload(args.workload, ours._tokenizer, args.docs_scale)
    exact = load_backend("float32").score_groups(workload.items, DEFAULT_INSTRUCTION)[0]
    with contextlib.ExitStack() as stack:
        peer = None
        if args.st:
            peer = stack.enter_context(ab.st_peer(folder, ours._lean._dtype, workload))
        race = ab.race({"ours": ours, "onednn": onednn}, workload.items, args.rounds, peer)
    medians = race.medians
    line = (
        f"{args.config} {args.workload}, {workload.n_docs} documents: "
        f"our products {medians['ours']:.3f} s, oneDNN's {medians['onednn']:.3f} s, "
        f"ours / oneDNN speed {medians['onednn'] / medians['ours']:.2f}x, "
        f"max |d| between them {race.max_diff:.1e}"
    )
    for name, backend in (("ours", ours), ("oneDNN", onednn)):
        got = backend.score_groups(workload.items, DEFAULT_INSTRUCTION)[0]
        largest, mean = deviations(got, exact)
        line += f"; {name} vs float32: max {largest:.1e}, mean {mean:.1e}"
    if "peer" in medians:
        line += (
            f"; sentence-transformers {medians['peer']:.3f} s: ours "
            f"{medians['peer'] / medians['ours']:.2f}x, oneDNN's {medians['peer'] / medians['onednn']:.2f}x"
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
