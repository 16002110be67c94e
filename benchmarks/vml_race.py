"""Counts fresh processes whose float32 scores are off, with and without the VML warm-up.

torch's CPU unary ops go to oneMKL VML, which picks each function's kernel on its first
call; a first call shared by several threads can run one thread's chunk with a
low-accuracy kernel (pytorch/pytorch#188792). Our transformers backend calls each VML
function once on one thread before it scores (``qwen3_rerank_core._backends._vml``). This
script shows what that buys: it scores the same documents in ``--processes`` fresh
processes per condition, ``warm`` (the backend as shipped) and ``cold`` (the warm-up
skipped), while ``--busy`` processes keep the cores loaded (the race needs threads that
start late), and counts the processes whose p(yes) differ from a warm reference by more
than 1e-6 (float32 noise between processes is zero: the same prompts, batches and
threads). Example::

    .venv/bin/python benchmarks/vml_race.py --processes 40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

QUERY = "Can a landlord keep the whole deposit for minor wear and tear?"
DOCUMENTS = [
    "Landlords often keep deposits; tenants rarely win in court.",
    "The lessor shall return the deposit, less damage beyond normal use.",
    "My landlord kept all of my deposit for a scratch, is that legal?",
    "Normal wear and tear does not justify keeping a deposit.",
    "Deduction for repainting upheld where the tenant caused the damage.",
]
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Tally:
    """One condition's processes: how many, how many off, the largest deviation."""

    condition: str
    processes: int
    off: int
    worst: float


def score_in_this_process(model: str, *, warm: bool) -> list[float]:
    """p(yes) of :data:`DOCUMENTS` from a backend loaded here, with the VML warm-up
    skipped unless ``warm``."""
    from qwen3_rerank_core import Qwen3Reranker
    from qwen3_rerank_core._backends import _transformers

    if not warm:
        _transformers.resolve_vml_dispatch = lambda: None  # type: ignore[assignment]
    with Qwen3Reranker(model=model, dtype="float32", backend="transformers") as reranker:
        return reranker.score(QUERY, DOCUMENTS)


def scores_of_a_fresh_process(model: str, condition: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", condition, "--model", model],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    scores: list[float] = json.loads(out.stdout.splitlines()[-1])
    return scores


def tally(condition: str, deviations: list[float]) -> Tally:
    off = sum(d > TOLERANCE for d in deviations)
    return Tally(condition, len(deviations), off, max(deviations))


def busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes multiplying matrices on one thread each until killed."""
    loop = (
        "import torch\ntorch.set_num_threads(1)\na = torch.randn(1500, 1500)\nwhile True: a @ a\n"
    )
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-random", help="a local folder, or tiny-random")
    p.add_argument("--processes", type=int, default=40, help="fresh processes per condition")
    p.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="load processes")
    p.add_argument("--child", choices=("warm", "cold"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.processes < 1 or args.busy < 0:
        p.error(f"--processes must be >= 1 and --busy >= 0 (got {args.processes}, {args.busy})")
    if args.child:
        print(json.dumps(score_in_this_process(args.model, warm=args.child == "warm")))
        return 0
    model = args.model
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
    reference = scores_of_a_fresh_process(model, "warm")
    deviations: dict[str, list[float]] = {"warm": [], "cold": []}
    load = busy_loops(args.busy)
    try:
        for _ in range(args.processes):  # interleaved: both conditions see the same load
            for condition, seen in deviations.items():
                got = scores_of_a_fresh_process(model, condition)
                seen.append(max(abs(a - b) for a, b in zip(got, reference, strict=True)))
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    print(f"{args.busy} busy processes on {os.cpu_count()} CPUs; reference: a warm process")
    print("| condition | processes | off by > 1e-6 | largest abs(p - reference) |")
    print("|---|---|---|---|")
    for t in (tally(c, d) for c, d in deviations.items()):
        print(f"| {t.condition} | {t.processes} | {t.off} | {t.worst:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
