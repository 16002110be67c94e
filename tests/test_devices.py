"""``device=None`` picks CUDA, then Apple MPS, then CPU, each with a safe dtype.

Availability is faked (no GPU or Mac here): MPS was not run on real hardware.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core._backends._transformers import default_device, default_dtype


def fake_torch(*, cuda: bool, mps: bool | None, bf16: bool = True) -> Any:
    """A stand-in for the ``torch`` module with the given availability."""
    backends = SimpleNamespace() if mps is None else SimpleNamespace(
        mps=SimpleNamespace(is_available=lambda: mps)
    )  # fmt: skip
    return SimpleNamespace(
        cuda=SimpleNamespace(is_available=lambda: cuda, is_bf16_supported=lambda: bf16),
        backends=backends,
        bfloat16=torch.bfloat16,
        float32=torch.float32,
    )


@pytest.mark.parametrize(
    ("cuda", "mps", "device"),
    [
        (True, True, "cuda"),  # CUDA first
        (True, False, "cuda"),
        (False, True, "mps"),  # then MPS
        (False, False, "cpu"),
        (False, None, "cpu"),  # a torch build without torch.backends.mps
    ],
)
def test_default_device_order(cuda: bool, mps: bool | None, device: str) -> None:
    assert default_device(fake_torch(cuda=cuda, mps=mps)) == device


@pytest.mark.parametrize(
    ("device", "bf16", "dtype"),
    [
        ("cuda", True, torch.bfloat16),
        ("cuda:1", True, torch.bfloat16),
        ("cuda", False, torch.float32),  # pre-Ampere GPUs: fp32, never fp16 (overflow)
        ("mps", True, torch.float32),
        ("cpu", True, torch.float32),
    ],
)
def test_default_dtype_per_device(device: str, bf16: bool, dtype: torch.dtype) -> None:
    fake = fake_torch(cuda=True, mps=True, bf16=bf16)
    assert default_dtype(fake, torch.device(device)) == dtype


def test_backend_uses_the_choice(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no CUDA and no MPS, device=None loads on CPU in float32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with Qwen3Reranker(model=str(tiny_model_dir), max_length=64) as rr:
        rr.load()
        backend: Any = rr._backend
        assert backend.device == torch.device("cpu") and backend.dtype == torch.float32


def test_backend_asks_for_mps_when_available(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MPS reported available (faked), device=None moves the model to "mps"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    moved: list[Any] = []

    def fake_to(self: Any, *args: Any, **kwargs: Any) -> Any:
        moved.append(args[0] if args else kwargs.get("device"))
        return self

    monkeypatch.setattr(torch.nn.Module, "to", fake_to)
    rr = Qwen3Reranker(model=str(tiny_model_dir), max_length=64)
    try:
        rr.load()
        backend: Any = rr._backend
        assert backend.device == torch.device("mps") and backend.dtype == torch.float32
        assert torch.device("mps") in moved
    finally:
        monkeypatch.undo()
        rr.close()
