"""benchmarks/check_targets.py: the targets table from a benchmark result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "check_targets.py"


def _row(workload: str, contender: str, docs_per_s: float, diff: float) -> dict[str, Any]:
    return {
        "workload": workload,
        "contender": contender,
        "status": "ok",
        "docs_per_s": docs_per_s,
        "max_abs_diff": diff,
        "mfu": 0.4,
        "others_cpu": 0.01,
    }


def _run(config: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"config_name": config, "rows": rows}


def test_table_marks_each_target_and_the_deviation(tmp_path: Path) -> None:
    data = [
        _run(
            "mid",
            [
                _row("a", "ours", 70.0, 0.04),
                _row("a", "vllm-default", 50.0, 0.03),  # 1.40x >= 1.3x
                _row("a", "st", 30.0, 0.05),  # 2.33x >= 2x
                _row("a", "recipe", 4.0, 0.05),  # 17.5x >= 3x
                _row("b", "ours", 300.0, 0.09),
                _row("b", "vllm-default", 200.0, 0.01),  # 1.50x < 2x
                _row("b", "st", 100.0, 0.08),  # 3.00x >= 3x
                _row("b", "recipe", 20.0, 0.08),  # deviation 0.09 > 0.08
            ],
        ),
        _run("0.6b", [_row("a", "ours", 1.2, 0.01), _row("a", "vllm-default", 1.0, 0.01)]),
    ]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"reports": data}))  # as ``--config cpu-matrix`` writes it
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=True
    ).stdout
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in out.splitlines()}
    mid_a, mid_b, big = lines[("mid", "a")], lines[("mid", "b")], lines[("0.6b", "a")]
    assert "1.40x ok" in mid_a and "2.33x ok" in mid_a and "17.50x ok" in mid_a
    assert "4.0e-02 / 5.0e-02 ok" in mid_a
    assert "1.50x **miss** (< 2.0x)" in mid_b and "3.00x ok" in mid_b
    assert "9.0e-02 / 8.0e-02 **miss**" in mid_b
    # The 0.6B architecture's target against vLLM is 1.15x, and absent peers show "-".
    assert "1.20x ok" in big and big.count("| - |") >= 2


def test_table_for_another_row_of_ours(tmp_path: Path) -> None:
    rows = [
        _row("a", "ours", 60.0, 0.04),
        _row("a", "ours-compiled", 78.0, 0.04),
        _row("a", "vllm-default", 60.0, 0.03),
    ]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(_run("mid", rows)))

    def table(*extra: str) -> str:
        cmd = [sys.executable, str(SCRIPT), str(path), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    assert "| 60.0 | 1.00x **miss** (< 1.3x)" in table()
    assert "| 78.0 | 1.30x ok" in table("--ours", "ours-compiled")
