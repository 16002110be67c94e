"""The concurrency workload (``e``): many callers sharing one local reranker (issue #22).

The 16 ``(query, documents)`` pairs of the workload are scored by 1, 8 and 16
concurrent callers (threads, or asyncio tasks), each taking the next pair and
calling ``score`` (``ascore``) on it until all are done; the reference is one
``score_many`` over the same pairs. For each mode: docs/s (best timed run), the
per-call latency (median and p95 over all timed runs), the backend calls per run
(merged batches), and the largest |difference| to each pair scored alone with
``score`` (``identical`` when it is 0).

Rows ``coalesce=off`` bypass cross-call batching (``Qwen3Reranker._coalescer``
set aside: every call runs its own forward passes, serialised by the backend's
lock, as before #22), for comparison.

Run by ``bench_rerank.py --workloads e`` (in a worker process, like the contenders).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from workloads import CALLERS, Workload

logger = logging.getLogger("bench_rerank")

Items = list[tuple[str, list[str]]]


@dataclass(frozen=True)
class Mode:
    """How the pairs are scored: ``runner`` is score_many, threads or asyncio."""

    runner: str
    callers: int
    coalesce: bool = True

    @property
    def name(self) -> str:
        if self.runner == "score_many":
            return "score_many"
        return f"{self.callers} {self.runner}" + ("" if self.coalesce else " (coalesce off)")


def modes(callers: Sequence[int] = CALLERS) -> list[Mode]:
    """score_many, then each caller count on threads and asyncio, with cross-call
    batching and without (1 caller: the latency the coalescer adds to a lone call)."""
    out = [Mode("score_many", 1)]
    out += [Mode(r, n) for n in callers for r in ("threads", "asyncio")]
    out += [Mode(r, n, coalesce=False) for n in callers for r in ("threads", "asyncio")]
    return out


def _pull(items: Items) -> Callable[[], tuple[int, tuple[str, list[str]]] | None]:
    """A thread-safe "next pair" (index and pair), ``None`` when all are taken."""
    lock = threading.Lock()
    state = [0]

    def take() -> tuple[int, tuple[str, list[str]]] | None:
        with lock:
            i = state[0]
            if i >= len(items):
                return None
            state[0] = i + 1
        return i, items[i]

    return take


def run_threads(rr: Any, items: Items, callers: int) -> tuple[list[list[float]], list[float]]:
    """Scores (in the pairs' order) and per-call latencies, ``callers`` threads."""
    scores: list[list[float]] = [[] for _ in items]
    latencies: list[float] = []
    take = _pull(items)
    start = threading.Barrier(callers)

    def caller() -> None:
        start.wait()
        while (job := take()) is not None:
            i, (query, docs) = job
            t0 = time.perf_counter()
            scores[i] = rr.score(query, docs)
            latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return scores, latencies


def run_tasks(rr: Any, items: Items, callers: int) -> tuple[list[list[float]], list[float]]:
    """Scores and per-call latencies, ``callers`` asyncio tasks on one event loop."""
    scores: list[list[float]] = [[] for _ in items]
    latencies: list[float] = []
    take = _pull(items)

    async def caller() -> None:
        while (job := take()) is not None:
            i, (query, docs) = job
            t0 = time.perf_counter()
            scores[i] = await rr.ascore(query, docs)
            latencies.append(time.perf_counter() - t0)

    async def main() -> None:
        await asyncio.gather(*(caller() for _ in range(callers)))

    asyncio.run(main())
    return scores, latencies


def _run(rr: Any, items: Items, mode: Mode) -> tuple[list[list[float]], list[float]]:
    if mode.runner == "score_many":
        t0 = time.perf_counter()
        scores = rr.score_many(items)
        return scores, [time.perf_counter() - t0]
    run = run_threads if mode.runner == "threads" else run_tasks
    coalescer = rr._coalescer
    if not mode.coalesce:
        rr._coalescer = None  # private: the path before cross-call batching
    try:
        return run(rr, items, mode.callers)
    finally:
        rr._coalescer = coalescer


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run_concurrency(spec: dict[str, Any]) -> dict[str, Any]:
    """Time every :func:`modes` on the workload of ``spec`` (one reranker for all)."""
    import torch

    from qwen3_rerank_core import Qwen3Reranker

    torch.set_num_threads(int(spec["threads"]))
    wl = Workload.from_json(spec["workloads"][0])
    items = [(q, list(d)) for q, d in wl.items]
    n_docs = wl.n_docs
    rr = Qwen3Reranker(
        model=spec["model_dir"],
        backend="transformers",
        device=spec["device"],
        dtype=spec["dtype"],
        max_length=wl.max_length,
    ).load()
    try:
        alone = [rr.score(q, d) for q, d in items]  # also the warm-up of the model
        all_modes = modes(spec.get("callers") or CALLERS)
        for _ in range(int(spec["warmup"])):
            for mode in all_modes:
                _run(rr, items, mode)
        runs: dict[Mode, list[tuple[float, list[float], int, float]]] = {m: [] for m in all_modes}
        load_before = os.getloadavg()[0]
        # Round robin (every mode once per round), so that other load on the machine
        # falls on all modes alike; each mode is also compared to score_many's run of
        # the same round ("paired").
        for i in range(max(1, int(spec["repeat"]))):
            for mode in all_modes:
                before = rr._coalescer.batches
                t0 = time.perf_counter()
                scores, lat = _run(rr, items, mode)
                elapsed = time.perf_counter() - t0
                calls = rr._coalescer.batches - before if mode.coalesce else len(items)
                diff = max(
                    abs(a - b)
                    for got, ref in zip(scores, alone, strict=True)
                    for a, b in zip(got, ref, strict=True)
                )
                runs[mode].append((elapsed, lat, calls, diff))
                logger.info("concurrency / %s: round %d %.2f s", mode.name, i + 1, elapsed)
        load_after = os.getloadavg()[0]
        many = runs[all_modes[0]]
        rows = []
        for mode, results in runs.items():
            times = [r[0] for r in results]
            latencies = [x for r in results for x in r[1]]
            paired = [m[0] / r[0] for m, r in zip(many, results, strict=True)]
            rows.append(
                {
                    "mode": mode.name,
                    "runner": mode.runner,
                    "callers": mode.callers,
                    "coalesce": mode.coalesce,
                    "n_docs": n_docs,
                    "times": times,
                    "docs_per_s": n_docs / min(times),
                    "median_s": statistics.median(times),
                    "x_score_many": min(many[k][0] for k in range(len(many))) / min(times),
                    "x_score_many_paired": statistics.median(paired),
                    "latency_p50_s": percentile(latencies, 0.5),
                    "latency_p95_s": percentile(latencies, 0.95),
                    "backend_calls": [r[2] for r in results],
                    "max_abs_diff_vs_alone": max(r[3] for r in results),
                }
            )
        return {
            "workload": wl.name,
            "description": wl.description,
            "loadavg": [load_before, load_after],
            "rows": rows,
        }
    finally:
        rr.close()


def concurrency_table(result: dict[str, Any], *, markdown: bool = False) -> str:
    """One line per mode: docs/s, share of score_many's, latency, backend calls, diff."""
    cells = [
        [
            "mode",
            "docs/s",
            "x score_many",
            "paired",
            "p50 latency s",
            "p95 latency s",
            "backend calls/run",
            "max |d| vs alone",
        ]
    ]
    for r in result["rows"]:
        cells.append(
            [
                r["mode"],
                f"{r['docs_per_s']:.2f}",
                f"{r['x_score_many']:.2f}",
                f"{r['x_score_many_paired']:.2f}",
                f"{r['latency_p50_s']:.3f}",
                f"{r['latency_p95_s']:.3f}",
                "/".join(map(str, r["backend_calls"])) if r["coalesce"] else "-",
                f"{r['max_abs_diff_vs_alone']:.1e}",
            ]
        )
    load = "/".join(f"{x:.1f}" for x in result["loadavg"])
    title = (
        f"concurrency ({result['workload']}: {result['description']}); x score_many: best "
        f"docs/s over score_many's best, paired: median over rounds of the ratio to the "
        f"same round's score_many; load average before/after {load}"
    )
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
        return title + "\n\n" + "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells[1:]])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    body = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )
    return title + "\n" + body
