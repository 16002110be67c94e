"""The precision policy (``dtype=None``) and the accuracy of reduced precision.

The policy is checked as a table (the CPU's and GPU's capabilities faked), then on
loaded checkpoints (bf16- and fp32-saved). Accuracy: on several shapes saved in
bfloat16, every forward path in bf16 stays within the model card's own bf16
deviation from the fp32 recipe (transformers 5 defaults load such a folder in bf16),
and within a stated bound.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from recipe import OfficialRecipe
from transformers import AutoModelForCausalLM

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core._backends import _lean, _vllm
from qwen3_rerank_core._precision import (
    Hardware,
    checkpoint_dtype,
    choose_dtype,
    cpu_computes_bf16,
    planned_dtype,
)
from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

#: Largest |p(bf16) - p(fp32 recipe)| accepted on these random-weight shapes (initialised
#: at 0.3, which makes scores far more sensitive than a trained model's), whatever the
#: model card's own bf16 run gives (measured on 48 documents: ours 0.016-0.080, the card's
#: 0.011-0.088; docs/scoring.md).
BF16_BOUND = 0.15
#: Mean |p(bf16) - p(fp32 recipe)| over the documents, as a multiple of the model card's
#: own bf16 run: the lean forward (the default on CPU and CUDA without flash-attention)
#: keeps the residual stream, norms, rotary embedding, final norm and head in float32 and
#: is at least as close (measured 0.77-1.0x); the transformers forward and the packed rows
#: (flash-attention) keep only the final norm and head in float32 (measured 1.07-1.19x).
MEAN_RATIO = {"lean": 1.05, "transformers": 1.3}

CPU_NATIVE = Hardware("cpu", cpu_bf16=True)
CPU_EMULATED = Hardware("cpu", cpu_bf16=False)


@pytest.mark.parametrize(
    ("requested", "hardware", "saved", "want"),
    [
        (None, Hardware("cuda", cuda_bf16=True), "float32", "bfloat16"),
        (None, Hardware("cuda", cuda_bf16=False), "bfloat16", "float32"),
        (None, CPU_NATIVE, "bfloat16", "bfloat16"),
        (None, CPU_EMULATED, "bfloat16", "float32"),  # never emulated bf16
        (None, CPU_NATIVE, "float32", "float32"),  # a float32 checkpoint stays float32
        (None, CPU_NATIVE, None, "float32"),  # unknown: float32
        (None, CPU_NATIVE, "float16", "float32"),
        (None, Hardware("mps"), "bfloat16", "float32"),
        ("float32", CPU_NATIVE, "bfloat16", "float32"),  # the exact mode
        ("bfloat16", CPU_EMULATED, "float32", "bfloat16"),  # asked for: given
        ("auto", CPU_EMULATED, "bfloat16", "bfloat16"),  # the checkpoint's own
        ("auto", CPU_NATIVE, None, "float32"),
    ],
)
def test_policy_table(
    requested: str | None, hardware: Hardware, saved: str | None, want: str
) -> None:
    choice = choose_dtype(requested, hardware, saved=saved)
    assert choice.name == want
    assert choice.reason  # the load log says why


@pytest.mark.parametrize(
    ("config", "want"),
    [
        ({"dtype": "bfloat16"}, "bfloat16"),
        ({"torch_dtype": "torch.bfloat16"}, "bfloat16"),  # transformers 4 wrote this
        ({"torch_dtype": "float32"}, "float32"),
        ({"dtype": "float16"}, "float16"),
        ({}, None),
        (None, None),
    ],
)
def test_checkpoint_dtype(config: dict[str, Any] | None, want: str | None) -> None:
    assert checkpoint_dtype(config) == want


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "want"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_cpu_capability_is_read_from_torch(avx512_bf16: bool, amx: bool, want: bool) -> None:
    fake = SimpleNamespace(
        cpu=SimpleNamespace(
            _is_avx512_bf16_supported=lambda: avx512_bf16, _is_amx_tile_supported=lambda: amx
        )
    )
    assert cpu_computes_bf16(fake) is want
    assert cpu_computes_bf16(SimpleNamespace()) is False  # a torch without the probes


@pytest.fixture(scope="module")
def bf16_dir() -> Path:
    return cached_checkpoint("tiny", dtype="bfloat16", cache_dir=default_cache_dir())


@pytest.mark.parametrize("native", [True, False])
def test_cpu_default_follows_a_bf16_checkpoint_where_native(
    bf16_dir: Path,
    native: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if native and not cpu_computes_bf16(torch):
        # The probe is faked below: keep our AVX-512 kernels (built for the CPU the probe
        # describes) off this CPU, which would raise SIGILL in them.
        monkeypatch.setattr(_lean, "cpu_attention", lambda dtype: None)
        monkeypatch.setattr(_lean, "cpu_elementwise", lambda: None)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    want = torch.bfloat16 if native else torch.float32
    with (
        caplog.at_level(logging.INFO, logger="qwen3_rerank_core"),
        Qwen3Reranker(model=str(bf16_dir), device="cpu", max_length=128) as rr,
    ):
        rr.load()
        backend: Any = rr._backend
        assert backend.dtype == want
        assert 0.0 <= rr.score("q", ["d"])[0] <= 1.0
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded")]
    assert loaded and str(want).removeprefix("torch.") in loaded[0]
    assert ("natively" if native else "no native bf16") in loaded[0]
    assert planned_dtype(None, "cpu", str(bf16_dir)).name == str(want).removeprefix("torch.")


def test_float32_checkpoint_stays_float32(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    with Qwen3Reranker(model=str(tiny_model_dir), device="cpu", max_length=128) as rr:
        rr.load()
        assert rr._backend.dtype == torch.float32  # type: ignore[union-attr]


def test_vllm_backend_uses_the_same_policy(
    bf16_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen3_rerank_core import RerankConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    config = RerankConfig(model=str(bf16_dir), backend="vllm", device="cpu")
    assert _vllm._planned_dtype(config) == "bfloat16"
    assert _vllm._planned_dtype(config.replace(model=str(tiny_model_dir))) == "float32"
    assert _vllm._planned_dtype(config.replace(dtype="float32")) == "float32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert _vllm._planned_dtype(config) == "float32"


# ---------------------------------------------------------------- accuracy in bf16
SHAPES = {
    "tiny": {},
    "gqa-6x256": {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
    },
    "mha-untied-4x128": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "tie_word_embeddings": False,
    },
}
QUERY = "what is the capital of China?"


def _documents(n: int = 48, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    words = [
        *("the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "that", "by"),
        *("with", "as", "at", "from", "river", "capital", "Beijing", "gravity", "protein"),
        *("market", "neural", "pizza", "Paris", "history", "population", "city", "mountain"),
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(n)]


def _diffs(a: list[float], b: list[float]) -> list[float]:
    return [abs(x - y) for x, y in zip(a, b, strict=True)]


@pytest.fixture(scope="module", params=sorted(SHAPES))
def shape_refs(
    request: pytest.FixtureRequest,
) -> tuple[Path, list[str], list[float], list[float]]:
    """A bf16-saved checkpoint, documents, the fp32 recipe's scores and the deviations of
    the recipe run at transformers' defaults (bf16 for this folder)."""
    folder = cached_checkpoint(
        SHAPES[request.param], dtype="bfloat16", cache_dir=default_cache_dir()
    )
    docs = _documents()
    exact = OfficialRecipe(folder).score(QUERY, docs)
    card_model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()  # dtype "auto"
    assert card_model.dtype == torch.bfloat16
    card = OfficialRecipe(folder, model=card_model).score(QUERY, docs)
    return folder, docs, exact, _diffs(card, exact)


@pytest.mark.parametrize(
    ("settings", "options", "forward"),
    [
        ({}, {}, "lean"),  # with prefix reuse
        ({"reuse_prefix": False}, {}, "lean"),
        ({}, {"lean": False}, "transformers"),  # left-padded batches
        ({"reuse_prefix": False}, {"packed": True}, "transformers"),  # packed rows
    ],
    ids=["lean-prefix", "lean-full", "transformers-forward", "packed"],
)
def test_bf16_scores_no_worse_than_the_model_card_in_bf16(
    shape_refs: tuple[Path, list[str], list[float], list[float]],
    settings: dict[str, Any],
    options: dict[str, Any],
    forward: str,
) -> None:
    folder, docs, exact, card = shape_refs
    with Qwen3Reranker(
        model=str(folder), device="cpu", dtype="bfloat16", backend_options=options, **settings
    ) as rr:
        got = rr.score(QUERY, docs)
        assert rr._backend.dtype == torch.bfloat16  # type: ignore[union-attr]
    ours = _diffs(got, exact)
    assert 0 < max(ours) <= BF16_BOUND
    mean, card_mean = sum(ours) / len(ours), sum(card) / len(card)
    assert mean <= card_mean * MEAN_RATIO[forward], (mean, card_mean)
    # One document's rounding can land either way: the largest deviation is held to
    # twice the card's.
    assert max(ours) <= 2 * max(card) + 0.01, (max(ours), max(card))


def test_head_and_final_norm_run_in_float32(bf16_dir: Path) -> None:
    with Qwen3Reranker(model=str(bf16_dir), device="cpu", dtype="bfloat16") as rr:
        rr.load()
        backend: Any = rr._backend
        assert backend._head.weight.dtype == torch.float32
        hidden = backend._lean.last_hidden([[1, 2, 3]], None, pad_id=0)
        assert hidden.dtype == torch.float32
    options = {"lean": False}
    with Qwen3Reranker(
        model=str(bf16_dir), device="cpu", dtype="bfloat16", backend_options=options
    ) as rr:
        rr.load()
        backend = rr._backend
        assert backend._head.weight.dtype == torch.float32
        out = backend._decoder(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False)
        assert out.last_hidden_state.dtype == torch.float32
