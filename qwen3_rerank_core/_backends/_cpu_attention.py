"""Causal attention on the CPU: our own kernels, in bfloat16 (AVX-512 BF16) and in float32
(AVX2).

bfloat16: torch's CPU flash-attention kernel reaches 50-130 GFLOP/s in bf16 on a CPU with
AVX-512 BF16 and no AMX (an AMD EPYC Zen 4 VM, 2 threads) against ~420 for a bf16 matrix
product, and attention is a fifth to two fifths of a reranker's call there
(``docs/benchmarks.md``). The C kernel ``_attention_avx512.c`` computes the same attention
with the CPU's bf16 dot-product instruction (VDPBF16PS, float32 accumulation), float32
scores and softmax, the softmax weights rounded to bf16 for the product with the values as
torch's kernel does: 2.3-3.7x faster on the shapes measured, reading the query prefix's
keys and values in place instead of copying them beside each row's.

float32: on a CPU whose best vector extension is AVX2 (most x86 CPUs users run: there the
precision policy runs float32), ``_attention_avx2.c`` computes it all in float32 with
AVX2 fused multiply-adds, in register tiles as a matrix product's, reading the prefix in
place and ragged rows unpadded (SDPA needs each row's copy of the prefix and rows of one
width). Measured by ``benchmarks/attention_kernel.py --dtype float32``.

Each is built (the bf16 one with the element-wise steps of :mod:`._cpu_elementwise` and
the products of :mod:`._cpu_linear`: one library, :func:`kernel_library`) with the system's C compiler at first use (about half a
second), kept in ``$XDG_CACHE_HOME/qwen3-rerank/kernels`` (``~/.cache/...``) under the hash
of its sources and flags, and loaded with :mod:`ctypes`. :func:`cpu_attention` returns
``None``, and the lean forward keeps SDPA, wherever its kernel does not apply: another
architecture than x86-64 Linux, in bf16 a CPU without AVX-512 BF16 or one with AMX (where
torch's kernel uses it; ours was not measured there), in float32 a CPU whose torch
capability is not AVX2 (AVX-512 ones: not measured), no C compiler or a failed build (a
warning), or ``QWEN3_RERANK_CPU_ATTENTION=sdpa`` in the environment.

Example::

    >>> import torch
    >>> attend = cpu_attention(torch.bfloat16)
    >>> if attend is not None:  # this CPU runs it
    ...     q = torch.randn(1, 2, 5, 64).bfloat16()  # (batch, heads, rows, head_dim)
    ...     k = v = torch.randn(1, 1, 5, 64).bfloat16()  # (batch, kv_heads, rows, head_dim)
    ...     assert attend(q, k, v, None, None, 0.125).shape == (1, 5, 2, 64)
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._precision import cpu_capability, cpu_has

__all__ = [
    "AVX2",
    "AVX512",
    "CpuAttention",
    "Library",
    "cpu_attention",
    "kernel_library",
    "library_for",
    "library_unavailable_reason",
    "load_kernel",
    "unavailable_reason",
    "unrunnable_reason",
]

logger = logging.getLogger("qwen3_rerank_core")

_HERE = Path(__file__).parent
_ENV = "QWEN3_RERANK_CPU_ATTENTION"


@dataclass(frozen=True)
class Library:
    """One shared library of our C kernels: what it is built from and how."""

    name: str
    """Its name in the cache folder (``kernels-{name}-{key}.so``) and in messages."""
    sources: tuple[Path, ...]
    headers: tuple[Path, ...]
    """The headers its sources include (part of the build's key)."""
    flags: tuple[str, ...]
    attention: str
    """The attention kernel's symbol."""


_COMMON_FLAGS = ("-O3", "-fno-strict-aliasing", "-fPIC", "-shared", "-fopenmp")
#: The bf16 kernels: attention, the element-wise steps (:mod:`._cpu_elementwise`) and the
#: products (:mod:`._cpu_linear`).
AVX512 = Library(
    name="avx512",
    sources=(
        _HERE / "_attention_avx512.c",
        _HERE / "_elementwise_avx512.c",
        _HERE / "_linear_avx512.c",
    ),
    headers=(_HERE / "_avx512_common.h",),
    flags=("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", *_COMMON_FLAGS),
    attention="qwen3_rerank_attention_bf16",
)
#: The float32 attention kernel.
AVX2 = Library(
    name="avx2",
    sources=(_HERE / "_attention_avx2.c",),
    headers=(),
    flags=("-mavx2", "-mfma", *_COMMON_FLAGS),
    attention="qwen3_rerank_attention_f32",
)

#: ``attend(q, k, v, past, seen, scale, ragged=None)``: see :func:`load_kernel`.
CpuAttention = Callable[..., Any]


def library_for(torch: Any, dtype: Any) -> Library | None:
    """The library whose attention kernel computes in ``dtype`` (``None``: bf16), if any."""
    if dtype is None or dtype == torch.bfloat16:
        return AVX512
    return AVX2 if dtype == torch.float32 else None


def unavailable_reason(torch: Any, dtype: Any = None) -> str | None:
    """Why the lean forward keeps torch's SDPA for attention in ``dtype`` (``None``:
    bfloat16) in this process, or ``None`` when it runs our kernel (if it builds)."""
    library = library_for(torch, dtype)
    if library is None:
        return f"no CPU attention kernel computes in {dtype}"
    if library is AVX2:
        reason = library_unavailable_reason(torch, AVX2)
        capability = cpu_capability(torch)
        if reason is None and capability != "AVX2":
            return f"torch's CPU capability is {capability}, not AVX2 (where ours is measured)"
        return reason
    reason = library_unavailable_reason(torch)
    if reason is None and cpu_has(torch, "_is_amx_tile_supported"):
        return "this CPU has AMX, which torch's attention kernel uses"
    return reason


def library_unavailable_reason(torch: Any, library: Library = AVX512) -> str | None:
    """Why the lean forward uses none of ``library`` in this process (of the AVX-512 one:
    attention nor the element-wise steps), or ``None``."""
    if os.environ.get(_ENV, "").strip().lower() == "sdpa":
        return f"{_ENV}=sdpa"
    return unrunnable_reason(torch, library)


def unrunnable_reason(torch: Any, library: Library = AVX512) -> str | None:
    """Why ``library`` cannot be built or run here at all, or ``None``."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    if library is AVX512 and not cpu_has(torch, "_is_avx512_bf16_supported"):
        return "this CPU has no AVX-512 BF16"
    if library is AVX2 and cpu_capability(torch) == "DEFAULT":
        return "this CPU has no AVX2 and FMA"
    if shutil.which(_compiler()) is None:
        return f"no C compiler ({_compiler()!r} not found; set CC)"
    return None


def _compiler() -> str:
    return os.environ.get("CC") or "cc"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qwen3-rerank" / "kernels"


def _build(library: Library = AVX512) -> Path:
    """The shared library, built once per source, compiler and flags (atomic rename), in
    the cache folder, or in a new temporary folder where that one cannot be written."""
    source = b"".join(path.read_bytes() for path in (*library.sources, *library.headers))
    key = hashlib.sha256(source + " ".join((_compiler(), *library.flags)).encode()).hexdigest()
    name = f"kernels-{library.name}-{key[:16]}.so"
    cached = _cache_dir() / name
    if cached.exists():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        return _compile_into(cached, library)
    except OSError:  # not writable (or not a folder): build where this process can write
        folder = Path(tempfile.mkdtemp(prefix="qwen3-rerank-kernels-"))
        return _compile_into(folder / name, library)


def _compile_into(target: Path, library: Library) -> Path:
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(fd)
    try:
        subprocess.run(
            [_compiler(), *library.flags, "-o", partial, *map(str, library.sources)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def kernel_library(library: Library = AVX512) -> Any:
    """``library`` loaded (:class:`ctypes.CDLL`; built if needed), whatever the policy of
    :func:`unavailable_reason`; raises ``OSError`` or ``subprocess.SubprocessError`` when
    it cannot be built or loaded."""
    return ctypes.CDLL(str(_build(library)))


def _attention_function(lib: Any, symbol: str) -> Any:
    fn = getattr(lib, symbol)
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.restype = ctypes.c_int
    fn.argtypes = [
        *(ptr, i64, i64, i64),  # q and its batch, head, row strides
        *(ptr, i64, i64, ptr, i64, i64, i64),  # prefix keys, values (head, row strides), P
        *(ptr, i64, i64, i64, ptr, i64, i64, i64),  # keys, values and their strides
        *(ptr, i64, i64, i64, i64, i64, i64),  # out, B, H, KV, rows, T, d
        *(ctypes.c_float, ptr),  # scale, last positions
        *(ptr, ptr, ctypes.c_int, ctypes.c_int),  # ragged starts, lengths, ragged q, threads
    ]
    return fn


def load_kernel(dtype: Any = None) -> CpuAttention:
    """The kernel computing in ``dtype`` (bfloat16, the default, or float32) as ``attend(q,
    k, v, past, seen, scale, ragged=None)`` (built if needed), whatever the policy of
    :func:`unavailable_reason`; raises ``OSError`` or ``subprocess.SubprocessError`` when
    it cannot be built or loaded, ``ValueError`` for another dtype.

    ``q``: ``(batch, heads, rows, head_dim)``; ``k``, ``v``: the rows' own keys and values,
    ``(batch, kv_heads, rows_kv, head_dim)``; ``past``: the prefix's ``(key, value)``,
    each ``(1, kv_heads, prefix, head_dim)``, or ``None``; all in ``dtype`` on the CPU, the
    head dimension contiguous (and, in bf16, even), else ``attend`` returns ``None``: use
    SDPA. ``seen``: ``None`` for causal attention of rows that follow the prefix (``rows ==
    rows_kv``), or, for one query a row (``rows == 1``), a ``(batch, 1, 1, prefix +
    rows_kv)`` mask that is ``True`` on the first keys of each row (the keys up to its last
    position). Returns ``(batch, rows, heads, head_dim)`` in ``dtype``, contiguous.

    ``ragged``: ``(start, length)``, int64 ``(batch,)`` each: the rows' own tokens are packed
    one row after another (row ``b``: ``start[b] .. start[b] + length[b] - 1``), ``k`` and
    ``v`` ``(1, kv_heads, tokens, head_dim)``; with ``seen=None`` ``q`` is packed too,
    ``(1, heads, tokens, head_dim)``, and so is the result, ``(1, tokens, heads,
    head_dim)``; with ``seen`` (one query a row) ``q`` stays ``(batch, heads, 1,
    head_dim)``.
    """
    import torch

    library = library_for(torch, dtype)
    if library is None:
        raise ValueError(f"no CPU attention kernel computes in {dtype}")
    kernel_dtype = torch.float32 if library is AVX2 else torch.bfloat16
    fn = _attention_function(kernel_library(library), library.attention)
    return functools.partial(_attend, fn, torch, kernel_dtype)


@functools.cache
def cpu_attention(dtype: Any) -> CpuAttention | None:
    """:func:`load_kernel` of ``dtype`` where the lean forward uses it, else ``None`` (logged
    once a dtype, with the reason; a failed build as a warning)."""
    import torch

    library = library_for(torch, dtype)
    reason = unavailable_reason(torch, dtype)
    if library is None or reason is not None:
        logger.debug("attention in %s: torch's SDPA (%s)", dtype, reason)
        return None
    try:
        kernel = load_kernel(dtype)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        logger.warning(
            "attention in %s: torch's SDPA; our %s kernel could not be built: %s",
            dtype,
            library.name,
            detail.strip()[-500:],
        )
        return None
    logger.debug(
        "attention in %s: our %s kernel (%s)", dtype, library.name, library.sources[0].name
    )
    return kernel


def _prefix_args(past: tuple[Any, Any] | None) -> tuple[Any, ...]:
    """The kernel's prefix arguments: keys, their head and row strides, the same of the
    values, and the prefix's length (null pointers and zeros without one)."""
    if past is None:
        return (None, 0, 0, None, 0, 0, 0)
    pk, pv = past
    return (
        *(pk.data_ptr(), pk.stride(1), pk.stride(2)),
        *(pv.data_ptr(), pv.stride(1), pv.stride(2), pk.shape[2]),
    )


@dataclass(frozen=True)
class _Layout:
    """How a call's rows lie, for the kernel: ``batch`` rows of ``rows`` queries over
    their ``own`` keys (the longest row's, when ragged) after the prefix; ``out`` the
    result; ``last`` each row's one query position (or ``None``); ``start`` and
    ``length`` the ragged rows (or ``None``), ``ragged_q`` whether ``q`` and ``out`` are
    packed too."""

    batch: int
    rows: int
    own: int
    out: Any
    last: Any | None = None
    start: Any | None = None
    length: Any | None = None
    ragged_q: bool = False


def _padded_layout(torch: Any, q: Any, k: Any, seen: Any | None, n_past: int) -> _Layout | None:
    batch, heads, rows, dim = q.shape
    own = k.shape[2]
    last = None
    if seen is None:
        if rows != own:
            return None
    elif rows != 1 or seen.numel() != batch * (n_past + own):
        return None
    else:
        last = seen.reshape(batch, -1).sum(dim=1, dtype=torch.int64) - (n_past + 1)
    out = torch.empty(batch, rows, heads, dim, dtype=q.dtype)
    return _Layout(batch, rows, own, out, last)


def _ragged_layout(
    torch: Any, q: Any, k: Any, seen: Any | None, ragged: tuple[Any, Any]
) -> _Layout | None:
    start, length = (t.to(torch.int64).contiguous() for t in ragged)
    batch, tokens = int(length.shape[0]), k.shape[2]
    heads, dim = q.shape[1], q.shape[3]
    if k.shape[0] != 1 or batch == 0:
        return None
    if int((start + length).max()) > tokens or int(start.min()) < 0:
        return None
    longest = int(length.max())
    if seen is None:
        if q.shape != (1, heads, tokens, dim):
            return None
        out = torch.empty(1, tokens, heads, dim, dtype=q.dtype)
        return _Layout(batch, longest, longest, out, None, start, length, ragged_q=True)
    if q.shape != (batch, heads, 1, dim):
        return None
    out = torch.empty(batch, 1, heads, dim, dtype=q.dtype)
    return _Layout(batch, 1, longest, out, length - 1, start, length)


def _attend(
    fn: Any,
    torch: Any,
    dtype: Any,
    q: Any,
    k: Any,
    v: Any,
    past: tuple[Any, Any] | None,
    seen: Any | None,
    scale: float,
    ragged: tuple[Any, Any] | None = None,
) -> Any | None:
    tensors = [q, k, v, *(past or ())]
    if any(t.dtype != dtype or t.device.type != "cpu" or t.stride(-1) != 1 for t in tensors):
        return None
    heads, dim, kv_heads = q.shape[1], q.shape[3], k.shape[1]
    pairs = dtype == torch.bfloat16  # the bf16 kernel takes head dimensions in pairs
    if dim == 0 or (pairs and dim % 2) or heads % kv_heads or v.shape != k.shape:
        return None
    n_past = 0 if past is None else past[0].shape[2]
    for t in past or ():
        if t.shape != (1, kv_heads, n_past, dim):
            return None
    if ragged is None:
        layout = _padded_layout(torch, q, k, seen, n_past)
    else:
        layout = _ragged_layout(torch, q, k, seen, ragged)
    if layout is None:
        return None
    # Ragged rows' own keys and values lie one row after another: no batch stride.
    k_batch, v_batch = (0, 0) if ragged is not None else (k.stride(0), v.stride(0))
    out = layout.out
    rc = fn(
        *(q.data_ptr(), q.stride(0), q.stride(1), q.stride(2)),
        *_prefix_args(past),
        *(k.data_ptr(), k_batch, k.stride(1), k.stride(2)),
        *(v.data_ptr(), v_batch, v.stride(1), v.stride(2)),
        *(out.data_ptr(), layout.batch, heads, kv_heads, layout.rows, layout.own, dim),
        *(scale, None if layout.last is None else layout.last.data_ptr()),
        *(None if layout.start is None else layout.start.data_ptr(),),
        *(None if layout.length is None else layout.length.data_ptr(),),
        *(int(layout.ragged_q), torch.get_num_threads()),
    )
    if rc != 0:
        raise RuntimeError(f"our {dtype} CPU attention kernel failed (code {rc})")
    return out
