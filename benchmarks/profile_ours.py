"""Where our transformers backend's time goes on workload a (torch.profiler + cProfile).

One warm ``score`` call timed, the tokenization alone, then one call under
``torch.profiler`` (ops by self CPU time, and their shares by kind: linear layers,
attention, element-wise) and one under ``cProfile`` (Python functions by own time);
20 documents of ~300 tokens. The profiled calls run the backend on this thread
(``score`` may hand the work to the cross-call batching thread, which the profiler
would not see). By default the checkpoint is saved in bfloat16, as the released ones
are, and loaded at our default dtype. Example::

    .venv/bin/python benchmarks/profile_ours.py --config 8x512 --threads 2 --docs-scale 0.3
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
    p.add_argument("--dtype", default="default", help="'default': our precision policy")
    p.add_argument("--save-dtype", default="bfloat16", help="the checkpoint's saved dtype")
    args = p.parse_args()

    import torch
    from checkpoints import build_checkpoint
    from torch.profiler import ProfilerActivity, profile
    from workloads import WORKLOADS, make_workload

    from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker

    torch.set_num_threads(args.threads)
    model_dir = build_checkpoint(
        args.config, seed=0, cache_dir=REPO / ".cache" / "fixtures", dtype=args.save_dtype
    )
    rr = Qwen3Reranker(
        model=str(model_dir),
        device="cpu",
        dtype=None if args.dtype == "default" else args.dtype,
        max_batch_tokens=args.max_batch_tokens,
    ).load()
    backend = rr._get_backend()
    print(f"dtype: {backend.dtype_choice.name} ({backend.dtype_choice.reason})")
    wl = make_workload(WORKLOADS["a"], backend._tokenizer, seed=0, docs_scale=args.docs_scale)
    query, docs = wl.items[0]

    def call() -> None:
        backend.score_groups([(query, docs)], DEFAULT_INSTRUCTION)

    call()  # warmup
    start = time.perf_counter()
    call()
    print(f"call: {time.perf_counter() - start:.2f} s ({len(docs)} docs)")
    start = time.perf_counter()
    backend.encoder.encode_group(DEFAULT_INSTRUCTION, query, docs)
    print(f"tokenization and prompt building alone: {time.perf_counter() - start:.3f} s")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=25))
    print_shares(events)
    prof_py = cProfile.Profile()
    prof_py.enable()
    call()
    prof_py.disable()
    out = io.StringIO()
    pstats.Stats(prof_py, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())
    rr.close()
    return 0


#: Ops by kind, for the shares table (everything else counts as element-wise and other).
KINDS = {
    "linear layers": ("mkldnn::_linear_pointwise", "aten::addmm", "aten::mm", "aten::linear"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
}


def print_shares(events: object) -> None:
    """Self CPU time of the profiled call by kind of op, as shares of the total."""
    times: dict[str, float] = {}
    for e in events:  # type: ignore[attr-defined]
        kind = next((k for k, ops in KINDS.items() if e.key in ops), "element-wise and other")
        times[kind] = times.get(kind, 0.0) + e.self_cpu_time_total
    total = sum(times.values()) or 1.0
    print("| kind of op | self CPU ms | share |\n|---|---|---|")
    for kind, t in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {t / 1e3:.0f} | {100 * t / total:.0f} % |")


if __name__ == "__main__":
    sys.exit(main())
