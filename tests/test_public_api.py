"""The public names of qwen3_rerank_core are a contract: changing them is a decision."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import qwen3_rerank_core

#: The ``__all__`` of each public module, sorted. Edit it only to change the public API.
PUBLIC_NAMES: dict[str, list[str]] = json.loads(
    (Path(__file__).parent / "public_api.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("module_name", sorted(PUBLIC_NAMES))
def test_all_is_fixed(module_name: str) -> None:
    """The package, the helpers the framework adapters import (they are separate packages)
    and the pytest plugin export exactly the recorded names, and every one exists."""
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == PUBLIC_NAMES[module_name]
    for name in module.__all__:
        assert hasattr(module, name), name


def test_default_instruction_is_the_models() -> None:
    assert qwen3_rerank_core.DEFAULT_INSTRUCTION == (
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    assert qwen3_rerank_core.DEFAULT_MODEL == "Qwen/Qwen3-Reranker-0.6B"


def test_error_hierarchy() -> None:
    q = qwen3_rerank_core
    assert issubclass(q.MissingDependencyError, ImportError)
    assert issubclass(q.ModelLoadError, OSError)
    remote = (q.RemoteConnectionError, q.RemoteTimeoutError, q.RemoteStatusError)
    for cls in (*remote, q.InvalidResponseError):
        assert issubclass(cls, q.RemoteError)
    for cls in (q.MissingDependencyError, q.ModelLoadError, q.RemoteError):
        assert issubclass(cls, q.Qwen3RerankError)
    err = q.RemoteStatusError(503, "busy", url="http://h:1/rerank")
    assert (err.status_code, err.message) == (503, "busy")
    assert "503" in str(err) and "busy" in str(err)


_NO_HEAVY_IMPORTS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "vllm"}:
            raise ImportError(f"blocked {name}")
        return None
sys.meta_path.insert(0, Block())
import qwen3_rerank_core as q
rr = q.Qwen3Reranker(model="served", backend="remote", base_url="http://127.0.0.1:9")
assert rr.score("q", []) == []
try:
    q.Qwen3Reranker(model="m", backend="transformers").score("q", ["d"])
except q.MissingDependencyError as exc:
    assert 'pip install "qwen3-rerank-core[transformers]"' in str(exc), str(exc)
    assert isinstance(exc, ImportError)
else:
    raise AssertionError("no MissingDependencyError")
assert not any(m.split(".")[0] in {"torch", "transformers", "vllm"} for m in sys.modules)
print("ok")
"""


def test_import_needs_only_httpx() -> None:
    """`import qwen3_rerank_core` and remote configs work with torch/transformers/vllm absent."""
    out = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY_IMPORTS], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("qwen3_rerank_core").joinpath("py.typed").is_file()
