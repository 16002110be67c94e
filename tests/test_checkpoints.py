"""Checkpoint flavours: both are scored exactly, everything else is refused before scoring.

The converted ``Qwen3ForSequenceClassification`` checkpoints (built as the public
conversion scripts build them: one label, ``score.weight`` = W[yes] - W[no],
``pad_token_id`` set) must score like the official recipe run on the
``Qwen3ForCausalLM`` checkpoint they were made from, within 1e-5 in fp32, with
tied embeddings (like 0.6B) and untied ones (like 4B/8B), on every path of the
transformers backend (prefix reuse, plain padded batches, packed rows).
vLLM and a real vLLM server: ``tests/test_checkpoints_vllm.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import checkpoint_kit
import pytest
from recipe import OfficialRecipe

from qwen3_rerank_core import ModelLoadError, Qwen3Reranker
from qwen3_rerank_core._backends._transformers import TransformersBackend
from qwen3_rerank_core._backends._vllm import HF_OVERRIDES, VLLMBackend, checkpoint_flavour
from qwen3_rerank_core._checkpoint import (
    CAUSAL_LM,
    SEQ_CLS,
    check_tokenizer,
    flavour_from_config,
    vllm_engine_args,
)
from qwen3_rerank_core._cli import main as cli_main
from qwen3_rerank_core._config import RerankConfig

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

FIXTURE_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "fixtures"
TOL = 1e-5
MAX_LENGTH = 96  # the long documents below are cut
QUERY = "What is the capital of China?"
CUSTOM = "Decide whether the document is written in the same language as the query"
DOCS = [
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "Gravity is a force that attracts two bodies towards each other.",
    "Pékin est la capitale de la Chine. " * 20,
    "",
    "x",
    "def fibonacci(n):\n    a, b = 0, 1\n    return a  # 😀",
]
ITEMS = [(QUERY, DOCS), ("Wo liegt Peking?", DOCS[:3]), ("nothing", [])]


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def pair(request: pytest.FixtureRequest) -> tuple[Path, Path, OfficialRecipe]:
    """(CausalLM folder, its seq-cls conversion, the recipe on the CausalLM)."""
    tied: bool = request.param
    causal = checkpoint_kit.good("causal-lm", tied, FIXTURE_CACHE)
    seq_cls = checkpoint_kit.good("seq-cls", tied, FIXTURE_CACHE)
    return causal, seq_cls, OfficialRecipe(causal, max_length=MAX_LENGTH)


def _recipe_scores(recipe: OfficialRecipe) -> dict[str, Any]:
    return {
        "score": recipe.score(QUERY, DOCS),
        "custom": recipe.score(QUERY, DOCS, instruction=CUSTOM),
        "many": [recipe.score(q, d) if d else [] for q, d in ITEMS],
    }


def _assert_matches(rr: Qwen3Reranker, want: dict[str, Any]) -> None:
    assert max_diff(rr.score(QUERY, DOCS), want["score"]) <= TOL
    assert max_diff(rr.score(QUERY, DOCS, instruction=CUSTOM), want["custom"]) <= TOL
    for got, expected in zip(rr.score_many(ITEMS), want["many"], strict=True):
        assert max_diff(got, expected) <= TOL


# ------------------------------------------------------------------ flavours
def test_conversion_looks_like_the_public_ones(pair: tuple[Path, Path, OfficialRecipe]) -> None:
    _, seq_cls, _ = pair
    config = json.loads((seq_cls / "config.json").read_text())
    assert config["architectures"] == [SEQ_CLS]
    assert config["id2label"] == {"0": "LABEL_0"}
    assert config["pad_token_id"] == 151643


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ({"architectures": [CAUSAL_LM], "tie_word_embeddings": True}, "causal-lm"),
        ({"model_type": "qwen3"}, "causal-lm"),  # no architectures: what AutoModelForCausalLM does
        ({"architectures": [SEQ_CLS], "id2label": {"0": "LABEL_0"}}, "seq-cls"),
        ({"architectures": [SEQ_CLS], "num_labels": 1}, "seq-cls"),
    ],
)
def test_flavour_from_config(config: dict[str, Any], kind: str) -> None:
    assert flavour_from_config(config).kind == kind


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"architectures": [SEQ_CLS]}, "2 labels"),  # transformers' default: 2 labels
        ({"architectures": [SEQ_CLS], "id2label": {"0": "a", "1": "b", "2": "c"}}, "3 labels"),
        ({"architectures": ["XLMRobertaForSequenceClassification"]}, "XLMRoberta"),
        ({"model_type": "llama"}, "model_type 'llama'"),
    ],
)
def test_unsupported_configs_are_refused(config: dict[str, Any], words: str) -> None:
    with pytest.raises(ModelLoadError, match="supported") as info:
        flavour_from_config(config, model="m")
    assert words in str(info.value)


def test_vllm_engine_args_per_flavour() -> None:
    causal = flavour_from_config({"architectures": [CAUSAL_LM]})
    seq_cls = flavour_from_config({"architectures": [SEQ_CLS], "num_labels": 1})
    assert vllm_engine_args(causal) == {"hf_overrides": HF_OVERRIDES}
    assert vllm_engine_args(seq_cls) == {}
    assert HF_OVERRIDES["classifier_from_token"] == ["no", "yes"]


# ------------------------------------------------------------------- parity
@pytest.mark.parametrize("reuse_prefix", [True, False], ids=["prefix-reuse", "no-reuse"])
def test_seq_cls_scores_equal_the_recipe_on_the_causal_lm(
    pair: tuple[Path, Path, OfficialRecipe], reuse_prefix: bool
) -> None:
    causal, seq_cls, recipe = pair
    want = _recipe_scores(recipe)
    for folder in (causal, seq_cls):
        with Qwen3Reranker(
            model=str(folder),
            max_length=MAX_LENGTH,
            device="cpu",
            dtype="float32",
            reuse_prefix=reuse_prefix,
            max_batch_tokens=512,  # several batches
        ) as rr:
            _assert_matches(rr, want)


def test_seq_cls_packed_rows_equal_the_recipe(pair: tuple[Path, Path, OfficialRecipe]) -> None:
    _, seq_cls, recipe = pair
    with Qwen3Reranker(
        model=str(seq_cls),
        max_length=MAX_LENGTH,
        device="cpu",
        dtype="float32",
        backend_options={"packed": True},
    ) as rr:
        rr.load()
        backend = rr._backend
        assert isinstance(backend, TransformersBackend) and backend._packed
        assert backend.flavour.kind == "seq-cls"
        assert tuple(backend._head.weight.shape) == (1, 64)
        _assert_matches(rr, _recipe_scores(recipe))


def test_bf16_conversion_loads_and_ranks_like_the_original() -> None:
    """A conversion saved in bfloat16 (as many on the hub are) is loaded and scored in fp32
    with dtype="float32" (the default follows the precision policy: test_precision.py)."""
    causal = checkpoint_kit.good("causal-lm", False, FIXTURE_CACHE)
    from qwen3_rerank_core.testing import cached_seq_cls_checkpoint

    bf16 = cached_seq_cls_checkpoint(
        checkpoint_kit.UNTIED, dtype="bfloat16", cache_dir=FIXTURE_CACHE
    )
    assert json.loads((bf16 / "config.json").read_text())["dtype"] == "bfloat16"
    want = OfficialRecipe(causal, max_length=MAX_LENGTH).score(QUERY, DOCS)
    with Qwen3Reranker(model=str(bf16), max_length=MAX_LENGTH, device="cpu", dtype="float32") as rr:
        got = rr.score(QUERY, DOCS)
        assert str(rr._backend.dtype) == "torch.float32"  # type: ignore[union-attr]
    # bf16 weights keep ~3 significant digits: close, not equal.
    assert 0 < max_diff(got, want) < 0.05


# ----------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            out = tmp_path_factory.mktemp("bad") / name
            built[name] = checkpoint_kit.build_bad(name, FIXTURE_CACHE, out)
        return built[name]

    return get


@pytest.mark.parametrize("name", sorted(checkpoint_kit.BAD))
def test_transformers_backend_refuses(name: str, bad_dir: Any) -> None:
    folder = bad_dir(name)
    reranker = Qwen3Reranker(model=str(folder), device="cpu")
    with pytest.raises(ModelLoadError) as info:
        reranker.load()
    message = str(info.value)
    for words in checkpoint_kit.BAD[name][1]:
        assert words in message, message
    assert str(folder) in message  # names the checkpoint
    with pytest.raises(ModelLoadError):  # still refused; never scores with what it has
        reranker.score(QUERY, ["a"])


@pytest.mark.parametrize("name", sorted(checkpoint_kit.BAD))
def test_vllm_backend_refuses_before_the_engine_starts(name: str, bad_dir: Any) -> None:
    """The checks run before vLLM is imported: they hold without vLLM installed too."""
    config = RerankConfig(model=str(bad_dir(name)), backend="vllm")
    with pytest.raises(ModelLoadError) as info:
        VLLMBackend(config)
    for words in checkpoint_kit.BAD[name][1]:
        assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("kind", ["causal-lm", "seq-cls"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_vllm_precheck_accepts_good_checkpoints(kind: str, tied: bool) -> None:
    folder = checkpoint_kit.good(kind, tied, FIXTURE_CACHE)
    flavour = checkpoint_flavour(str(folder))
    assert (flavour.kind, flavour.tied) == (kind, tied)


def test_transformers_load_report_never_reaches_scoring(
    bad_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: an untied seq-cls folder labelled CausalLM loads with a random
    lm_head in plain transformers; here it is refused and no score comes out."""
    folder = bad_dir("seq-cls-labelled-causal-lm")
    with pytest.raises(ModelLoadError, match="would initialise them at random"):
        Qwen3Reranker(model=str(folder), device="cpu").score(QUERY, DOCS)


def test_check_tokenizer_accepts_the_qwen3_tokenizer(tiny_tokenizer: Any) -> None:
    check_tokenizer(tiny_tokenizer, model="tiny")  # no exception


# ---------------------------------------------------------------- vllm-command
def _vllm_argv(model: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cli_main(["vllm-command", "--model", model, "--format", "json"]) == 0
    payload: dict[str, Any] = json.loads(capsys.readouterr().out)
    return payload


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_vllm_command_flags_follow_the_flavour(
    tied: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    causal = _vllm_argv(str(checkpoint_kit.good("causal-lm", tied, FIXTURE_CACHE)), capsys)
    seq_cls = _vllm_argv(str(checkpoint_kit.good("seq-cls", tied, FIXTURE_CACHE)), capsys)
    for argv in causal["server"], causal["client"]:
        assert json.loads(argv[argv.index("--hf-overrides") + 1]) == HF_OVERRIDES
    for argv in seq_cls["server"], seq_cls["client"]:
        assert "--hf-overrides" not in argv and "--runner" in argv
    assert causal["flavour"] == CAUSAL_LM and seq_cls["flavour"] == SEQ_CLS


def test_vllm_command_hub_id_is_the_original_flavour(capsys: pytest.CaptureFixture[str]) -> None:
    payload = _vllm_argv("Qwen/Qwen3-Reranker-4B", capsys)
    assert "--hf-overrides" in payload["server"]
    assert cli_main(["vllm-command", "--model", "Qwen/Qwen3-Reranker-4B"]) == 0
    assert "seq-cls" in capsys.readouterr().out  # says how to serve a converted hub id


@pytest.mark.parametrize("name", ["bert-cross-encoder", "multi-label"])
def test_vllm_command_refuses_unsupported_folders(
    name: str, bad_dir: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(bad_dir(name))
    capsys.readouterr()  # what building it printed
    assert cli_main(["vllm-command", "--model", folder]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qwen3-rerank: error: ModelLoadError:") and "supported" in err


def test_vllm_command_path_not_here(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path not on this machine (the server's) gets the original flavour's flags and a note."""
    assert cli_main(["vllm-command", "--model", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert "A path not on this machine" in out and "--hf-overrides" in out
