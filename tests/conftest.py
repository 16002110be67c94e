"""Shared fixtures: a real Qwen3 tokenizer and a tiny random Qwen3 checkpoint, built offline.

The checkpoint is built once into ``<repo>/.cache/fixtures`` (git-ignored) and
reused by later runs; a clean clone builds it on first use (~5-10 s).
Test helper modules in this folder (e.g. ``recipe.py``, the official model-card
recipe) are importable by name: ``from recipe import OfficialRecipe``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURE_CACHE = REPO_ROOT / ".cache" / "fixtures"

# pytest runs with --import-mode=importlib, which does not put this folder on sys.path.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Folder of the tiny random Qwen3 checkpoint (config, fp32 safetensors, tokenizer)."""
    from qwen3_rerank_core.testing import tiny_checkpoint

    return tiny_checkpoint(FIXTURE_CACHE)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    """The fixture's tokenizer, loaded with ``AutoTokenizer`` (left padding)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))
