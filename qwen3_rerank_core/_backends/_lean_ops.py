"""The lean forward's kernels that are not plain torch ops, as functions and as opaque
operators for TorchInductor.

:class:`~qwen3_rerank_core._backends._lean.LeanForward` runs every step either eagerly
or, with ``compile=True``, under ``torch.compile``: the element-wise work between the
matrix products (norms, rotary embedding, residual adds, layouts, the prefix's keys
joined to each row's) is then fused by Inductor, while the matrix products and the
attention stay the kernels measured fastest here: packed oneDNN products (with the SiLU
and the gated product in their epilogues) and the chunked SDPA below. Inductor cannot
lower calls to packed weights itself (a ``LoweringException`` on
``mkldnn._linear_pointwise``), so they reach it as the custom operators of
:func:`register_opaque_ops`, which call the same functions as the eager path.

Example (the eager functions, on a small input)::

    >>> import torch
    >>> q = k = v = torch.randn(1, 2, 5, 8)
    >>> attention(q, k, v, None, 8**-0.5, gqa=False, chunk=2).shape
    torch.Size([1, 5, 2, 8])
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from ._cpu_attention import cpu_attention

__all__ = [
    "attend",
    "attend_ragged",
    "attention",
    "causal_masks",
    "compiled",
    "missing_cpp_compiler",
    "packed_linear",
    "register_opaque_ops",
    "swiglu",
]


def packed_linear(x: Any, weight: Any, bias: Any | None) -> Any:
    """``x @ W.T + bias`` with ``weight`` packed for oneDNN
    (``torch.ops.mkldnn._reorder_linear_weight``)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def swiglu(x: Any, gate: Any, gate_bias: Any | None, up: Any, up_bias: Any | None) -> Any:
    """``silu(x @ gate.T) * (x @ up.T)`` with packed oneDNN weights, the SiLU and the
    product computed in the two products' epilogues."""
    import torch

    mkldnn = torch.ops.mkldnn
    gated = mkldnn._linear_pointwise(x, gate, gate_bias, "swish", [], "")
    return mkldnn._linear_pointwise.binary(x, gated, up, up_bias, "mul")


def causal_masks(rows: int, past: int, chunk: int, device: Any) -> list[tuple[int, int, Any]]:
    """``(start, stop, mask)`` for query rows ``[start, stop)`` of ``rows`` that follow
    ``past`` cached positions, ``chunk`` rows at a time: row ``i`` sees keys
    ``0 .. past + i`` (``mask``: ``(stop - start, past + stop)``, ``True`` where seen)."""
    import torch

    out = []
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        keys = torch.arange(past + stop, device=device)
        own = torch.arange(past + start, past + stop, device=device)
        out.append((start, stop, keys[None] <= own[:, None]))
    return out


def attention(
    q: Any, keys: Any, values: Any, mask: Any | None, scale: float, *, gqa: bool, chunk: int
) -> Any:
    """Attention of ``q`` (``(batch, heads, rows, head_dim)``) over ``keys`` and
    ``values`` (``(batch, kv_heads, past + rows, head_dim)``), returned as ``(batch,
    rows, heads, head_dim)``, contiguous (the output projection's input, no copy: the
    CPU kernel writes that layout).

    ``mask`` (broadcastable to ``(batch, 1, rows, keys)``, ``True`` where seen) is used
    as given; without one, the attention is causal, the rows following the ``past``
    cached positions: one SDPA call per ``chunk`` query rows (``0``: one call), each
    over the keys up to its last row only (the CPU kernel computes whole key blocks)."""
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = q.shape[2]
    past = keys.shape[2] - rows
    if mask is not None or (past == 0 and (chunk == 0 or rows <= chunk)):
        out = sdpa(
            q, keys, values, attn_mask=mask, is_causal=mask is None, scale=scale, enable_gqa=gqa
        )
        return out.transpose(1, 2).contiguous()
    outs = [
        sdpa(
            q[:, :, start:stop],
            keys[:, :, : past + stop],
            values[:, :, : past + stop],
            attn_mask=seen,
            scale=scale,
            enable_gqa=gqa,
        ).transpose(1, 2)
        for start, stop, seen in causal_masks(rows, past, chunk or rows, q.device)
    ]
    return outs[0].contiguous() if len(outs) == 1 else torch.cat(outs, dim=1)


def attend(
    q: Any,
    k: Any,
    v: Any,
    past_k: Any | None,
    past_v: Any | None,
    mask: Any | None,
    scale: float,
    gqa: bool,
    chunk: int,
    kernel: bool,
) -> Any:
    """Attention of ``q`` over a prefix's keys and values (``past_k``, ``past_v``:
    ``(1, kv_heads, prefix, head_dim)``, or ``None``) followed by the rows' own ``k``,
    ``v``, as ``(batch, rows, heads, head_dim)``: with ``kernel``, our CPU kernel where it
    applies (:func:`~._cpu_attention.cpu_attention`, which reads the prefix in place),
    else :func:`attention` over the prefix's keys and values joined to each row's."""
    import torch

    if kernel:
        fast = cpu_attention(q.dtype)
        past = None if past_k is None else (past_k, past_v)
        out = None if fast is None else fast(q, k, v, past, mask, scale)
        if out is not None:
            return out
    keys, values = k, v
    if past_k is not None and past_v is not None:
        batch = k.shape[0]
        keys = torch.cat([past_k.expand(batch, -1, -1, -1), k], dim=2)
        values = torch.cat([past_v.expand(batch, -1, -1, -1), v], dim=2)
    return attention(q, keys, values, mask, scale, gqa=gqa, chunk=chunk)


def attend_ragged(
    q: Any,
    k: Any,
    v: Any,
    past: tuple[Any, Any] | None,
    mask: Any | None,
    scale: float,
    start: Any,
    length: Any,
) -> Any | None:
    """:func:`attend` on ragged rows, packed one after another (``start``, ``length``:
    each row's first token and token count), on our CPU kernel
    (:func:`~._cpu_attention.load_kernel`'s ``ragged``), or ``None`` where it does not
    run them (the caller pads the rows and calls :func:`attend`)."""
    fast = cpu_attention(q.dtype)
    if fast is None:
        return None
    return fast(q, k, v, past, mask, scale, ragged=(start, length))


@functools.cache
def register_opaque_ops() -> None:
    """Register :func:`packed_linear`, :func:`swiglu` and :func:`attend` as custom
    operators opaque to the compiler (once a process): ``torch.ops.qwen3_rerank.linear(x,
    weight, bias)``, ``.swiglu(x, gate, gate_bias, up, up_bias)`` and ``.attention(q, k,
    v, past_k, past_v, mask, scale, gqa, chunk, kernel)``."""
    import torch

    def shape_of_linear(x: Any, weight: Any, bias: Any | None) -> Any:
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    def shape_of_swiglu(x: Any, gate: Any, gate_bias: Any, up: Any, up_bias: Any) -> Any:
        return x.new_empty((*x.shape[:-1], up.shape[0]))

    def shape_of_attention(q: Any, *args: Any) -> Any:
        return q.new_empty((q.shape[0], q.shape[2], q.shape[1], q.shape[3]))

    define = torch.library.custom_op
    linear = define(
        "qwen3_rerank::linear",
        packed_linear,
        mutates_args=(),
        schema="(Tensor x, Tensor weight, Tensor? bias) -> Tensor",
    )
    linear.register_fake(shape_of_linear)
    fused = define(
        "qwen3_rerank::swiglu",
        swiglu,
        mutates_args=(),
        schema="(Tensor x, Tensor gate, Tensor? gate_bias, Tensor up, Tensor? up_bias) -> Tensor",
    )
    fused.register_fake(shape_of_swiglu)
    attention_custom = define(
        "qwen3_rerank::attention",
        attend,
        mutates_args=(),
        schema="(Tensor q, Tensor k, Tensor v, Tensor? past_k, Tensor? past_v, Tensor? mask, "
        "float scale, bool gqa, int chunk, bool kernel) -> Tensor",
    )
    attention_custom.register_fake(shape_of_attention)


def missing_cpp_compiler() -> str | None:
    """Why TorchInductor cannot compile for the CPU here (no C++ compiler found), or
    ``None`` when it can."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # torch raises several kinds here (InvalidCxxCompiler, OSError)
        return f"TorchInductor finds no C++ compiler for the CPU ({exc}); install g++ or clang"
    return None


def compiled(layer: Callable[..., Any]) -> Callable[..., Any]:
    """``layer`` under ``torch.compile(dynamic=True)`` (one graph for every batch shape),
    with :func:`register_opaque_ops` first: the graph calls those operators."""
    import torch

    register_opaque_ops()
    with warnings.catch_warnings():
        # Importing Inductor warns about torch's own use of torch.jit (torch 2.13).
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.script_method` is deprecated", DeprecationWarning
        )
        import torch._inductor.compile_fx
    return torch.compile(layer, dynamic=True)
