"""Ours in float32 against ours in bfloat16 on this CPU, in one process, interleaved: does
the precision policy pick the faster one?

On the CPU, ``dtype=None`` runs a bf16-saved checkpoint in bf16 only where the CPU
computes bf16 natively (AVX-512 BF16 or AMX), else in float32 (``docs/scoring.md``). This
script loads the bf16-saved benchmark checkpoint twice, pinned to each dtype, scores a
workload's first query with each in alternating order, and prints both medians, the
policy's choice with its reason, and whether that choice is the faster dtype here.
Example::

    .venv/bin/python benchmarks/dtype_ab.py --config mid --workload a --docs-scale 0.3
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab

DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Comparison:
    seconds: dict[str, float]
    """Median seconds of a call in each dtype."""
    policy: str
    """The dtype ``dtype=None`` runs this checkpoint in on this CPU."""
    reason: str
    """The policy's reason, as the load log gives it."""
    documents: int
    """Documents a call scores."""

    @property
    def faster(self) -> str:
        """The dtype with the lower median."""
        return min(self.seconds, key=self.seconds.__getitem__)

    @property
    def speedup(self) -> float:
        """The policy's dtype's speed over the other's (below 1: it chose the slower)."""
        other = next(dt for dt in self.seconds if dt != self.policy)
        return self.seconds[other] / self.seconds[self.policy]


def compare(folder: Path, workload: str, docs_scale: float, rounds: int) -> Comparison:
    """Score ``workload``'s first query on the checkpoint in ``folder`` pinned to each of
    :data:`DTYPES`, ``rounds`` times each, alternating which goes first, after one warmup
    call each."""
    from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker
    from qwen3_rerank_core._precision import planned_dtype

    choice = planned_dtype(None, "cpu", str(folder), local_files_only=True)
    backends = {
        dt: Qwen3Reranker(model=str(folder), device="cpu", dtype=dt).load()._get_backend()
        for dt in DTYPES
    }
    try:
        tokenizer = backends[DTYPES[0]]._tokenizer  # type: ignore[attr-defined]
        groups = ab.first_query(workload, tokenizer, docs_scale)

        def call(dt: str) -> None:
            backends[dt].score_groups(groups, DEFAULT_INSTRUCTION)

        for dt in DTYPES:
            call(dt)  # warmup
        medians = ab.interleaved(call, DTYPES, rounds)
    finally:
        for backend in backends.values():
            backend.close()
    return Comparison(medians, choice.name, choice.reason, len(groups[0][1]))


def main() -> int:
    # bf16-saved only: the policy's case (a float32-saved checkpoint stays float32)
    args = ab.parse_args(__doc__, rounds=3, workload="a", save_dtypes=("bfloat16",))

    result = compare(ab.checkpoint(args), args.workload, args.docs_scale, args.rounds)
    n = result.documents
    print(
        f"{args.config} {args.workload}, {n} documents, {args.threads} threads: "
        + ", ".join(f"{dt} {s:.3f} s ({n / s:.1f} docs/s)" for dt, s in result.seconds.items())
    )
    verdict = "the faster" if result.policy == result.faster else "NOT the faster"
    print(
        f"policy (dtype=None): {result.policy}, {verdict} here ({result.speedup:.2f}x the "
        f"other); {result.reason}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
