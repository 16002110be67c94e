"""Session fixtures: the tiny offline Qwen3 checkpoint and one reranker loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core.testing import tiny_checkpoint

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A cached random-weight Qwen3 checkpoint with the real tokenizer (no network)."""
    return tiny_checkpoint(cache_dir=REPO / ".cache" / "fixtures")


@pytest.fixture(scope="session")
def core(tiny_model: Path) -> Iterator[Qwen3Reranker]:
    """One loaded reranker shared by every test of this package."""
    reranker = Qwen3Reranker(
        model=str(tiny_model), backend="transformers", device="cpu", dtype="float32"
    )
    yield reranker
    reranker.close()
