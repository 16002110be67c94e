"""The pytest plugin (``qwen3_rerank_core.pytest_plugin``): opt-in, light to load, its helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_rerank_core import pytest_plugin as kit

_LIGHT_IMPORT = """
import sys
import qwen3_rerank_core.pytest_plugin
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "vllm", "hypothesis"})
print(heavy)
"""


def test_loading_the_plugin_imports_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LIGHT_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tiny_model_dir_is_cached_where_the_ini_option_says(
    tiny_model_dir: Path, pytestconfig: pytest.Config
) -> None:
    configured = str(pytestconfig.getini(kit.CACHE_INI))
    assert configured, "pyproject.toml sets qwen3_rerank_fixture_cache for this repository"
    assert tiny_model_dir.parent == pytestconfig.rootpath / configured
    assert (tiny_model_dir / "model.safetensors").is_file()


def test_expected_order_ties_cuts() -> None:
    scores = [0.5, 0.9, 0.5, 0.1, 0.9]
    assert kit.expected_order(scores) == [1, 4, 0, 2, 3]  # lower index first on ties
    assert kit.expected_order(scores, min_score=0.5) == [1, 4, 0, 2]
    assert kit.expected_order(scores, top_n=3, min_score=0.5) == [1, 4, 0]
    assert kit.expected_order([]) == []


def test_other_projects_opt_in(pytester: pytest.Pytester, tiny_model_dir: Path) -> None:
    """A project that lists the plugin gets its fixtures; the cache option takes a path."""
    pytester.makeini(
        f"[pytest]\nqwen3_rerank_fixture_cache = {tiny_model_dir.parent}\n"
        "addopts = -p no:cacheprovider\n"
    )
    pytester.makeconftest('pytest_plugins = ["qwen3_rerank_core.pytest_plugin"]\n')
    pytester.makepyfile(
        f"""
        import pytest
        import torch
        from pathlib import Path

        pytestmark = pytest.mark.usefixtures("one_torch_thread")

        def test_fixtures(tiny_model_dir, tiny_tokenizer):
            assert tiny_model_dir == Path({str(tiny_model_dir)!r})
            assert tiny_tokenizer.convert_tokens_to_ids("yes") == 9693
            assert torch.get_num_threads() == 1
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
