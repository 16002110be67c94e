"""Peak memory of scoring ~8k-token documents with the transformers backend.

The performance issue's memory bound: 100 documents of ~8k tokens must complete
with memory bounded by the token budget (``max_batch_tokens``), not by the
number of documents. This script scores workload ``d``'s documents (1 query x N
documents of 7,600-8,000 tokens, seeded) on a random-weight checkpoint of the
benchmark's configs and prints wall time, docs/s, the peak RSS of the process
(CPU) and, on CUDA, the peak allocated GPU memory.

Run (CPU, the benchmark's ``mid`` config)::

    .venv/bin/python benchmarks/long_docs_memory.py --config mid --docs 100

On a GPU (0.6B architecture, bf16)::

    .venv/bin/python benchmarks/long_docs_memory.py --config 0.6b --device cuda --docs 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoints import build_checkpoint
from workloads import WORKLOADS, make_workload

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="mid")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--docs", type=int, default=100, help="documents of ~8k tokens")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="default: the library's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--cache-dir", default=str(REPO / ".cache" / "fixtures"))
    p.add_argument("--json", dest="json_out", default=None)
    args = p.parse_args()

    import torch
    from transformers import AutoTokenizer

    from qwen3_rerank_core import Qwen3Reranker

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = build_checkpoint(args.config, seed=args.seed, cache_dir=Path(args.cache_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    spec = dataclasses.replace(WORKLOADS["d"], docs_per_query=args.docs)
    workload = make_workload(spec, tokenizer, seed=args.seed)
    query, docs = workload.items[0]
    n_tokens = sum(len(x) for x in tokenizer(docs, add_special_tokens=False)["input_ids"])
    del tokenizer
    settings = {} if args.max_batch_tokens is None else {"max_batch_tokens": args.max_batch_tokens}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with Qwen3Reranker(
        model=str(model_dir),
        device=args.device,
        dtype=args.dtype,
        max_length=spec.max_length,
        show_progress=True,
        **settings,
    ) as rr:
        rr.load()
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        scores = rr.score(query, docs)
        wall = time.perf_counter() - t0
        # None in the config: the budget the backend chose for this device and model
        budget = rr.config.max_batch_tokens or getattr(rr._get_backend(), "_max_batch_tokens", None)
    result = {
        "config": args.config,
        "device": args.device,
        "documents": len(docs),
        "document_tokens": n_tokens,
        "max_batch_tokens": budget,
        "seconds": round(wall, 1),
        "docs_per_s": round(len(docs) / wall, 3),
        "peak_rss_mib_before_scoring": round(rss_before),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "scores_in_0_1": all(0.0 <= s <= 1.0 for s in scores),
        "torch": torch.__version__,
    }
    if args.device.startswith("cuda"):
        result["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
