"""The public names of qwen3_rerank_core are a contract: changing them is a decision."""

from __future__ import annotations

import subprocess
import sys

import qwen3_rerank_core


def test_all_is_fixed() -> None:
    assert sorted(qwen3_rerank_core.__all__) == sorted(
        [
            "DEFAULT_INSTRUCTION",
            "DEFAULT_MODEL",
            "FusedScore",
            "Fusion",
            "InvalidResponseError",
            "MissingDependencyError",
            "ModelLoadError",
            "Qwen3RerankError",
            "Qwen3Reranker",
            "RemoteConnectionError",
            "RemoteError",
            "RemoteStatusError",
            "RemoteTimeoutError",
            "RerankConfig",
            "RerankResult",
            "__version__",
            "boost",
            "fuse",
            "recency_decay",
        ]
    )
    for name in qwen3_rerank_core.__all__:
        assert hasattr(qwen3_rerank_core, name), name


def test_adapters_module_all_is_fixed() -> None:
    """The helpers the framework adapters import (they are separate packages)."""
    from qwen3_rerank_core import adapters

    assert sorted(adapters.__all__) == [
        "ENGINE_FIELDS",
        "build_reranker",
        "check_instruction",
        "check_items",
        "check_optional_instruction",
        "check_query",
        "settings_with_reranker",
    ]
    for name in adapters.__all__:
        assert hasattr(adapters, name), name


def test_default_instruction_is_the_models() -> None:
    assert qwen3_rerank_core.DEFAULT_INSTRUCTION == (
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    assert qwen3_rerank_core.DEFAULT_MODEL == "Qwen/Qwen3-Reranker-0.6B"


def test_error_hierarchy() -> None:
    from qwen3_rerank_core import (
        InvalidResponseError,
        MissingDependencyError,
        ModelLoadError,
        Qwen3RerankError,
        RemoteConnectionError,
        RemoteError,
        RemoteStatusError,
        RemoteTimeoutError,
    )

    assert issubclass(MissingDependencyError, ImportError)
    assert issubclass(ModelLoadError, OSError)
    for cls in (RemoteConnectionError, RemoteTimeoutError, RemoteStatusError, InvalidResponseError):
        assert issubclass(cls, RemoteError)
    for cls in (MissingDependencyError, ModelLoadError, RemoteError):
        assert issubclass(cls, Qwen3RerankError)
    err = RemoteStatusError(503, "busy", url="http://h:1/rerank")
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
