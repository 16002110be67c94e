"""Sweep ``max_batch_tokens`` for our transformers backend alone, over model shapes.

The measurement behind the automatic CPU budget (``default_batch_tokens`` in
``qwen3_rerank_core/_backends/_transformers.py``): for each ``--configs`` shape
and each ``--budgets`` value, one ``score`` call over a workload, timed. The
budgets of one shape share one loaded model and run interleaved, round by
round (budget order rotated each round), so that a burst of load from other
processes hits every budget alike; the best of ``--repeat`` rounds is kept, and
every row is reported relative to the fastest budget of its shape. Both the
wall time and the process's CPU time are kept: on a machine shared with other
jobs, the CPU time of a 1-thread run (``--threads 1``) is the steadier measure
of the work a budget costs (time spent descheduled is not in it). Example::

    .venv/bin/python benchmarks/sweep_batch_tokens.py --configs mid,8x512,12x256,2x1024 \\
        --workloads a,b --budgets 256,512,1024,2048,4096,16384 --docs-scale 0.3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]

from checkpoints import build_checkpoint, full_config  # noqa: E402
from workloads import WORKLOADS, make_workload  # noqa: E402

logger = logging.getLogger("sweep")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="mid,8x512,12x256,2x1024")
    p.add_argument("--workloads", default="a,b")
    p.add_argument("--budgets", default="512,1024,2048,4096,16384")
    p.add_argument("--docs-scale", type=float, default=0.2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=str(REPO / ".cache" / "fixtures"))
    p.add_argument("--json", dest="json_out", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from qwen3_rerank_core import Qwen3Reranker

    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    rows: list[dict[str, Any]] = []
    for name in args.configs.split(","):
        model_dir = build_checkpoint(name, seed=args.seed, cache_dir=Path(args.cache_dir))
        cfg = full_config(name)
        rr = Qwen3Reranker(model=str(model_dir), device="cpu", dtype="float32").load()
        backend: Any = rr._get_backend()  # one model for all budgets (benchmark only)
        auto = backend._max_batch_tokens
        tok = backend._tokenizer
        for wl_name in args.workloads.split(","):
            wl = make_workload(WORKLOADS[wl_name], tok, seed=args.seed, docs_scale=args.docs_scale)
            (query, docs), *_ = wl.items
            candidates = [*budgets, *([] if auto in budgets else [0])]
            best = {b: float("inf") for b in candidates}
            best_cpu = dict(best)
            for rnd in range(args.repeat + 1):  # round 0 is the warmup
                order = list(candidates)
                order = order[rnd % len(order) :] + order[: rnd % len(order)]
                for b in order:
                    backend._max_batch_tokens = b or auto
                    start, cpu_start = time.perf_counter(), time.process_time()
                    rr.score(query, docs)
                    took = time.perf_counter() - start
                    cpu = time.process_time() - cpu_start
                    logger.info(
                        "%s / %s: budget %s round %d: %.2f s (CPU %.2f s)",
                        name,
                        wl_name,
                        b,
                        rnd,
                        took,
                        cpu,
                    )
                    if rnd:
                        best[b] = min(best[b], took)
                        best_cpu[b] = min(best_cpu[b], cpu)
            fastest = min(best.values())
            fastest_cpu = min(best_cpu.values())
            for b, t in best.items():
                row = {
                    "config": name,
                    "hidden": cfg["hidden_size"],
                    "layers": cfg["num_hidden_layers"],
                    "intermediate": cfg["intermediate_size"],
                    "workload": wl_name,
                    "n_docs": len(docs),
                    "budget": b or f"auto ({auto})",
                    "auto": auto,
                    "best_s": t,
                    "vs_fastest": t / fastest,
                    "best_cpu_s": best_cpu[b],
                    "cpu_vs_fastest": best_cpu[b] / fastest_cpu,
                    "loadavg": os.getloadavg()[0],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        rr.close()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
