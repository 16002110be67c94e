"""Our bf16 product kernel against oneDNN's packed bf16 products, the products alone.

Each case is one product of the lean forward at ``rows`` tokens (the 0.6B architecture's
shapes, ~1500 tokens a batch, and its last layer's few rows; the 4B's and 8B's): ``x @ w.T`` with bf16 ``x``
and ``w``, oneDNN's packed product as the lean forward otherwise calls it (bf16 result), ours
with its float32 result; the gated product (``silu(x @ gate.T) * (x @ up.T)``, one bf16
result) against oneDNN's fused epilogues. The two alternate, best of ``--repeat`` calls
each; the rates count 2 x M x K x N per product, and each one's largest difference from the
float64 product of the same bf16 operands is printed. Example::

    .venv/bin/python benchmarks/linear_kernel.py --threads 2 --repeat 7
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: rows M, inner size K, outputs N, gated: the 0.6B's qkv, o, gate/up, down at ~1500 rows,
#: its o at 60 (the last layer); the 4B's qkv, gate/up and down and the 8B's down at 1000
#: rows; the square reference of the benchmark's MFU.
CASES = [
    (1500, 1024, 4096, False),
    (1500, 2048, 1024, False),
    (1500, 1024, 3072, True),
    (1500, 3072, 1024, False),
    (60, 2048, 1024, False),
    (1000, 2560, 6144, False),
    (1000, 2560, 9728, True),
    (1000, 9728, 2560, False),
    (1000, 12288, 4096, False),
    (3072, 3072, 3072, False),
]
SMOKE_CASES = [(40, 64, 96, False), (40, 64, 48, True)]


@dataclass(frozen=True)
class Row:
    case: tuple[int, int, int, bool]
    onednn_gflops: float
    ours_gflops: float
    onednn_err: float
    ours_err: float


def _best_pair(a: Callable[[], Any], b: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best seconds of ``a`` and of ``b``, called in turn ``repeat`` times after a warmup."""
    a(), b()
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((a, b)):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def measure(case: tuple[int, int, int, bool], products: Any, repeat: int) -> Row:
    import torch

    from qwen3_rerank_core._backends._cpu_linear import SWIGLU
    from qwen3_rerank_core._backends._lean_ops import packed_linear, swiglu

    m, k, n, gated = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g).bfloat16()
    w = (torch.randn(2 * n if gated else n, k, generator=g) * k**-0.5).bfloat16()
    reorder = torch.ops.mkldnn._reorder_linear_weight
    both = x.double() @ w.double().T
    if gated:
        gate, up = reorder(w[:n].contiguous()), reorder(w[n:].contiguous())
        packed = products.pack(w, None, mode=SWIGLU)
        exact = torch.nn.functional.silu(both[:, :n]) * both[:, n:]

        def theirs() -> Any:
            return swiglu(x, gate, None, up, None)

    else:
        weight = reorder(w)
        packed = products.pack(w, None)
        exact = both

        def theirs() -> Any:
            return packed_linear(x, weight, None)

    def ours() -> Any:
        return products(x, packed)

    with torch.inference_mode():
        theirs_s, ours_s = _best_pair(theirs, ours, repeat)
        theirs_err = float((theirs().double() - exact).abs().max())
        ours_err = float((ours().double() - exact).abs().max())
    flops = 2 * m * k * n * (2 if gated else 1)
    return Row(case, flops / theirs_s / 1e9, flops / ours_s / 1e9, theirs_err, ours_err)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--smoke", action="store_true", help="small cases (tests)")
    args = p.parse_args(argv)

    import torch

    from qwen3_rerank_core._backends import _cpu_attention, _cpu_linear

    reason = _cpu_attention.unrunnable_reason(torch)
    if reason is not None:
        print(f"the kernel cannot run here: {reason}")
        return 1
    torch.set_num_threads(args.threads)
    products = _cpu_linear.load_linear()
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeat}\n")
    print(
        "| M x K x N | product | oneDNN GFLOP/s | ours GFLOP/s | ours is | "
        "max err oneDNN (bf16 out) / ours |"
    )
    print("|---|---|---|---|---|---|")
    for case in SMOKE_CASES if args.smoke else CASES:
        row = measure(case, products, args.repeat)
        m, k, n, gated = case
        print(
            f"| {m} x {k} x {n} | {'gate/up + SwiGLU' if gated else 'plain'} | "
            f"{row.onednn_gflops:.0f} | {row.ours_gflops:.0f} | "
            f"{row.ours_gflops / row.onednn_gflops:.2f}x | "
            f"{row.onednn_err:.1e} / {row.ours_err:.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
