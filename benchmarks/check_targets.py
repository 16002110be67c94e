"""The bf16 speed and accuracy targets, checked against a ``bench_rerank.py --json`` result.

Reads the rows of a defaults run (``--dtype default``, every contender at its own
defaults) and prints one markdown table: per config and workload, ours (defaults) against
vLLM-CPU at its defaults (``vllm-default``), sentence-transformers and the model-card
recipe, our largest deviation from the float32 recipe beside the recipe's own bf16 run,
and which target holds (``--ours ours-compiled``: the same for ``compile=True``). Example::

    .venv/bin/python benchmarks/check_targets.py benchmarks/results/cpu-matrix-defaults-2026-12-05.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """``ours / contender >= ratio`` on ``workload`` and ``config`` (``None``: every one)."""

    contender: str
    ratio: float
    workload: str | None = None
    config: str | None = None

    def applies(self, contender: str, workload: str, config: str) -> bool:
        return (
            self.contender == contender
            and self.workload in (None, workload)
            and self.config in (None, config)
        )


#: The bf16 issue's targets: ~300-token documents (workload a) and short ones (b). The
#: first that applies counts, so a config's own target comes before the general one: on
#: the 0.6B architecture the target against vLLM is 1.15x (it is compute-bound).
TARGETS = (
    Target("vllm-default", 1.15, "a", config="0.6b"),
    Target("vllm-default", 1.3, "a"),
    Target("vllm-default", 2.0, "b"),
    Target("st", 2.0, "a"),
    Target("st", 3.0, "b"),
    Target("recipe", 3.0),
)
#: Our largest deviation from the float32 recipe may exceed the recipe's bf16 run's by this.
DEVIATION_SLACK = 1e-5


def _runs(data: Any) -> list[dict[str, Any]]:
    """The reports of ``data``: one config's report, or ``{"reports": [...]}`` (a matrix)."""
    if isinstance(data, dict) and "reports" in data:
        return list(data["reports"])
    return data if isinstance(data, list) else [data]


def _rows(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["workload"], r["contender"]): r for r in run["rows"] if r.get("status") == "ok"}


def _ratio_cell(ours: dict[str, Any], other: dict[str, Any] | None, want: float | None) -> str:
    if other is None:
        return "-"
    ratio = ours["docs_per_s"] / other["docs_per_s"]
    if want is None:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x {'ok' if ratio >= want else f'**miss** (< {want}x)'}"


def _want(contender: str, workload: str, config: str) -> float | None:
    return next((t.ratio for t in TARGETS if t.applies(contender, workload, config)), None)


def table(data: Any, ours_row: str = "ours") -> str:
    """The markdown table of every config and workload of ``data``, for our row
    ``ours_row`` (``ours``: defaults; ``ours-compiled``: ``compile=True``)."""
    lines = [
        "| config | workload | ours docs/s | vs vLLM defaults | vs sentence-transformers "
        "| vs recipe (bf16) | max \\|d\\| ours / recipe bf16 | ours MFU | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in _runs(data):
        config = run["config_name"]
        rows = _rows(run)
        for workload in sorted({w for w, _ in rows}):
            ours = rows.get((workload, ours_row))
            if ours is None:
                continue
            cells = [
                _ratio_cell(ours, rows.get((workload, c)), _want(c, workload, config))
                for c in ("vllm-default", "st", "recipe")
            ]
            recipe = rows.get((workload, "recipe"))
            dev = "-"
            if recipe is not None and ours.get("max_abs_diff") is not None:
                ok = ours["max_abs_diff"] <= recipe["max_abs_diff"] + DEVIATION_SLACK
                dev = (
                    f"{ours['max_abs_diff']:.1e} / {recipe['max_abs_diff']:.1e} "
                    f"{'ok' if ok else '**miss**'}"
                )
            mfu = f"{100 * ours['mfu']:.0f} %" if ours.get("mfu") is not None else "-"
            others = max(
                (r.get("others_cpu") or 0.0) for (w, _), r in rows.items() if w == workload
            )
            lines.append(
                f"| {config} | {workload} | {ours['docs_per_s']:.1f} | "
                + " | ".join(cells)
                + f" | {dev} | {mfu} | {100 * others:.0f} % |"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a bench_rerank.py --json file")
    p.add_argument(
        "--ours", default="ours", help="our row: ours (defaults), ours-compiled, ours-tuned"
    )
    args = p.parse_args()
    print(table(json.loads(args.results.read_text()), args.ours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
