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


def test_the_package_declares_the_vllm_plugin() -> None:
    """Installed, the package names :func:`~._vml.vllm_general_plugin` in vLLM's
    ``vllm.general_plugins`` group, which vLLM calls in every process it starts."""
    from importlib.metadata import entry_points

    found = {e.name: e for e in entry_points(group="vllm.general_plugins")}
    assert "qwen3_rerank_vml_dispatch" in found, sorted(found)
    assert found["qwen3_rerank_vml_dispatch"].load() is _vml.vllm_general_plugin


def test_the_plugin_resolves_the_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(_vml, "resolve_vml_dispatch", lambda: calls.append("resolved"))
    _vml.vllm_general_plugin()
    _vml.vllm_general_plugin()  # vLLM may load its plugins more than once a process
    assert calls == ["resolved", "resolved"]


def test_vllm_loads_the_plugin_and_it_resolves_the_dispatch() -> None:
    """vLLM's own loader (what its engine core and workers run before loading a model)
    finds the entry point in the vLLM venv and calls it."""
    import subprocess
    import textwrap

    import vllm_server

    python = vllm_server.require_vllm_venv()
    code = textwrap.dedent(
        """
        from qwen3_rerank_core._backends._vml import resolve_vml_dispatch
        from vllm.plugins import load_general_plugins, load_plugins_by_group

        assert resolve_vml_dispatch.cache_info().currsize == 0
        assert "qwen3_rerank_vml_dispatch" in load_plugins_by_group("vllm.general_plugins")
        load_general_plugins()
        assert resolve_vml_dispatch.cache_info().currsize == 1
        print("ok")
        """
    )
    env = vllm_server.vllm_env()
    env.pop("VLLM_PLUGINS", None)  # every installed plugin, as vLLM's default
    proc = subprocess.run(
        [str(python), "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
