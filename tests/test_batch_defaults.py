"""The automatic ``max_batch_tokens`` (``None``): chosen for the device and the model's shape.

The rule (``default_batch_tokens``) is unit-tested on faked model shapes and
cache sizes; the backend is checked to use it when the budget is ``None`` and
to keep an explicit budget. The measurements behind the rule are in
``docs/benchmarks.md`` (``benchmarks/sweep_batch_tokens.py``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from qwen3_rerank_core import Qwen3Reranker, RerankConfig
from qwen3_rerank_core._backends._transformers import (
    CPU_BATCH_TOKENS_RANGE,
    CUDA_BATCH_TOKENS,
    FALLBACK_CACHE_BYTES,
    cpu_cache_bytes,
    default_batch_tokens,
)

MiB = 2**20
SHAPES = [  # (hidden, intermediate): tiny, 12x256, mid/8x512, 0.6B / 2x1024, 4B, 8B
    (64, 128),
    (256, 768),
    (512, 1536),
    (1024, 3072),
    (2560, 9728),
    (4096, 12288),
]


def _shape(hidden: int, intermediate: int) -> SimpleNamespace:
    return SimpleNamespace(hidden_size=hidden, intermediate_size=intermediate)


def test_default_is_none_and_explicit_values_are_still_checked() -> None:
    assert RerankConfig().max_batch_tokens is None
    assert RerankConfig(max_batch_tokens=300).max_batch_tokens == 300
    with pytest.raises(ValueError, match="max_batch_tokens"):
        RerankConfig(max_batch_tokens=0)


@pytest.mark.parametrize(("hidden", "intermediate"), SHAPES)
@pytest.mark.parametrize("cache_mib", [1, 8, 32, 256])
@pytest.mark.parametrize("dtype_bytes", [2, 4])
def test_cpu_budget_is_the_largest_power_of_two_whose_activations_fit_the_cache(
    hidden: int, intermediate: int, cache_mib: int, dtype_bytes: int
) -> None:
    budget = default_batch_tokens(
        "cpu", _shape(hidden, intermediate), dtype_bytes=dtype_bytes, cache_bytes=cache_mib * MiB
    )
    low, high = CPU_BATCH_TOKENS_RANGE
    assert low <= budget <= high
    assert budget & (budget - 1) == 0  # a power of two
    per_token = dtype_bytes * 2 * (hidden + intermediate)
    assert budget == low or budget * per_token <= cache_mib * MiB
    assert budget == high or 2 * budget * per_token > cache_mib * MiB


def test_cpu_budget_shrinks_with_the_model_and_grows_with_the_cache() -> None:
    budgets = [default_batch_tokens("cpu", _shape(h, i), cache_bytes=32 * MiB) for h, i in SHAPES]
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] > budgets[-1]
    by_cache = [
        default_batch_tokens("cpu", _shape(1024, 3072), cache_bytes=c * MiB) for c in (4, 32, 512)
    ]
    assert by_cache == sorted(by_cache) and by_cache[0] < by_cache[-1]
    # the measured shapes on this project's 32 MiB-L3 machine (docs/benchmarks.md)
    assert default_batch_tokens("cpu", _shape(512, 1536), cache_bytes=32 * MiB) == 2048
    assert default_batch_tokens("cpu", _shape(1024, 3072), cache_bytes=32 * MiB) == 1024
    # the tiny fixture of the 10,000-document memory run keeps the old 16384
    assert default_batch_tokens("cpu", _shape(64, 128), cache_bytes=32 * MiB) == 16384


def test_cuda_budget_is_fixed() -> None:
    for hidden, intermediate in SHAPES:
        assert default_batch_tokens("cuda", _shape(hidden, intermediate)) == CUDA_BATCH_TOKENS


def test_a_config_without_intermediate_size_still_gets_a_budget() -> None:
    budget = default_batch_tokens("cpu", SimpleNamespace(hidden_size=512), cache_bytes=32 * MiB)
    assert budget == default_batch_tokens("cpu", _shape(512, 1536), cache_bytes=32 * MiB)


def _fake_sysfs(root: Path, caches: list[tuple[int, str, str]]) -> Path:
    for i, (level, kind, size) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    (root / "uevent").write_text("")
    return root


def test_cache_size_is_the_largest_data_or_unified_cache(tmp_path: Path) -> None:
    root = _fake_sysfs(
        tmp_path / "cache",
        [
            (1, "Data", "32K"),
            (1, "Instruction", "64K"),
            (2, "Unified", "1024K"),
            (3, "Unified", "32768K"),
        ],
    )
    assert cpu_cache_bytes(str(root)) == 32 * MiB
    only_l2 = _fake_sysfs(tmp_path / "l2", [(1, "Data", "48K"), (2, "Unified", "2M")])
    assert cpu_cache_bytes(str(only_l2)) == 2 * MiB


def test_unreadable_cache_size_falls_back(tmp_path: Path) -> None:
    assert cpu_cache_bytes(str(tmp_path / "missing")) == FALLBACK_CACHE_BYTES
    bad = _fake_sysfs(tmp_path / "bad", [(3, "Unified", "lots")])
    assert cpu_cache_bytes(str(bad)) == FALLBACK_CACHE_BYTES


def test_backend_uses_the_rule_when_none_and_an_explicit_budget_otherwise(
    tiny_model_dir: Path,
) -> None:
    auto = Qwen3Reranker(model=str(tiny_model_dir), device="cpu", dtype="float32").load()
    backend = auto._get_backend()
    model_config = backend._decoder.config
    expected = default_batch_tokens("cpu", model_config, dtype_bytes=4)
    assert backend._max_batch_tokens == expected
    fixed = Qwen3Reranker(
        model=str(tiny_model_dir), device="cpu", dtype="float32", max_batch_tokens=300
    ).load()
    assert fixed._get_backend()._max_batch_tokens == 300
    docs = ["a short document", "another, somewhat longer document about rivers"] * 3
    assert auto.score("rivers", docs) == pytest.approx(fixed.score("rivers", docs), abs=1e-6)
    auto.close()
    fixed.close()
