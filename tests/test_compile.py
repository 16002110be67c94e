"""``compile=True``: the lean forward's layers under ``torch.compile`` (TorchInductor).

The compiled layers must give the eager scores: to float rounding in float32 (the
parity bound, 1e-5), and as close to the float32 recipe as the eager forward in
bfloat16. One compiled graph serves every batch shape (``dynamic=True``): a later call
with other widths and batch sizes compiles nothing, nor does a second reranker. Where
it cannot apply (no C++ compiler, a model the lean forward does not run), a warning
says so and the scores come from the eager forward.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from recipe import OfficialRecipe

from qwen3_rerank_core import Qwen3Reranker, RerankConfig
from qwen3_rerank_core._backends import _lean, _lean_ops, _transformers
from qwen3_rerank_core._backends._lean import ATTENTION_CHUNK
from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

QUERY = "Which city is the capital of China?"


def _documents(n: int, seed: int, longest: int) -> list[str]:
    """``n`` documents of 3 to ``longest`` words (the longest ones run in several
    attention chunks)."""
    rng = random.Random(seed)
    words = [
        *("the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "that", "by"),
        *("river", "capital", "Beijing", "gravity", "protein", "market", "Paris", "city"),
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, longest))) for _ in range(n)]


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _largest(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("reuse_prefix", [True, False], ids=["prefix", "whole-prompts"])
def test_compiled_float32_scores_equal_the_eager_ones(
    tiny_model_dir: Path, reuse_prefix: bool, caplog: pytest.LogCaptureFixture
) -> None:
    docs = _documents(12, seed=3, longest=3 * ATTENTION_CHUNK)
    others = _documents(5, seed=4, longest=ATTENTION_CHUNK // 2)  # other widths and sizes
    settings: dict[str, Any] = {"device": "cpu", "dtype": "float32", "reuse_prefix": reuse_prefix}
    with Qwen3Reranker(model=str(tiny_model_dir), **settings) as eager:
        want, want_others = eager.score(QUERY, docs), eager.score(QUERY, others)
    with caplog.at_level(logging.INFO, logger="qwen3_rerank_core"):
        compiled = Qwen3Reranker(model=str(tiny_model_dir), compile=True, **settings).load()
    with compiled:
        assert "compiled (torch.compile" in caplog.text
        backend: Any = compiled._backend
        assert backend._lean.compiled
        got = compiled.score(QUERY, docs)
        graphs = _unique_graphs()
        got_others = compiled.score(QUERY, others)
        assert _unique_graphs() == graphs  # other shapes: no new graph
    with Qwen3Reranker(model=str(tiny_model_dir), compile=True, **settings) as second:
        assert _largest(second.score(QUERY, others), want_others) <= 1e-5
        assert _unique_graphs() == graphs  # another instance reuses the graphs
    assert _largest(got, want) <= 1e-5
    assert _largest(got_others, want_others) <= 1e-5


def test_compiled_bf16_is_as_close_to_the_fp32_recipe_as_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shape = {  # a shape of its own: 4 query heads a KV head, 3 layers
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 64,
    }
    folder = cached_checkpoint(shape, dtype="bfloat16", cache_dir=default_cache_dir())
    # Four calls of 24 documents: the mean deviation of one set of 24 is a draw (compiled
    # against eager, sets 5-10 on an AVX2-only CPU: 0.83-1.41x, mean 1.12x).
    sets = [_documents(24, seed=seed, longest=2 * ATTENTION_CHUNK) for seed in (5, 6, 7, 8)]
    recipe = OfficialRecipe(folder)
    exact = [p for docs in sets for p in recipe.score(QUERY, docs)]
    settings: dict[str, Any] = {"model": str(folder), "device": "cpu", "dtype": "bfloat16"}
    # Eager on the products the compiled layers run (oneDNN's, bf16 outputs): eager bf16 on
    # our CPU product kernel keeps float32 outputs, another arithmetic (closer to float32).
    monkeypatch.setattr(_lean, "cpu_linear", lambda: None)
    with Qwen3Reranker(**settings) as eager:
        eager_scores = [p for docs in sets for p in eager.score(QUERY, docs)]
        assert not eager._backend._lean.cpu_products  # type: ignore[union-attr]
    with Qwen3Reranker(**settings, compile=True) as compiled:
        got = [p for docs in sets for p in compiled.score(QUERY, docs)]
        assert compiled._backend._lean.compiled  # type: ignore[union-attr]
    eager_dev = [abs(x - y) for x, y in zip(eager_scores, exact, strict=True)]
    dev = [abs(x - y) for x, y in zip(got, exact, strict=True)]
    assert 0 < max(dev) <= 0.15  # the bf16 bound of test_precision.py
    # The same arithmetic rounded in another order: as close on average.
    assert sum(dev) / len(dev) <= 1.25 * sum(eager_dev) / len(eager_dev) + 1e-4


def test_without_a_cpp_compiler_a_warning_and_the_eager_forward(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_transformers, "missing_cpp_compiler", lambda: "no C++ compiler (test)")
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        rr = Qwen3Reranker(model=str(tiny_model_dir), device="cpu", compile=True).load()
    with rr:
        assert "compile=True is not applied: no C++ compiler (test)" in caplog.text
        assert not rr._backend._lean.compiled  # type: ignore[union-attr]
        assert len(rr.score(QUERY, ["a", "b"])) == 2


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ({}, "a test reason"),  # a model the lean forward does not run
        ({"lean": False}, "lean=False"),
        ({"packed": True}, "batches run as packed rows"),
    ],
    ids=["unsupported-model", "lean-off", "packed-rows"],
)
def test_every_path_that_drops_compile_warns(
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    option: dict[str, bool],
    reason: str,
) -> None:
    monkeypatch.setattr(_transformers, "lean_unsupported", lambda *_: "a test reason")
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        rr = Qwen3Reranker(
            model=str(tiny_model_dir), device="cpu", compile=True, backend_options=option
        ).load()
    with rr:
        assert rr._backend._lean is None  # type: ignore[union-attr]
        assert f"compile=True is not applied: it compiles the lean forward ({reason}" in (
            caplog.text
        )
        assert len(rr.score(QUERY, ["a", "b"])) == 2


def test_missing_cpp_compiler_reports_torch_s_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor import cpp_builder

    assert _lean_ops.missing_cpp_compiler() is None  # this machine has one (CI too)

    def no_compiler() -> str:
        raise RuntimeError("no working C++ compiler found in ('g++',)")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    reason = _lean_ops.missing_cpp_compiler()
    assert reason is not None and "no working C++ compiler found" in reason


def test_compile_setting_is_checked() -> None:
    with pytest.raises(TypeError, match="compile must be a bool, got 'yes'"):
        RerankConfig(compile="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compile=True is a setting of the transformers backend"):
        RerankConfig(backend="remote", base_url="http://127.0.0.1:8000", compile=True)
    assert RerankConfig(compile=True).compile is True


def test_attention_chunks_equal_one_causal_call() -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 4, 37, 16)
    keys, values = torch.randn(2, 2, 37 + 11, 16), torch.randn(2, 2, 37 + 11, 16)
    whole = _lean_ops.attention(q, keys, values, None, 0.25, gqa=True, chunk=0)
    for chunk in (1, 8, 36, 37, 64):
        got = _lean_ops.attention(q, keys, values, None, 0.25, gqa=True, chunk=chunk)
        assert got.shape == (2, 37, 4, 16) and got.is_contiguous()
        torch.testing.assert_close(got, whole, atol=1e-6, rtol=1e-5)
    seen = torch.arange(48)[None] <= torch.arange(11, 48)[:, None]  # row i sees 0 .. 11 + i
    masked = torch.nn.functional.scaled_dot_product_attention(
        q, keys, values, attn_mask=seen, scale=0.25, enable_gqa=True
    )
    torch.testing.assert_close(whole, masked.transpose(1, 2), atol=1e-6, rtol=1e-5)
