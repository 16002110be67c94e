"""Test helper modules in this folder are importable by name.

``recipe.py`` (the official model-card recipe), ``fake_vllm.py`` (a fake vLLM
server for ``httpx.MockTransport``), ``faultkit.py`` (socket-level faults) and
``vllm_server.py`` (a real vLLM server): ``from recipe import OfficialRecipe``.
The shared fixtures (``tiny_model_dir``, ``tiny_tokenizer``, ...) come from
``qwen3_rerank_core.pytest_plugin``, loaded by the repository's root ``conftest.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent

# pytest runs with --import-mode=importlib, which does not put this folder on sys.path.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
