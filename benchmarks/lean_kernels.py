"""The two kernel choices of the lean forward, measured alone on this CPU.

1. **Linear layers**: ``torch.nn.functional.linear`` (the default BLAS) against oneDNN with
   the weight packed once (``torch.ops.mkldnn._linear_pointwise``, what
   ``qwen3_rerank_core._backends._lean`` runs on CPU), on the projections of each benchmark
   shape at the row counts one batch has.
2. **Causal attention with a cached prefix**: one SDPA call with the whole
   ``(rows, prefix + rows)`` mask against calls over chunks of query rows that each see
   only the keys up to their last row (``ATTENTION_CHUNK``).
3. **The attention kernel's rate against the products'** (bfloat16, ``--rates``): SDPA's
   GFLOP/s by sequence length and head size, causal and not, beside a bf16 product's,
   both measured in the same run: how far below the products' rate the CPU attention
   kernel runs at the lengths a reranker's rows have (a few hundred tokens).

Each figure is the best of ``--repeat`` timings; both contenders of a line run back to back,
so compare within a line. Example::

    .venv/bin/python benchmarks/lean_kernels.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoints import full_config


def best_seconds(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def linear_rows(
    configs: list[str], rows: list[int], repeat: int, dtype: str = "float32"
) -> list[str]:
    """One line per projection and row count; in bfloat16 also the MLP's fused SwiGLU
    (gate and up products with the SiLU and the gated product in their epilogues, as the
    lean forward runs them where the element-wise steps are torch's), its BLAS column the
    unfused ``silu(x @ gate) * (x @ up)``."""
    import torch
    import torch.nn.functional as F

    from qwen3_rerank_core._backends._lean_ops import swiglu

    tdtype = getattr(torch, dtype)

    lines = [
        "| config | projection (in -> out) | rows | BLAS GFLOP/s | oneDNN packed GFLOP/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name in configs:
        cfg = full_config(name)
        hidden, inner = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
        heads, kv, dim = (
            int(cfg["num_attention_heads"]),
            int(cfg["num_key_value_heads"]),
            int(cfg["head_dim"]),
        )
        shapes = {
            "qkv": (hidden, (heads + 2 * kv) * dim),
            "o": (heads * dim, hidden),
            "gate_up": (hidden, 2 * inner),
            "down": (inner, hidden),
        }
        for proj, (k, n) in shapes.items():
            w = torch.randn(n, k).to(tdtype)
            packed = torch.ops.mkldnn._reorder_linear_weight(w)
            for m in rows:
                x = torch.randn(m, k).to(tdtype)
                flops = 2 * m * k * n
                blas = best_seconds(lambda x=x, w=w: F.linear(x, w), repeat)
                dnnl = best_seconds(
                    lambda x=x, p=packed: torch.ops.mkldnn._linear_pointwise(
                        x, p, None, "none", [], ""
                    ),
                    repeat,
                )
                lines.append(
                    f"| {name} | {proj} ({k} -> {n}) | {m} | {flops / blas / 1e9:.0f} | "
                    f"{flops / dnnl / 1e9:.0f} | {blas / dnnl:.2f} |"
                )
        if dtype != "bfloat16":
            continue
        gate, up = torch.randn(inner, hidden).to(tdtype), torch.randn(inner, hidden).to(tdtype)
        gp, upp = (torch.ops.mkldnn._reorder_linear_weight(t) for t in (gate, up))
        for m in rows:
            x = torch.randn(m, hidden).to(tdtype)
            flops = 4 * m * hidden * inner
            blas = best_seconds(
                lambda x=x, g=gate, u=up: F.silu(F.linear(x, g)) * F.linear(x, u), repeat
            )
            fused = best_seconds(lambda x=x, g=gp, u=upp: swiglu(x, g, None, u, None), repeat)
            lines.append(
                f"| {name} | fused SwiGLU ({hidden} -> 2 x {inner}) | {m} | "
                f"{flops / blas / 1e9:.0f} | {flops / fused / 1e9:.0f} | {blas / fused:.2f} |"
            )
    return lines


def chunked_attention(q: Any, k: Any, v: Any, mask: Any, size: int) -> Any:
    """Causal attention of ``q``'s rows (after ``k.shape[2] - rows`` cached keys), in
    SDPA calls over ``size`` query rows that each see the keys up to their last row."""
    import torch
    import torch.nn.functional as F

    rows = q.shape[2]
    prefix = k.shape[2] - rows
    outs = []
    for start in range(0, rows, size):
        stop = min(rows, start + size)
        outs.append(
            F.scaled_dot_product_attention(
                q[:, :, start:stop],
                k[:, :, : prefix + stop],
                v[:, :, : prefix + stop],
                attn_mask=mask[start:stop, : prefix + stop],
                enable_gqa=True,
            )
        )
    return torch.cat(outs, dim=2)


def attention_rows(cases: list[tuple[int, int, int, int, int]], repeat: int) -> list[str]:
    import torch

    sizes = (64, 128, 256)
    head = " | ".join(f"chunks of {s} (ms)" for s in sizes)
    lines = [
        f"| batch x heads/kv heads | rows | prefix | one call (ms) | {head} |",
        "|---|---|---|---|" + "---|" * len(sizes),
    ]
    for batch, heads, kv, rows, prefix in cases:
        q = torch.randn(batch, heads, rows, 64)
        k = torch.randn(batch, kv, prefix + rows, 64)
        v = torch.randn(batch, kv, prefix + rows, 64)
        keys = torch.arange(prefix + rows)
        mask = keys[None] <= (prefix + torch.arange(rows))[:, None]

        def run(size: int, q: Any = q, k: Any = k, v: Any = v, mask: Any = mask) -> Any:
            return chunked_attention(q, k, v, mask, size)

        one = best_seconds(lambda r=rows: run(r), repeat)
        cells = " | ".join(f"{best_seconds(lambda s=s: run(s), repeat) * 1e3:.1f}" for s in sizes)
        lines.append(f"| {batch} x {heads}/{kv} | {rows} | {prefix} | {one * 1e3:.1f} | {cells} |")
    return lines


def attention_rates(dims: list[int], lengths: list[int], repeat: int) -> list[str]:
    """SDPA's GFLOP/s in bfloat16 (8 heads, ``2048 / length`` rows of ``length`` tokens
    each, no mask), causal (half the products counted) and full, against
    ``nn.Linear(1024, 3072)`` on 2048 rows."""
    import torch
    import torch.nn.functional as F

    dtype = torch.bfloat16
    x, w = torch.randn(2048, 1024, dtype=dtype), torch.randn(3072, 1024, dtype=dtype)
    product = 2 * 2048 * 1024 * 3072 / best_seconds(lambda: F.linear(x, w), repeat) / 1e9
    lines = [
        f"bfloat16 product rate (2048 x 1024 -> 3072): {product:.0f} GFLOP/s",
        "",
        "| head size | tokens a row | rows | causal GFLOP/s | full GFLOP/s | causal / product |",
        "|---|---|---|---|---|---|",
    ]
    for dim in dims:
        for length in lengths:
            rows = max(1, 2048 // length)
            q, k, v = (torch.randn(rows, 8, length, dim, dtype=dtype) for _ in range(3))
            rates = []
            for causal in (True, False):
                seconds = best_seconds(
                    lambda c=causal, q=q, k=k, v=v: F.scaled_dot_product_attention(
                        q, k, v, is_causal=c
                    ),
                    repeat,
                )
                flops = 4 * rows * 8 * length * length * dim * (0.5 if causal else 1.0)
                rates.append(flops / seconds / 1e9)
            lines.append(
                f"| {dim} | {length} | {rows} | {rates[0]:.0f} | {rates[1]:.0f} | "
                f"{rates[0] / product:.2f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default="8x512,12x256,2x1024")
    p.add_argument("--rows", default="300,2048", help="rows of one linear call")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--smoke", action="store_true", help="tiny attention cases (tests)")
    p.add_argument("--rates", action="store_true", help="only section 3: attention rates in bf16")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="of section 1"
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.rates:
        lengths = [64, 128] if args.smoke else [128, 256, 512, 1024, 2048]
        print(f"torch {torch.__version__}, {args.threads} threads\n")
        print("\n".join(attention_rates([64, 128], lengths, args.repeat)))
        return 0
    print(f"torch {torch.__version__}, {args.threads} threads, {args.dtype}\n")
    rows = [int(r) for r in args.rows.split(",")]
    print("\n".join(linear_rows(args.configs.split(","), rows, args.repeat, args.dtype)))
    print()
    cases = [(6, 8, 4, 340, 45), (12, 4, 2, 340, 45), (2, 8, 4, 1000, 45), (1, 8, 4, 4000, 45)]
    if args.smoke:
        cases = [(2, 4, 2, 70, 5)]
    print("\n".join(attention_rows(cases, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
