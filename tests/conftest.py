"""Test helper modules in this folder are importable by name.

``recipe.py`` (the official model-card recipe), ``fake_vllm.py`` (a fake vLLM
server for ``httpx.MockTransport``), ``faultkit.py`` (socket-level faults) and
``vllm_server.py`` (a real vLLM server): ``from recipe import OfficialRecipe``.
The shared fixtures (``tiny_model_dir``, ``tiny_tokenizer``, ...) come from
``qwen3_rerank_core.pytest_plugin``, loaded by the repository's root ``conftest.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

# pytest runs with --import-mode=importlib, which does not put this folder on sys.path.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True, scope="module")
def _torch_threads_restored() -> Iterator[None]:
    """Each module leaves torch's CPU thread count as it found it. A count left at 1 on
    the main thread (the benchmark scripts run in-process set theirs) makes a later
    module's call there and its call on a worker thread (which keeps torch's default)
    split float32 products differently: scores 1e-7 apart."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
