"""The lean forward's element-wise steps in one pass each, on CPUs with AVX-512 BF16.

Between its matrix products, the bf16 lean forward normalises the float32 residual stream
into the next product's bf16 input, adds each product's bf16 output back into the stream,
and normalises and rotates the query and key heads. In torch each of these is several
passes over the activations (widen, multiply, reduce, round), about a tenth of a 0.6B
call on an AMD EPYC Zen 4 VM (``docs/benchmarks.md``). The C functions beside this module
(``_elementwise_avx512.c``, built into the attention kernel's library by
:mod:`._cpu_attention`) do each in one pass, with the same float32 arithmetic and one
rounding to bf16. They run wherever that library does, with or without AMX (measured on an
AMD EPYC Zen 4 only: the attention kernel alone stays off on AMX CPUs).

Every method returns ``None`` for an input it does not take (another dtype or layout, an
odd head dimension or one over 1024), and the caller runs the torch steps instead. Widths
and head dimensions that are not a multiple of 16 end in a masked partial vector.

Example::

    >>> import torch
    >>> steps = cpu_elementwise()
    >>> if steps is not None:  # this CPU runs the kernels
    ...     x = torch.randn(3, 64)
    ...     h = steps.add_rms_norm(x, None, torch.ones(64), 1e-6)
    ...     assert h.dtype == torch.bfloat16 and h.shape == (3, 64)
"""

from __future__ import annotations

import ctypes
import functools
import logging
import subprocess
from dataclasses import dataclass
from typing import Any

from ._cpu_attention import kernel_library, library_unavailable_reason

__all__ = ["CpuElementwise", "cpu_elementwise", "load_elementwise"]

logger = logging.getLogger("qwen3_rerank_core")


def _declare(lib: Any) -> None:
    i64, ptr, f32, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
    lib.qwen3_rerank_add_rms_norm.restype = i32
    lib.qwen3_rerank_add_rms_norm.argtypes = [
        *(ptr, i64, ptr, i64),  # x and its row stride, delta (or NULL) and its row stride
        *(ptr, f32, ptr, i64),  # weight (or NULL), eps, out and its row stride
        *(i64, i64, i32),  # rows, width, threads
    ]
    lib.qwen3_rerank_add.restype = i32
    lib.qwen3_rerank_add.argtypes = [ptr, i64, ptr, i64, i64, i64, i32]
    lib.qwen3_rerank_norm_rotate.restype = i32
    lib.qwen3_rerank_norm_rotate.argtypes = [
        *(ptr, i32, i64, i64, i64),  # x, whether float32, its batch, position, head strides
        *(ptr, ptr, i64, i64),  # cos, signed sin and their batch, position strides
        *(ptr, ptr, f32, ptr),  # weight, swapped weight, eps, out
        *(i64, i64, i64, i64, i32),  # batch, positions, heads, head_dim, threads
    ]


def _stream_width(x: Any, delta: Any | None) -> int | None:
    """The width of the residual stream ``x`` (float32, contiguous, on the CPU) where the C
    steps take it and ``delta`` (``None``, or bf16 of ``x``'s shape, contiguous), else
    ``None``."""
    import torch

    if x.dim() == 0 or not x.is_contiguous() or x.dtype != torch.float32:
        return None
    width = int(x.shape[-1])
    if x.device.type != "cpu" or width == 0:
        return None
    if delta is not None and (
        delta.dtype != torch.bfloat16 or delta.shape != x.shape or not delta.is_contiguous()
    ):
        return None
    return width


@dataclass(frozen=True)
class CpuElementwise:
    """The C steps of ``_elementwise_avx512.c`` on torch tensors (see the module)."""

    lib: Any
    """The loaded library (:func:`~._cpu_attention.kernel_library`)."""

    def add_rms_norm(self, x: Any, delta: Any | None, weight: Any | None, eps: float) -> Any:
        """``x += delta`` in place (``delta``: bf16, ``x``'s shape; ``None``: no add), then
        Qwen3's RMSNorm of ``x`` times ``weight`` (``None``: none), as bf16 of ``x``'s
        shape. ``x``: the float32 residual stream, contiguous."""
        import torch

        width = _stream_width(x, delta)
        if width is None:
            return None
        if weight is not None and (
            weight.dtype != torch.float32 or weight.shape != (width,) or not weight.is_contiguous()
        ):
            return None
        out = torch.empty(x.shape, dtype=torch.bfloat16)
        rc = self.lib.qwen3_rerank_add_rms_norm(
            *(x.data_ptr(), width, None if delta is None else delta.data_ptr(), width),
            *(None if weight is None else weight.data_ptr(), eps, out.data_ptr(), width),
            *(x.numel() // width, width, torch.get_num_threads()),
        )
        return None if rc else out

    def add(self, x: Any, delta: Any) -> Any:
        """``x += delta`` in place (``x`` float32, ``delta`` bf16, one shape, contiguous);
        ``x``."""
        import torch

        width = _stream_width(x, delta)
        if width is None:
            return None
        rows = x.numel() // width
        rc = self.lib.qwen3_rerank_add(
            x.data_ptr(), width, delta.data_ptr(), width, rows, width, torch.get_num_threads()
        )
        return None if rc else x

    def norm_rotate(
        self, x: Any, weight: Any, swapped: Any, cos: Any, signed_sin: Any, eps: float
    ) -> Any:
        """Per-head RMSNorm (``weight``, ``(heads, head_dim)`` float32; ``swapped``: its
        halves swapped) then the rotary embedding (``cos``, ``signed_sin``: ``(1 or batch,
        positions, 1, head_dim)`` float32) of ``x`` (``(batch, positions, heads,
        head_dim)`` bf16, or float32: a product's unrounded output; the head dimension
        contiguous), as a new contiguous bf16 tensor."""
        import torch

        if x.dim() != 4 or x.dtype not in (torch.bfloat16, torch.float32) or x.device.type != "cpu":
            return None
        batch, positions, heads, dim = (int(n) for n in x.shape)
        if x.stride(-1) != 1 or dim % 2:
            return None
        for t in (weight, swapped):
            if t.dtype != torch.float32 or t.shape != (heads, dim) or not t.is_contiguous():
                return None
        if cos.shape != signed_sin.shape or cos.stride() != signed_sin.stride():
            return None
        if (
            cos.dim() != 4
            or cos.dtype != torch.float32
            or signed_sin.dtype != torch.float32
            or cos.shape[0] not in (1, batch)
            or tuple(cos.shape[1:]) != (positions, 1, dim)
            or cos.stride(-1) != 1
        ):
            return None
        batch_stride = 0 if cos.shape[0] == 1 else cos.stride(0)
        out = torch.empty(x.shape, dtype=torch.bfloat16)
        rc = self.lib.qwen3_rerank_norm_rotate(
            *(x.data_ptr(), int(x.dtype == torch.float32), x.stride(0), x.stride(1), x.stride(2)),
            *(cos.data_ptr(), signed_sin.data_ptr(), batch_stride, cos.stride(1)),
            *(weight.data_ptr(), swapped.data_ptr(), eps, out.data_ptr()),
            *(batch, positions, heads, dim, torch.get_num_threads()),
        )
        return None if rc else out


def load_elementwise() -> CpuElementwise:
    """The C steps (the library built if needed), whatever the policy; raises ``OSError``
    or ``subprocess.SubprocessError`` when the library cannot be built or loaded."""
    lib = kernel_library()
    _declare(lib)
    return CpuElementwise(lib)


@functools.cache
def cpu_elementwise() -> CpuElementwise | None:
    """:func:`load_elementwise` where the lean forward uses it, else ``None``: wherever the
    library runs (:func:`~._cpu_attention.library_unavailable_reason`), AMX or not (unlike
    the attention kernel, these steps replace torch's element-wise passes, which AMX does
    not run)."""
    import torch

    reason = library_unavailable_reason(torch)
    if reason is not None:
        logger.debug("element-wise steps: torch's (%s)", reason)
        return None
    try:
        return load_elementwise()
    except (OSError, subprocess.SubprocessError) as exc:  # cpu_attention() warns once
        logger.debug("element-wise steps: torch's (%s)", exc)
        return None
