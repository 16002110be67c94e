"""The precision policy: which dtype a local model runs in, and why.

One rule for every local backend (transformers, in-process vLLM), applied when
``dtype`` is ``None``:

=========  ====================================================================
device     dtype
=========  ====================================================================
CUDA       bfloat16 where the GPU supports it, else float32 (float16 can overflow
           in Qwen3's activations)
CPU        the checkpoint's own dtype when the CPU computes it natively: bfloat16
           needs AVX-512 BF16 or AMX (read from the CPU, never guessed from the
           vendor); otherwise float32. Emulated bf16 is slower than float32, so it
           is never chosen. A float32-saved checkpoint stays float32.
MPS        float32 (bf16 support there depends on the macOS version)
=========  ====================================================================

``dtype="float32"`` is the exact mode (held to the model-card recipe within
1e-5); ``"bfloat16"``/``"float16"`` force a dtype; ``"auto"`` is the checkpoint's
own, as transformers' ``dtype="auto"``. In reduced precision the score is still
computed from a float32 hidden state: the norms, the final norm, the softmax and
the yes/no head run in float32 (``docs/scoring.md``).

Example::

    >>> from qwen3_rerank_core._precision import choose_dtype, Hardware
    >>> cpu = Hardware(device_type="cpu", cpu_bf16=True)
    >>> choose_dtype(None, cpu, saved="bfloat16").name
    'bfloat16'
    >>> choose_dtype(None, Hardware(device_type="cpu", cpu_bf16=False), saved="bfloat16").name
    'float32'
    >>> choose_dtype(None, cpu, saved="float32").name
    'float32'
    >>> choose_dtype("float32", cpu, saved="bfloat16").reason
    "dtype='float32' was asked for"
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DtypeChoice",
    "Hardware",
    "checkpoint_dtype",
    "choose_dtype",
    "cpu_capability",
    "cpu_computes_bf16",
    "cpu_has",
    "planned_dtype",
]

logger = logging.getLogger("qwen3_rerank_core")

_NAMES = {"float32": "float32", "float": "float32", "fp32": "float32"}
_NAMES.update({"bfloat16": "bfloat16", "bf16": "bfloat16"})
_NAMES.update({"float16": "float16", "half": "float16", "fp16": "float16"})


@dataclass(frozen=True, slots=True)
class Hardware:
    """What the policy reads of the machine: the device type and its bf16 support."""

    device_type: str
    """``"cuda"``, ``"cpu"``, ``"mps"``, ..."""
    cuda_bf16: bool = False
    """The GPU computes bfloat16 (``torch.cuda.is_bf16_supported()``)."""
    cpu_bf16: bool = False
    """The CPU computes bfloat16 natively (:func:`cpu_computes_bf16`)."""


@dataclass(frozen=True, slots=True)
class DtypeChoice:
    """The dtype a model runs in, and the reason, as the load log says it."""

    name: str
    """``"float32"``, ``"bfloat16"`` or ``"float16"``."""
    reason: str


def checkpoint_dtype(model_config: Mapping[str, Any] | None) -> str | None:
    """The dtype a checkpoint's ``config.json`` says its weights are saved in (``dtype`` in
    transformers 5, ``torch_dtype`` before), normalised; ``None`` when it says none."""
    if not model_config:
        return None
    value = model_config.get("dtype") or model_config.get("torch_dtype")
    if not isinstance(value, str):
        return None
    return _NAMES.get(value.removeprefix("torch."))


def cpu_has(torch: Any, probe: str) -> bool:
    """What a ``torch.cpu`` capability probe (``_is_avx512_bf16_supported``,
    ``_is_amx_tile_supported``) reads from the CPU; ``False`` for a torch without it."""
    check = getattr(getattr(torch, "cpu", None), probe, None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # pragma: no cover - a torch build without the probe
        return False


def cpu_capability(torch: Any) -> str:
    """The vector extension torch's CPU kernels dispatch to here: ``"AVX2"`` on an x86
    CPU whose best is AVX2 (and FMA), ``"AVX512"`` with AVX-512, ``"DEFAULT"`` without
    either or on other architectures (some builds name others, e.g. ``"ZVECTOR"``)."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_computes_bf16(torch: Any) -> bool:
    """Whether this CPU computes bfloat16 matrix products natively: AVX-512 BF16 or AMX
    tiles, as PyTorch reads them from the CPU (``torch.cpu`` capability checks). On CPUs
    without either, oneDNN emulates bf16, which is slower than float32."""
    return any(cpu_has(torch, p) for p in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def choose_dtype(requested: str | None, hardware: Hardware, *, saved: str | None) -> DtypeChoice:
    """The dtype for ``requested`` (a ``RerankConfig.dtype``) on ``hardware``, for a
    checkpoint saved in ``saved`` (``None``: unknown, taken as float32)."""
    own = saved or "float32"
    if requested == "auto":
        return DtypeChoice(own, f"dtype='auto': the checkpoint's own ({own})")
    if requested is not None:
        return DtypeChoice(requested, f"dtype={requested!r} was asked for")
    device = hardware.device_type
    if device == "cuda":
        if hardware.cuda_bf16:
            return DtypeChoice("bfloat16", "dtype=None on CUDA: bfloat16")
        return DtypeChoice("float32", "dtype=None on a CUDA GPU without bfloat16: float32")
    if device != "cpu":
        return DtypeChoice("float32", f"dtype=None on {device}: float32")
    if own == "float32":
        return DtypeChoice("float32", "dtype=None on CPU: the checkpoint is saved in float32")
    if own == "bfloat16" and hardware.cpu_bf16:
        return DtypeChoice(
            "bfloat16",
            "dtype=None on CPU: the checkpoint is saved in bfloat16 and this CPU computes "
            "bf16 natively (AVX-512 BF16 or AMX); dtype='float32' is the exact mode",
        )
    why = (
        "this CPU has no native bf16 (neither AVX-512 BF16 nor AMX; emulated bf16 is "
        "slower than float32)"
        if own == "bfloat16"
        else f"{own} is not computed natively on CPU"
    )
    return DtypeChoice("float32", f"dtype=None on CPU: the checkpoint is saved in {own}, but {why}")


def hardware_of(torch: Any, device_type: str) -> Hardware:
    """The :class:`Hardware` of ``device_type`` on this machine."""
    if device_type == "cuda":
        return Hardware("cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()))
    if device_type == "cpu":
        return Hardware("cpu", cpu_bf16=cpu_computes_bf16(torch))
    return Hardware(device_type)


def _model_config(model: str, *, local_files_only: bool) -> Mapping[str, Any] | None:
    """``config.json`` of a local folder or a hub id (``None`` when it cannot be read)."""
    from ._checkpoint import read_local_config

    folder = os.path.expanduser(model)
    if os.path.isdir(folder):
        return read_local_config(folder)
    try:
        from transformers import AutoConfig

        config: Mapping[str, Any] = AutoConfig.from_pretrained(
            model, local_files_only=local_files_only
        ).to_dict()
    except (ImportError, OSError, ValueError) as exc:
        logger.debug("could not read the config of %s: %s", model, exc)
        return None
    return config


def planned_dtype(
    requested: str | None, device: str | None, model: str, *, local_files_only: bool = False
) -> DtypeChoice:
    """The dtype a local backend will run ``model`` in, without loading its weights
    (reads ``config.json`` and the device's capabilities). ``device=None`` is the
    default device (CUDA, else MPS, else CPU)."""
    import torch

    from ._backends._transformers import default_device

    device_type = torch.device(device or default_device(torch)).type
    saved = None
    if (requested is None and device_type == "cpu") or requested == "auto":
        saved = checkpoint_dtype(_model_config(model, local_files_only=local_files_only))
    return choose_dtype(requested, hardware_of(torch, device_type), saved=saved)
