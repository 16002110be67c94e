"""The lean forward's bf16 matrix products on our own CPU kernel, with float32 results.

torch's CPU products in bf16 (oneDNN) round their outputs to bf16: the query/key/value
projection's before the q/k norm, the output and down projections' before the residual
add. Those roundings are about half of the bf16 forward's deviation from float32 that
the products' bf16 inputs do not already cause (``benchmarks/bf16_error_sources.py``,
``docs/benchmarks.md``), and torch offers no CPU product from bf16 inputs to float32
outputs (``mm`` with ``out_dtype`` is CUDA only). The C kernel beside this module
(``_linear_avx512.c``, built into the attention kernel's library by :mod:`._cpu_attention`)
multiplies bf16 pairs into float32 sums (VDPBF16PS, as oneDNN does on these CPUs) and
keeps them: stored in float32, added straight into the float32 residual stream (the add's
own pass saved), or, for the MLP's gate and up projections, through the SiLU and the gated
product to one bf16 rounding.

It runs where the element-wise steps do (:func:`~._cpu_elementwise.cpu_elementwise`: a CPU
with AVX-512 BF16), except on CPUs with AMX, where oneDNN's products use the AMX tiles.

Example::

    >>> import torch
    >>> products = cpu_linear()
    >>> if products is not None:  # this CPU runs the kernel
    ...     w = torch.randn(8, 16).bfloat16()
    ...     packed = products.pack(w, None)
    ...     y = products(torch.randn(3, 16).bfloat16(), packed)
    ...     assert y.dtype == torch.float32 and y.shape == (3, 8)
"""

from __future__ import annotations

import ctypes
import functools
import logging
import subprocess
from dataclasses import dataclass
from typing import Any

from .._precision import cpu_has
from ._cpu_attention import kernel_library, library_unavailable_reason

__all__ = [
    "SWIGLU",
    "CpuLinear",
    "PackedWeight",
    "cpu_linear",
    "load_linear",
    "unavailable_reason",
]

logger = logging.getLogger("qwen3_rerank_core")

_STORE, _ACCUMULATE = 0, 1
SWIGLU = 2
"""The packing of a gate and an up projection stacked (gate's rows, then up's): the product
is ``silu(x @ gate.T) * (x @ up.T)``, in bf16."""


def _declare(lib: Any) -> None:
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.qwen3_rerank_packed_words.restype = i64
    lib.qwen3_rerank_packed_words.argtypes = [i64, i64, i32]
    lib.qwen3_rerank_pack_bf16.restype = i32
    lib.qwen3_rerank_pack_bf16.argtypes = [ptr, i64, i64, i64, i32, ptr, i32]
    lib.qwen3_rerank_linear_bf16.restype = i32
    lib.qwen3_rerank_linear_bf16.argtypes = [
        *(ptr, i64, ptr, ptr),  # a and its row stride, packed weight, bias (or NULL)
        *(i64, i64, i64),  # M, N, K
        *(ptr, i64, i32, i32),  # out and its row stride, mode, threads
    ]


@dataclass(frozen=True)
class PackedWeight:
    """A weight packed for :class:`CpuLinear` (see ``_linear_avx512.c``)."""

    words: Any
    """The packed weight, int32."""
    bias: Any | None
    """The bias in float32 (:data:`SWIGLU`: gate's, then up's), or ``None``."""
    out_features: int
    """Output columns (:data:`SWIGLU`: of the gated product, half the stacked rows)."""
    in_features: int
    mode: int
    """:data:`SWIGLU`, or 0: a plain product."""


@dataclass(frozen=True)
class CpuLinear:
    """Our bf16 products with float32 results, on torch tensors (see the module)."""

    lib: Any
    """The loaded library (:func:`~._cpu_attention.kernel_library`)."""

    def pack(self, weight: Any, bias: Any | None, *, mode: int = _STORE) -> PackedWeight:
        """``weight`` (``(out, in)`` bf16; :data:`SWIGLU`: ``(2 * out, in)``, gate's rows
        then up's) and ``bias`` packed once; raises ``ValueError`` for another dtype or
        an empty weight."""
        import torch

        if weight.dim() != 2 or weight.dtype != torch.bfloat16 or weight.numel() == 0:
            raise ValueError(
                f"packs a non-empty 2-D bfloat16 weight, not {weight.dtype} {tuple(weight.shape)}"
            )
        weight = weight.contiguous()
        rows, k = (int(n) for n in weight.shape)
        if mode == SWIGLU and rows % 2:
            raise ValueError(f"a gate and an up projection stacked: an even row count, not {rows}")
        n = rows // 2 if mode == SWIGLU else rows
        words = torch.empty(self.lib.qwen3_rerank_packed_words(n, k, mode), dtype=torch.int32)
        rc = self.lib.qwen3_rerank_pack_bf16(
            weight.data_ptr(), k, n, k, mode, words.data_ptr(), torch.get_num_threads()
        )
        if rc:
            raise RuntimeError(f"our CPU product kernel could not pack the weight (code {rc})")
        if bias is not None:
            bias = bias.detach().float().contiguous()
            if bias.shape != (rows,):
                raise ValueError(f"a bias of {rows} values, not {tuple(bias.shape)}")
        return PackedWeight(words, bias, n, k, mode)

    def __call__(self, x: Any, weight: PackedWeight, *, into: Any | None = None) -> Any:
        """``x @ weight.T + bias`` (``x``: ``(..., in)`` bf16) in float32, or for a
        :data:`SWIGLU` weight the gated product in bf16. ``into`` (float32, ``(...,
        out)``, contiguous): the product is added to it in place, and it is returned.
        Returns ``None`` for inputs the kernel does not take (the caller runs torch's)."""
        import torch

        k, n = weight.in_features, weight.out_features
        if x.dtype != torch.bfloat16 or x.device.type != "cpu" or x.shape[-1] != k:
            return None
        a = x.reshape(-1, k)
        if a.stride(-1) != 1:
            a = a.contiguous()
        rows = int(a.shape[0])
        shape = (*x.shape[:-1], n)
        mode = weight.mode
        if into is not None:
            if (
                mode == SWIGLU
                or into.dtype != torch.float32
                or tuple(into.shape) != shape
                or not into.is_contiguous()
            ):
                return None
            out, mode = into, _ACCUMULATE
        else:
            dtype = torch.bfloat16 if mode == SWIGLU else torch.float32
            out = torch.empty(shape, dtype=dtype)
        rc = self.lib.qwen3_rerank_linear_bf16(
            *(a.data_ptr(), a.stride(0), weight.words.data_ptr()),
            *(None if weight.bias is None else weight.bias.data_ptr(),),
            *(rows, n, k, out.data_ptr(), n, mode, torch.get_num_threads()),
        )
        if rc:
            raise RuntimeError(f"our CPU product kernel failed (code {rc})")
        return out


def load_linear() -> CpuLinear:
    """The products (the library built if needed), whatever the policy; raises ``OSError``
    or ``subprocess.SubprocessError`` when the library cannot be built or loaded."""
    lib = kernel_library()
    _declare(lib)
    return CpuLinear(lib)


def unavailable_reason(torch: Any) -> str | None:
    """Why the lean forward keeps oneDNN's products in bf16 here, or ``None``."""
    reason = library_unavailable_reason(torch)
    if reason is None and cpu_has(torch, "_is_amx_tile_supported"):
        return "this CPU has AMX, which oneDNN's products use"
    return reason


@functools.cache
def cpu_linear() -> CpuLinear | None:
    """:func:`load_linear` where the lean forward uses it in bf16, else ``None`` (the
    reason logged once; :func:`~._cpu_attention.cpu_attention` warns of a failed build)."""
    import torch

    reason = unavailable_reason(torch)
    if reason is not None:
        logger.debug("bf16 products: oneDNN's (%s)", reason)
        return None
    try:
        return load_linear()
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("bf16 products: oneDNN's (%s)", exc)
        return None
