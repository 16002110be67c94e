"""Our backend on the lean forward against the same backend on the transformers forward.

Two ``TransformersBackend`` objects on one checkpoint in one process, the default (the lean
forward, ``qwen3_rerank_core/_backends/_lean.py``) and ``lean=False``; their
``score_groups`` calls alternate, and the best and the median of ``--repeat`` calls of each
are reported, with the scores' largest difference. Example::

    .venv/bin/python benchmarks/lean_vs_transformers.py --configs 12x256,8x512,2x1024 --repeat 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]

from checkpoints import build_checkpoint  # noqa: E402
from workloads import WORKLOADS, make_workload  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="12x256,8x512,2x1024")
    p.add_argument("--workloads", default="a,b")
    p.add_argument("--repeat", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs-scale", type=float, default=0.3)
    p.add_argument("--cache-dir", default=str(REPO / ".cache" / "fixtures"))
    args = p.parse_args(argv)
    import torch

    from qwen3_rerank_core import DEFAULT_INSTRUCTION, RerankConfig
    from qwen3_rerank_core._backends._transformers import TransformersBackend

    torch.set_num_threads(args.threads)
    print(
        "| config | workload | transformers best (s) | lean best (s) | x best | x median | max d |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.configs.split(","):
        folder = build_checkpoint(name, seed=0, cache_dir=Path(args.cache_dir))
        config = RerankConfig(model=str(folder), device="cpu", dtype="float32")
        backends = {
            "transformers": TransformersBackend(config, lean=False),
            "lean": TransformersBackend(config),
        }
        for wl_name in args.workloads.split(","):
            wl = make_workload(
                WORKLOADS[wl_name], backends["lean"]._tokenizer, seed=0, docs_scale=args.docs_scale
            )
            groups = [(q, list(d)) for q, d in wl.items]
            scores = {n: b.score_groups(groups, DEFAULT_INSTRUCTION) for n, b in backends.items()}
            times: dict[str, list[float]] = {n: [] for n in backends}
            for _ in range(args.repeat):
                for n, b in backends.items():
                    start = time.perf_counter()
                    b.score_groups(groups, DEFAULT_INSTRUCTION)
                    times[n].append(time.perf_counter() - start)
            diff = max(
                abs(x - y)
                for ra, rb in zip(scores["lean"], scores["transformers"], strict=True)
                for x, y in zip(ra, rb, strict=True)
            )
            hf, lean = times["transformers"], times["lean"]
            print(
                f"| {name} | {wl_name} | {min(hf):.3f} | {min(lean):.3f} | "
                f"{min(hf) / min(lean):.2f} | {statistics.median(hf) / statistics.median(lean):.2f}"
                f" | {diff:.1e} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
