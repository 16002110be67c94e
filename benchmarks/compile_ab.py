"""Ours eager against ours with ``compile=True``, in one process, interleaved.

Both rerankers load the same bf16-saved benchmark checkpoint at our default dtype; the
compiled one's first call (which compiles) is timed apart, then both score workload a's
first query ``--rounds`` times in alternating order, and the medians are printed.
Example::

    .venv/bin/python benchmarks/compile_ab.py --config 8x512 --docs-scale 0.3 --rounds 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ab.add_arguments(p, rounds=7)
    args = p.parse_args()

    from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker

    folder = ab.checkpoint(args)
    backends = {
        "eager": Qwen3Reranker(model=str(folder), device="cpu").load()._get_backend(),
        "compiled": Qwen3Reranker(model=str(folder), device="cpu", compile=True)
        .load()
        ._get_backend(),
    }
    tokenizer = backends["eager"]._tokenizer  # type: ignore[attr-defined]
    groups = ab.first_query("a", tokenizer, args.docs_scale)

    def call(name: str) -> None:
        backends[name].score_groups(groups, DEFAULT_INSTRUCTION)

    start = time.perf_counter()
    call("compiled")
    print(f"first compiled call (compiles): {time.perf_counter() - start:.1f} s")
    call("eager")  # warmup
    medians = ab.interleaved(call, ("eager", "compiled"), args.rounds)
    eager, compiled = medians["eager"], medians["compiled"]
    print(
        f"{args.config}, {len(groups[0][1])} documents: eager {eager:.3f} s, compiled "
        f"{compiled:.3f} s, compiled / eager speed {eager / compiled:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
