"""The first run without a reachable model hub: every entry point fails fast, in one line.

The hub is made unreachable for real: ``HF_ENDPOINT`` points at a closed local
port (or ``HF_HUB_OFFLINE=1``), with an empty Hugging Face cache. The CLI and
the examples must stop within seconds with one line on stderr that says the
hub cannot be reached and how to pass a local folder, without huggingface_hub's
retries; the quickstart alone, given no model, then runs its pipeline on the
tiny random-weight checkpoint under a banner and exits 0. ``--model tiny-random``
lets ``rerank`` and ``eval`` run offline. The library never swaps models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import vllm_server

from qwen3_rerank_core import ModelLoadError, Qwen3Reranker
from qwen3_rerank_core import offline as offline_mod
from qwen3_rerank_core.offline import HubUnreachableError, check_hub

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_CACHE = REPO_ROOT / ".cache" / "fixtures"
HUB_ID = "Qwen/Qwen3-Reranker-0.6B"
#: Seconds an offline failure may take (the hub check itself is ~0.1 s; imports are the rest).
FAST = 20.0


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose hub refuses connections and whose HF cache is empty."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.pop("QWEN3_RERANK_MODEL", None)
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{vllm_server.free_port()}",
        HF_HOME=str(tmp_path / "hf-home"),
        QWEN3_RERANK_CACHE=str(FIXTURE_CACHE),  # tiny-random: reuse the tests' build
    )
    return env


def run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
        timeout=300,
        check=False,
    )
    return proc, time.monotonic() - start


def assert_one_line_hub_error(stderr: str, model: str = HUB_ID) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "cannot be reached" in lines[0] or "switched off" in lines[0], stderr
    assert "--model /path/to/" in lines[0] and repr(model) in lines[0], stderr
    assert "Retry" not in stderr


# ----------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "command",
    [
        ["rerank", "capital of France?", "Paris.", "Berlin."],
        ["eval", "examples/data", "--max-queries", "1"],
    ],
    ids=["rerank", "eval"],
)
def test_cli_fails_fast_offline(command: list[str], offline_env: dict[str, str]) -> None:
    proc, seconds = run(["-m", "qwen3_rerank_core", *command], offline_env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("qwen3-rerank: error: HubUnreachableError:")
    assert_one_line_hub_error(proc.stderr)
    assert seconds < FAST


def test_cli_hf_hub_offline(offline_env: dict[str, str]) -> None:
    proc, _ = run(
        ["-m", "qwen3_rerank_core", "rerank", "q", "a", "--model", "Qwen/Qwen3-Reranker-8B"],
        {**offline_env, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert_one_line_hub_error(proc.stderr, "Qwen/Qwen3-Reranker-8B")
    assert "HF_HUB_OFFLINE" in proc.stderr


def test_cli_tiny_random_rerank_offline(offline_env: dict[str, str]) -> None:
    proc, _ = run(
        ["-m", "qwen3_rerank_core", "rerank", "capital of France?", "Paris.", "Berlin.",
         "--model", "tiny-random", "--format", "jsonl"],
        offline_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM-WEIGHT" in proc.stderr and "mean nothing" in proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == 2 and all('"score"' in row for row in rows)


def test_cli_tiny_random_eval_offline(offline_env: dict[str, str]) -> None:
    pytest.importorskip("bm25s")
    pytest.importorskip("ir_measures")
    proc, _ = run(
        ["-m", "qwen3_rerank_core", "eval", "examples/data", "--model", "tiny-random",
         "--max-queries", "2", "--depth", "5", "--format", "json"],
        offline_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM-WEIGHT" in proc.stderr
    assert '"nDCG@10"' in proc.stdout


def test_cli_missing_folder_is_still_the_folder_error(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    proc, _ = run(
        ["-m", "qwen3_rerank_core", "rerank", "q", "a", "--model", str(tmp_path / "no" / "model")],
        offline_env,
    )
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "cannot be reached" not in proc.stderr


# ------------------------------------------------------------------ examples
def test_quickstart_without_a_model_runs_on_tiny_random(offline_env: dict[str, str]) -> None:
    proc, _ = run(["examples/quickstart.py", "--top-n", "3"], offline_env)
    assert proc.returncode == 0, proc.stderr
    hub_lines = [line for line in proc.stderr.splitlines() if "cannot be reached" in line]
    assert len(hub_lines) == 1 and "--model /path/to/" in hub_lines[0]
    assert "Retry" not in proc.stderr
    assert "RANDOM-WEIGHT" in proc.stdout and "MEAN NOTHING" in proc.stdout
    assert "Model: tiny-random" in proc.stdout
    rows = proc.stdout.split("rank  index    score  document\n", 1)[1].strip().splitlines()
    assert len(rows) == 3


def test_quickstart_with_a_hub_id_fails_fast(offline_env: dict[str, str]) -> None:
    proc, seconds = run(
        ["examples/quickstart.py", "--model", "Qwen/Qwen3-Reranker-4B"], offline_env
    )
    assert proc.returncode == 2
    assert_one_line_hub_error(proc.stderr, "Qwen/Qwen3-Reranker-4B")
    assert "RANDOM" not in proc.stdout  # an explicit model is never replaced
    assert seconds < FAST


@pytest.mark.parametrize(
    "name",
    ["llama_index_query_engine", "langchain_compression_retriever", "two_stage_retrieval",
     "gradio_app"],
)  # fmt: skip
def test_examples_fail_fast_offline(name: str, offline_env: dict[str, str]) -> None:
    proc, _ = run([f"examples/{name}.py"], offline_env)
    assert proc.returncode == 2, proc.stderr
    assert_one_line_hub_error(proc.stderr.replace("error: ", "", 1))


def _quickstart_sh_ready() -> bool:
    """quickstart.sh skips its pip step only when .venv already serves this checkout."""
    python = REPO_ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        return False
    code = "import qwen3_rerank_core, pathlib; print(pathlib.Path(qwen3_rerank_core.__file__).resolve().parent.parent)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() == str(REPO_ROOT.resolve())


def test_quickstart_sh_offline(offline_env: dict[str, str]) -> None:
    if not _quickstart_sh_ready():
        pytest.skip(".venv does not serve this checkout: quickstart.sh would pip-install")
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", "scripts/quickstart.sh", "--top-n", "2"],
        capture_output=True, text=True, env=offline_env, cwd=str(REPO_ROOT), timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM-WEIGHT" in proc.stdout and "Retry" not in proc.stderr
    assert time.monotonic() - start < 120


# ------------------------------------------------------------------ library
def test_check_hub_unit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert check_hub(str(tmp_path)) is False  # a folder: nothing to check
    assert check_hub("./not/there") is False  # a path: the library's folder error
    monkeypatch.setattr(offline_mod, "hub_reachable", lambda timeout=0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert check_hub(HUB_ID) is False  # reachable: load as usual
    monkeypatch.setattr(offline_mod, "hub_reachable", lambda timeout=0: False)
    monkeypatch.setattr(offline_mod, "_cached", lambda model: True)
    assert check_hub(HUB_ID) is True  # unreachable but cached: local files only
    monkeypatch.setattr(offline_mod, "_cached", lambda model: False)
    with pytest.raises(HubUnreachableError) as info:
        check_hub(HUB_ID)
    assert isinstance(info.value, ModelLoadError)


def test_library_never_falls_back(tmp_path: Path) -> None:
    """The library raises for a missing model; it does not load tiny-random or anything else."""
    with pytest.raises(ModelLoadError, match="does not exist"):
        Qwen3Reranker(model=str(tmp_path / "missing")).load()
