"""``max_length`` beyond the checkpoint's positions is refused at load, naming both numbers.

The tiny checkpoint's config allows 40960 positions (Qwen3-Reranker's); a copy whose
``config.json`` says 64 (its other files linked, not copied) stands for a model whose
positions a ``max_length`` can exceed. The transformers backend refuses it right after
reading the config, the vLLM backend before vLLM is imported (so without vLLM too);
the remote backend lowers ``max_length`` to the server's limit instead (test_remote*).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import ModelLoadError, Qwen3Reranker, RerankConfig
from qwen3_rerank_core._backends._vllm import VLLMBackend
from qwen3_rerank_core._checkpoint import check_max_length

POSITIONS = 64


@pytest.fixture(scope="module")
def short_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with ``max_position_embeddings`` = 64."""
    folder = tmp_path_factory.mktemp("short-positions")
    for item in tiny_model_dir.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((tiny_model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["max_position_embeddings"] == 40960
    config["max_position_embeddings"] = POSITIONS
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _refused(info: pytest.ExceptionInfo[ModelLoadError], max_length: int) -> None:
    message = str(info.value)
    assert f"max_length={max_length}" in message, message
    assert f"max_position_embeddings={POSITIONS}" in message, message
    assert f"max_length <= {POSITIONS}" in message, message


def test_transformers_refuses_at_load(short_model_dir: Path) -> None:
    reranker = Qwen3Reranker(model=str(short_model_dir), device="cpu", max_length=100)
    with pytest.raises(ModelLoadError) as info:
        reranker.load()
    _refused(info, 100)
    assert "could not load" not in str(info.value)  # not taken for a hub or file problem


def test_vllm_refuses_before_the_engine_starts(short_model_dir: Path) -> None:
    config = RerankConfig(model=str(short_model_dir), backend="vllm", max_length=65)
    with pytest.raises(ModelLoadError) as info:
        VLLMBackend(config)
    _refused(info, 65)


@pytest.mark.parametrize(
    ("config", "limit"),
    [
        ({"max_position_embeddings": 40960}, 40960),
        ({"max_position_embeddings": 40960, "rope_scaling": None}, 40960),
        (  # transformers 5's form of an unscaled RoPE
            {"max_position_embeddings": 40960, "rope_parameters": {"rope_type": "default"}},
            40960,
        ),
        (  # YaRN, as Qwen documents it for long contexts
            {
                "max_position_embeddings": 40960,
                "rope_scaling": {
                    "rope_type": "yarn",
                    "factor": 4.0,
                    "original_max_position_embeddings": 32768,
                },
            },
            131072,
        ),
        ({"max_position_embeddings": 512, "rope_parameters": {"factor": 2}}, 1024),
    ],
    ids=["plain", "no-scaling", "default-rope", "yarn", "factor-only"],
)
def test_the_limit(config: dict[str, Any], limit: int) -> None:
    check_max_length(limit, config, model="m")  # the limit itself is fine
    with pytest.raises(ModelLoadError, match=rf"max_length={limit + 1} .* <= {limit} "):
        check_max_length(limit + 1, config, model="m")


@pytest.mark.parametrize(
    "config", [{}, {"max_position_embeddings": None}, {"max_position_embeddings": True}]
)
def test_no_usable_limit_is_not_checked(config: dict[str, Any]) -> None:
    check_max_length(10**9, config, model="m")
