"""Ours eager against ours with ``compile=True``, in one process, interleaved.

Both rerankers load the same bf16-saved benchmark checkpoint at our default dtype; the
compiled one's first call (which compiles) is timed apart, then both score workload a's
first query ``--rounds`` times in alternating order, and the medians are printed.
Example::

    .venv/bin/python benchmarks/compile_ab.py --config 8x512 --docs-scale 0.3 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="8x512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs-scale", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--save-dtype", default="bfloat16", help="the checkpoint's saved dtype")
    args = p.parse_args()

    import torch
    from checkpoints import build_checkpoint
    from workloads import WORKLOADS, make_workload

    from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker

    torch.set_num_threads(args.threads)
    folder = build_checkpoint(
        args.config, seed=0, cache_dir=REPO / ".cache" / "fixtures", dtype=args.save_dtype
    )
    backends = {
        "eager": Qwen3Reranker(model=str(folder), device="cpu").load()._get_backend(),
        "compiled": Qwen3Reranker(model=str(folder), device="cpu", compile=True)
        .load()
        ._get_backend(),
    }
    tokenizer = backends["eager"]._tokenizer  # type: ignore[attr-defined]
    wl = make_workload(WORKLOADS["a"], tokenizer, seed=0, docs_scale=args.docs_scale)
    groups = [wl.items[0]]

    def call(name: str) -> float:
        start = time.perf_counter()
        backends[name].score_groups(groups, DEFAULT_INSTRUCTION)
        return time.perf_counter() - start

    print(f"first compiled call (compiles): {call('compiled'):.1f} s")
    call("eager")  # warmup
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(args.rounds):
        for name in ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager"):
            times[name].append(call(name))
    eager, compiled = (statistics.median(times[n]) for n in ("eager", "compiled"))
    print(
        f"{args.config}, {len(groups[0][1])} documents: eager {eager:.3f} s, compiled "
        f"{compiled:.3f} s, compiled / eager speed {eager / compiled:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
