"""Where our transformers backend's time goes on workload a (torch.profiler + cProfile).

One warm ``score`` call timed, the tokenization alone, then one call under
``torch.profiler`` (ops by self CPU time) and one under ``cProfile`` (Python
functions by own time); 20 documents of ~300 tokens. Example::

    .venv/bin/python benchmarks/profile_ours.py --config mid --threads 1 --max-batch-tokens 1024
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="mid")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-batch-tokens", type=int, default=None, help="default: automatic")
    p.add_argument("--docs-scale", type=float, default=0.2)
    args = p.parse_args()

    import torch
    from checkpoints import build_checkpoint
    from torch.profiler import ProfilerActivity, profile
    from workloads import WORKLOADS, make_workload

    from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker

    torch.set_num_threads(args.threads)
    model_dir = build_checkpoint(args.config, seed=0, cache_dir=REPO / ".cache" / "fixtures")
    rr = Qwen3Reranker(
        model=str(model_dir), device="cpu", dtype="float32", max_batch_tokens=args.max_batch_tokens
    ).load()
    backend = rr._get_backend()
    wl = make_workload(WORKLOADS["a"], backend._tokenizer, seed=0, docs_scale=args.docs_scale)
    query, docs = wl.items[0]
    rr.score(query, docs)  # warmup
    start = time.perf_counter()
    rr.score(query, docs)
    print(f"call: {time.perf_counter() - start:.2f} s ({len(docs)} docs)")
    start = time.perf_counter()
    backend.encoder.encode_group(DEFAULT_INSTRUCTION, query, docs)
    print(f"tokenization and prompt building alone: {time.perf_counter() - start:.3f} s")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        rr.score(query, docs)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    prof_py = cProfile.Profile()
    prof_py.enable()
    rr.score(query, docs)
    prof_py.disable()
    out = io.StringIO()
    pstats.Stats(prof_py, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())
    rr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
