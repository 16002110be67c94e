"""The transformers backend resolves torch's VML dispatch on one thread before it scores.

The race it guards against (pytorch/pytorch#188792: a first VML call shared by threads can
run one chunk at low accuracy) cannot be triggered on demand; ``benchmarks/vml_race.py``
counts it across fresh processes. These tests hold the two things the guard needs: every
VML function is called once a dtype on one element (one thread), and the backend does it
while it loads, before its first forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from qwen3_rerank_core import Qwen3Reranker  # noqa: E402
from qwen3_rerank_core._backends import _transformers, _vml  # noqa: E402


def test_each_vml_function_runs_on_one_element_in_both_float_dtypes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, Any, int]] = []
    for name in _vml.VML_FUNCTIONS:
        real = getattr(torch, name)

        def record(x: Any, _name: str = name, _real: Any = real) -> Any:
            calls.append((_name, x.dtype, x.numel()))
            return _real(x)

        monkeypatch.setattr(torch, name, record)
    _vml.resolve_vml_dispatch.__wrapped__()
    want = {(n, d, 1) for n in _vml.VML_FUNCTIONS for d in (torch.float32, torch.float64)}
    assert set(calls) == want
    assert len(calls) == len(want)


def test_the_backend_resolves_it_before_its_first_forward(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setattr(_transformers, "resolve_vml_dispatch", lambda: events.append("vml"))
    real_forward = _transformers.LeanForward.last_hidden

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        events.append("forward")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(_transformers.LeanForward, "last_hidden", forward)
    with Qwen3Reranker(model=str(tiny_model_dir), dtype="float32") as reranker:
        reranker.score("a query", ["a document", "another one"])
    assert events[0] == "vml"
    assert events.count("vml") == 1
    assert "forward" in events
