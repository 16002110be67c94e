"""Where our transformers backend's time goes on a workload (torch.profiler + cProfile).

One warm ``score`` call timed, the tokenization alone, then one call under
``torch.profiler`` (ops by self CPU time, and their shares by kind: linear layers,
attention, element-wise), one under ``cProfile`` (Python functions by own time) and one
with the lean forward's steps timed (:func:`time_by_step`);
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="mid")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-batch-tokens", type=int, default=None, help="default: automatic")
    p.add_argument("--docs-scale", type=float, default=0.2)
    p.add_argument("--workload", default="a", help="a workload of workloads.py (default: a)")
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
    wl = make_workload(
        WORKLOADS[args.workload], backend._tokenizer, seed=0, docs_scale=args.docs_scale
    )
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
    if backend._lean is not None:
        print_steps(time_by_step(call))
    rr.close()
    return 0


#: Ops by kind, for the shares table (everything else counts as element-wise and other). Our
#: CPU attention kernel runs outside torch's ops, unseen by the profiler: the step table
#: (:func:`time_by_step`) times it.
KINDS = {
    "linear layers": ("mkldnn::_linear_pointwise", "aten::addmm", "aten::mm", "aten::linear"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
}


#: The lean forward's steps timed by :func:`time_by_step`: (class, method, label).
STEPS = (
    ("LeanForward", "_attend", "attention (SDPA, or our CPU kernel)"),
    ("_SwiGLU", "__call__", "gate/up products + activation"),
    ("_Gated", "__call__", "gate/up products + activation"),
    ("_Linear", "__call__", "qkv, o, down products"),
    ("_Product", "__call__", "our kernel's products: qkv, gate/up + activation"),
    ("_Product", "into", "our kernel's products into the stream: o, down"),
    ("LeanForward", "_rounded", "values rounded to bf16 (our kernel's float32 results)"),
    ("LeanForward", "_norm_rotate", "q/k norm + rotary"),
    ("LeanForward", "_add_norm", "norms (the post-attention one with its residual add)"),
    ("LeanForward", "_residual_add", "residual adds"),
)


def time_by_step(call: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Wall seconds of one ``call`` and of each lean-forward step in it (:data:`STEPS`),
    the step methods wrapped with timers for that call only. A step called inside another
    (the gate/up product's ``_Linear`` inside ``_Gated``) counts for the outer one alone,
    so no time is counted twice."""
    from qwen3_rerank_core._backends import _lean

    spent: dict[str, float] = {label: 0.0 for _, _, label in STEPS}
    depth = [0]
    originals = []
    for cls_name, method, label in STEPS:
        cls = getattr(_lean, cls_name)
        original = getattr(cls, method)
        originals.append((cls, method, original))

        def timed(*a: Any, _f: Any = original, _label: str = label, **k: Any) -> Any:
            depth[0] += 1
            start = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[_label] += time.perf_counter() - start

        setattr(cls, method, timed)
    try:
        start = time.perf_counter()
        call()
        total = time.perf_counter() - start
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)
    return total, spent


def print_steps(timed: tuple[float, dict[str, float]]) -> None:
    """The table of :func:`time_by_step` (the rest: embedding, head, layouts, Python)."""
    total, spent = timed
    print("| step of the lean forward | ms | share |\n|---|---|---|")
    for label, seconds in [*spent.items(), ("the rest", total - sum(spent.values()))]:
        print(f"| {label} | {seconds * 1e3:.0f} | {100 * seconds / total:.0f} % |")
    print(f"| the whole call | {total * 1e3:.0f} | 100 % |")


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
