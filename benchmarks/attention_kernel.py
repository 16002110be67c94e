"""Our CPU attention kernels against torch's SDPA, attention alone: the AVX-512 BF16 one
in bf16 (the default), the AVX2 one with ``--dtype float32``.

Each case is the lean forward's attention at one layer: ``batch`` rows of ``rows`` tokens
after a ``prefix``-token query prefix, causal, in the forward's layouts. SDPA runs as the
lean forward calls it (the prefix's keys and values joined to each row's, chunks of
``ATTENTION_CHUNK_BF16`` query rows in bf16, ``ATTENTION_CHUNK`` in float32); the kernel
reads the prefix in place. Best of ``--repeat`` calls each, and the largest difference of
each from attention of the same inputs in a wider type (float32 for bf16, float64 for
float32). Example::

    .venv/bin/python benchmarks/attention_kernel.py --threads 2 --repeat 11
    .venv/bin/python benchmarks/attention_kernel.py --threads 2 --repeat 11 --dtype float32
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: batch, heads, kv heads, rows, prefix, head size: ~300-token and short rows of the
#: benchmark configs (``12x256``/``8x512``, ``0.6b``), one long row, an odd head size.
CASES = [
    (6, 4, 2, 300, 80, 64),
    (6, 8, 4, 300, 80, 64),
    (2, 16, 8, 300, 80, 128),
    (24, 4, 2, 40, 80, 64),
    (1, 8, 4, 2000, 80, 64),
    (5, 6, 2, 33, 17, 96),
]
SMOKE_CASES = [(2, 4, 2, 20, 7, 64)]


@dataclass(frozen=True)
class Row:
    case: tuple[int, ...]
    sdpa_ms: float
    kernel_ms: float
    gflops: float
    """The kernel's rate: causal attention's multiply-adds x 2 over its time."""
    sdpa_err: float
    kernel_err: float


def _best(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(case: tuple[int, ...], kernel: Any, repeat: int, dtype_name: str = "bfloat16") -> Row:
    import torch

    from qwen3_rerank_core._backends._lean import ATTENTION_CHUNK, ATTENTION_CHUNK_BF16
    from qwen3_rerank_core._backends._lean_ops import attention

    batch, heads, kv_heads, rows, prefix, dim = case
    g = torch.Generator().manual_seed(0)
    dtype = getattr(torch, dtype_name)
    chunk = ATTENTION_CHUNK_BF16 if dtype == torch.bfloat16 else ATTENTION_CHUNK
    wide = torch.float32 if dtype == torch.bfloat16 else torch.float64

    def rand(*shape: int, scale: float = 1.0) -> Any:
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    q = rand(batch, rows, heads, dim, scale=2.0).transpose(1, 2)
    k = rand(batch, rows, kv_heads, dim, scale=2.0).transpose(1, 2)
    v = rand(batch, rows, kv_heads, dim).transpose(1, 2)
    pk = rand(1, prefix, kv_heads, dim, scale=2.0).transpose(1, 2)
    pv = rand(1, prefix, kv_heads, dim).transpose(1, 2)
    scale, gqa = dim**-0.5, heads != kv_heads

    def sdpa(dtype: Any = dtype, chunk: int = chunk) -> Any:
        keys = torch.cat([pk.expand(batch, -1, -1, -1), k], dim=2)
        values = torch.cat([pv.expand(batch, -1, -1, -1), v], dim=2)
        return attention(
            q.to(dtype), keys.to(dtype), values.to(dtype), None, scale, gqa=gqa, chunk=chunk
        )

    def ours() -> Any:
        return kernel(q, k, v, (pk, pv), None, scale)

    exact = sdpa(wide, 0)
    with torch.inference_mode():
        sdpa_s, kernel_s = _best(sdpa, repeat), _best(ours, repeat)
    flops = 4 * batch * heads * rows * (prefix + (rows + 1) / 2) * dim
    return Row(
        case,
        sdpa_s * 1e3,
        kernel_s * 1e3,
        flops / kernel_s / 1e9,
        float((sdpa().to(wide) - exact).abs().max()),
        float((ours().to(wide) - exact).abs().max()),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--smoke", action="store_true", help="one small case (tests)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    args = p.parse_args(argv)

    import torch

    from qwen3_rerank_core._backends import _cpu_attention

    dtype = getattr(torch, args.dtype)
    library = _cpu_attention.library_for(torch, dtype)
    assert library is not None  # --dtype's choices each have one
    reason = _cpu_attention.unrunnable_reason(torch, library)
    if reason is not None:
        print(f"the kernel cannot run here: {reason}")
        return 1
    torch.set_num_threads(args.threads)
    kernel = _cpu_attention.load_kernel(dtype)
    print(
        f"torch {torch.__version__}, {args.dtype}, {args.threads} threads, best of {args.repeat}\n"
    )
    print(
        "| batch x rows (+ prefix) | heads / kv heads, head size | SDPA ms | kernel ms | "
        "kernel is | kernel GFLOP/s | max err SDPA / kernel |"
    )
    print("|---|---|---|---|---|---|---|")
    for case in SMOKE_CASES if args.smoke else CASES:
        row = measure(case, kernel, args.repeat, args.dtype)
        batch, heads, kv_heads, rows, prefix, dim = case
        print(
            f"| {batch} x {rows} (+ {prefix}) | {heads} / {kv_heads}, {dim} | {row.sdpa_ms:.2f} | "
            f"{row.kernel_ms:.2f} | {row.sdpa_ms / row.kernel_ms:.2f}x | {row.gflops:.0f} | "
            f"{row.sdpa_err:.1e} / {row.kernel_err:.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
