"""The lean forward (``_backends/_lean.py``) scores like the transformers forward.

Every model shape below is scored twice, by a backend on the lean forward (the
default on SDPA) and by one on the transformers forward (``lean=False``), with and
without query-prefix reuse, across several groups, lengths and duplicates. The
lean forward must also do what it claims: compute the last layer's MLP on one
position per prompt, keep the modules' weights usable without storing them
twice, and leave decoders it does not cover to the transformers forward.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import DEFAULT_INSTRUCTION, RerankConfig
from qwen3_rerank_core._backends._lean import LeanForward, _Gated, lean_unsupported
from qwen3_rerank_core._backends._transformers import TransformersBackend
from qwen3_rerank_core.pytest_plugin import SAMPLE_QUERY, SAMPLE_TEXTS
from qwen3_rerank_core.testing import cached_checkpoint, cached_seq_cls_checkpoint

torch = pytest.importorskip("torch")
# slow: scheduled first on CI's workers (conftest.py)
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

TOL = 1e-5

#: Shapes the tiny default does not have: no GQA, odd head sizes, biases, one layer,
#: more layers untied, scaled rotary positions.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "mha-head16": {"num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16},
    "gqa4-head8": {"num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 8},
    "attention-bias": {"attention_bias": True},
    "one-layer": {"num_hidden_layers": 1},
    "three-layers-untied-linear-rope": {
        "num_hidden_layers": 3,
        "intermediate_size": 96,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    },
}

LONG = " ".join(SAMPLE_TEXTS)
DOCS = [*SAMPLE_TEXTS, LONG, LONG[:300], "x", SAMPLE_TEXTS[0], ""]
GROUPS = [
    (SAMPLE_QUERY, DOCS),
    ("Which planet is the largest?", list(reversed(DOCS))),
    ("one document", [SAMPLE_TEXTS[3]]),
]


def _backend(model_dir: Path, *, lean: bool | None, **settings: Any) -> TransformersBackend:
    config = RerankConfig(model=str(model_dir), device="cpu", dtype="float32", **settings)
    return TransformersBackend(config, lean=lean)


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def _bias_checkpoint(overrides: dict[str, Any], tmp_root: Path) -> Path:
    """Biases initialise to zero; random ones make the test see them."""
    folder = cached_checkpoint(overrides)
    if not overrides.get("attention_bias"):
        return folder
    from transformers import AutoModelForCausalLM

    out = tmp_root / "with-biases"
    if not out.exists():
        model = AutoModelForCausalLM.from_pretrained(str(folder))
        torch.manual_seed(1)
        for layer in model.model.layers:
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(layer.self_attn, name).bias.data.normal_(0, 0.5)
        model.save_pretrained(str(out))
        for f in folder.iterdir():
            if "token" in f.name or f.name in ("vocab.json", "merges.txt"):
                (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_lean_scores_equal_transformers_forward(
    shape: str, reuse_prefix: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = _bias_checkpoint(SHAPES[shape], tmp_path_factory.mktemp(shape))
    # A small budget, so that groups split into several batches of mixed widths.
    settings = {"reuse_prefix": reuse_prefix, "max_batch_tokens": 300}
    lean = _backend(folder, lean=True, **settings)
    reference = _backend(folder, lean=False, **settings)
    assert lean._lean is not None and reference._lean is None
    got = lean.score_groups(GROUPS, DEFAULT_INSTRUCTION)
    want = reference.score_groups(GROUPS, DEFAULT_INSTRUCTION)
    assert _max_diff(got, want) <= TOL
    assert got[0][0] == got[0][len(SAMPLE_TEXTS) + 3]  # duplicates score equal


def test_lean_scores_seq_cls_flavour() -> None:
    folder = cached_seq_cls_checkpoint()
    lean = _backend(folder, lean=True)
    reference = _backend(folder, lean=False)
    got = lean.score_groups(GROUPS, DEFAULT_INSTRUCTION)
    assert _max_diff(got, reference.score_groups(GROUPS, DEFAULT_INSTRUCTION)) <= TOL


def test_lean_is_the_default_on_sdpa(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="qwen3_rerank_core"):
        backend = _backend(tiny_model_dir, lean=None)
    assert isinstance(backend._lean, LeanForward)
    weights = "oneDNN packed weights" if backend._lean.packed else "dense weights"
    if backend._lean.cpu_products:
        weights = "bf16 products on our CPU kernel"
    assert f"lean forward, {weights}" in caplog.text


def test_other_attention_kernels_use_the_transformers_forward(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="qwen3_rerank_core"):
        backend = _backend(tiny_model_dir, lean=None, attn_implementation="eager")
    assert backend._lean is None
    assert "attention kernel 'eager'" in caplog.text
    with pytest.raises(ValueError, match=r"lean=True.*'eager'"):
        _backend(tiny_model_dir, lean=True, attn_implementation="eager")


class _Recorder:
    """A projection that records the shape of each input."""

    def __init__(self, inner: Any, shapes: list[tuple[int, ...]]) -> None:
        self.inner, self.shapes = inner, shapes

    def __call__(self, x: Any) -> Any:
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


def test_last_layer_mlp_and_query_run_on_one_position_per_prompt(tiny_model_dir: Path) -> None:
    backend = _backend(tiny_model_dir, lean=None)
    lean = backend._lean
    assert lean is not None
    first, last = lean._layers[0], lean._layers[-1]
    seen: dict[str, list[tuple[int, ...]]] = {"first": [], "last": [], "last_q": [], "last_o": []}
    lean._layers[0] = dataclasses.replace(first, down=_Recorder(first.down, seen["first"]))
    lean._layers[-1] = dataclasses.replace(
        last,
        down=_Recorder(last.down, seen["last"]),
        q=_Recorder(last.q, seen["last_q"]),
        o=_Recorder(last.o, seen["last_o"]),
    )
    backend.score_groups([(SAMPLE_QUERY, list(SAMPLE_TEXTS[:4]))], DEFAULT_INSTRUCTION)
    # The prefix runs layer 0 in full and only the keys and values of the last layer;
    # the batch of four runs layer 0 on every position (here without the padding: the
    # rows' real tokens one after another) and the last layer's query, output projection
    # and MLP on one position a prompt.
    assert [s[0] for s in seen["first"]] == [1, 1]
    assert seen["first"][1][1] > 4
    assert seen["last"] == [(4, 1, 128)]
    assert seen["last_q"] == [(4, 1, 64)]
    assert seen["last_o"] == [(4, 1, 4 * 64)]


def _hidden(model: Any, ids: list[int]) -> Any:
    with torch.inference_mode():
        return model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]


@pytest.mark.parametrize(
    ("capability", "dtype", "preferred"),
    [
        ("AVX2", "float32", False),  # the default BLAS was faster there
        ("AVX512", "float32", True),
        ("AVX2", "bfloat16", True),
        ("AVX512", "bfloat16", True),
        ("DEFAULT", "float32", True),  # unmeasured: packed, as before
    ],
)
def test_onednn_is_preferred_but_in_float32_on_avx2(
    monkeypatch: pytest.MonkeyPatch, capability: str, dtype: str, preferred: bool
) -> None:
    from qwen3_rerank_core._backends._lean import onednn_preferred

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert onednn_preferred(getattr(torch, dtype)) is preferred


@pytest.mark.parametrize("preferred", [False, True])
def test_default_packing_follows_the_preference(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, preferred: bool
) -> None:
    from transformers import AutoModelForCausalLM

    from qwen3_rerank_core._backends import _lean

    if not _lean.onednn_available(torch.float32):
        pytest.skip("this torch has no oneDNN")
    asked: list[object] = []

    def preference(dtype: object) -> bool:
        asked.append(dtype)
        return preferred

    monkeypatch.setattr(_lean, "onednn_preferred", preference)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa")
    assert LeanForward(model.model).packed is preferred
    assert asked == [torch.float32]


@pytest.mark.parametrize("pack", [False, True])
def test_lean_hidden_states_and_the_modules_weights(tiny_model_dir: Path, pack: bool) -> None:
    from transformers import AutoModelForCausalLM

    from qwen3_rerank_core._backends._lean import onednn_available

    if pack and not onednn_available(torch.float32):
        pytest.skip("this torch has no oneDNN")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa")
    ids = [1, 20, 300, 4000, 5]
    before, short = _hidden(model, ids), _hidden(model, ids[:3])
    n_params = sum(p.numel() for p in model.parameters())
    lean = LeanForward(model.model, pack=pack)
    assert lean.packed is pack
    with torch.inference_mode():
        whole = lean.last_hidden([ids], None, pad_id=0)
        prefixed = lean.last_hidden([ids[2:], ids[2:3]], lean.prefix(ids[:2]), pad_id=0)
    assert torch.allclose(whole[0], before[-1], atol=1e-5)
    assert torch.allclose(prefixed[0], before[-1], atol=1e-5)
    assert torch.allclose(prefixed[1], short[-1], atol=1e-5)
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    if pack:
        # The packed copies replace the projections' weights: nothing is held twice.
        assert attn.q_proj.weight.numel() == 0 and mlp.down_proj.weight.numel() == 0
        assert lean._layers[0].qkv is not None and lean._layers[0].qkv.packed
        return
    # Dense: the modules' weights are views of the fused matrices and still work.
    fused = lean._layers[0]
    assert fused.qkv is not None
    storage = fused.qkv.weight.untyped_storage().data_ptr()
    assert attn.q_proj.weight.untyped_storage().data_ptr() == storage
    assert attn.v_proj.weight.untyped_storage().data_ptr() == storage
    up_storage = mlp.up_proj.weight.untyped_storage().data_ptr()
    assert isinstance(fused.gate_up, _Gated)
    assert up_storage == fused.gate_up.product.weight.untyped_storage().data_ptr()
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert torch.equal(_hidden(model, ids), before)


def test_unsupported_decoders_are_named(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa")
    decoder = model.model
    assert lean_unsupported(decoder, "sdpa") is None
    assert "flash_attention_2" in str(lean_unsupported(decoder, "flash_attention_2"))

    class Wrapped(torch.nn.Module):  # e.g. a LoRA or quantised projection
        def __init__(self, inner: torch.nn.Linear) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x)

    decoder.layers[1].mlp.up_proj = Wrapped(decoder.layers[1].mlp.up_proj)
    assert "layer 1" in str(lean_unsupported(decoder, "sdpa"))
    decoder.layers[1].mlp.up_proj = decoder.layers[1].mlp.up_proj.inner
    decoder.layers[0].self_attn.sliding_window = 16
    assert "sliding-window" in str(lean_unsupported(decoder, "sdpa"))


def _rows_of_mixed_lengths() -> list[list[int]]:
    return [[7, 300, 41, 5000, 12, 9, 77, 1500], [3], [88, 4, 19], [6, 1024, 2, 33, 5], [600, 8]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("with_prefix", [True, False])
@pytest.mark.parametrize("shape", ["tiny", "gqa4-head8", "attention-bias"])
def test_rows_without_padding_equal_the_padded_batch(
    shape: str,
    with_prefix: bool,
    dtype: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A batch whose padding passes ``RAGGED_MIN_PADDING`` runs its real tokens only
    (``_Ragged``); its hidden states are those of the padded batch, row by row."""
    from transformers import AutoModelForCausalLM

    from qwen3_rerank_core._backends import _lean

    folder = _bias_checkpoint(SHAPES[shape], tmp_path_factory.mktemp(shape))
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), attn_implementation="sdpa", dtype=getattr(torch, dtype)
    )
    lean = LeanForward(model.model)
    rows = _rows_of_mixed_lengths()
    prefix = lean.prefix([11, 22, 33, 44, 55, 66]) if with_prefix else None
    made: list[Any] = []
    real_ragged = lean._ragged

    def recording(*args: Any) -> Any:
        made.append(real_ragged(*args))
        return made[-1]

    monkeypatch.setattr(lean, "_ragged", recording)
    ragged = lean.last_hidden(rows, prefix, pad_id=0)
    assert made[-1] is not None and made[-1].index.numel() == sum(len(r) for r in rows)
    monkeypatch.setattr(_lean, "RAGGED_MIN_PADDING", 1.0)
    padded = lean.last_hidden(rows, prefix, pad_id=0)
    assert made[-1] is None
    assert ragged.dtype == padded.dtype == torch.float32
    tol = 1e-5 if dtype == "float32" else 2e-2
    assert torch.allclose(ragged, padded, atol=tol, rtol=tol), (ragged - padded).abs().max()
    # Each row alone (no padding at all) gives its row of the batch.
    for i, row in enumerate(rows):
        alone = lean.last_hidden([row], prefix, pad_id=0)
        assert torch.allclose(alone[0], ragged[i], atol=tol, rtol=tol), i


def test_rows_of_one_width_keep_the_padded_layout(tiny_model_dir: Path) -> None:
    """No padding to skip (or less than ``RAGGED_MIN_PADDING``): the batch stays padded."""
    backend = _backend(tiny_model_dir, lean=True)
    lean = backend._lean
    assert lean is not None
    assert lean._ragged(torch.tensor([3, 3]), 3) is None
    assert lean._ragged(torch.tensor([40, 39]), 40) is None  # 1.25 % padding
    assert lean._ragged(torch.tensor([40, 30]), 40) is None  # 12.5 %
    ragged = lean._ragged(torch.tensor([40, 20]), 40)  # 25 %
    assert ragged is not None
    assert ragged.index.tolist() == [*range(40), *range(40, 60)]
    assert ragged.last.tolist() == [39, 59]
