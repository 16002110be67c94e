"""What the in-process A/B scripts (``attention_ab.py``, ``compile_ab.py``, ``pack_ab.py``,
``ragged_ab.py``) share: their
options, the bf16-saved benchmark checkpoint, one query of a workload, and interleaved
timing of two ways of scoring it."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def parse_args(
    doc: str | None,
    *,
    rounds: int,
    workload: str | None = None,
    save_dtypes: tuple[str, ...] = (),
    flags: dict[str, str] | None = None,
    dtype: bool = False,
) -> argparse.Namespace:
    """The command line of an A/B script (``doc``: its docstring, whose first paragraph
    describes it): the options every one takes, ``rounds`` timed rounds by default,
    ``--workload`` where ``workload`` (its default) is given, ``--save-dtype`` limited to
    ``save_dtypes`` where given, ``--dtype`` (ours' dtype; ``None``: our default) where
    ``dtype``, and the script's own on/off ``flags`` (name: help)."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--config", default="8x512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs-scale", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument(
        "--save-dtype",
        default="bfloat16",
        choices=save_dtypes or None,
        help="the checkpoint's saved dtype",
    )
    if workload is not None:
        p.add_argument("--workload", default=workload)
    if dtype:
        p.add_argument(
            "--dtype",
            default=None,
            choices=("float32", "bfloat16"),
            help="ours' dtype (default: our precision policy's choice)",
        )
    for name, text in (flags or {}).items():
        p.add_argument(f"--{name}", action="store_true", help=text)
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def checkpoint(args: argparse.Namespace) -> Path:
    """``args.threads`` torch threads, and the folder of ``args.config``'s checkpoint."""
    import torch
    from checkpoints import build_checkpoint

    torch.set_num_threads(args.threads)
    return build_checkpoint(
        args.config, seed=0, cache_dir=REPO / ".cache" / "fixtures", dtype=args.save_dtype
    )


def first_query(workload: str, tokenizer: Any, docs_scale: float) -> list[tuple[str, list[str]]]:
    """``workload``'s first query and its documents, as ``score_groups`` takes them."""
    return first_query_workload(workload, tokenizer, docs_scale).items


def first_query_workload(workload: str, tokenizer: Any, docs_scale: float) -> Any:
    """``workload`` cut to its first query (a :class:`workloads.Workload`, as the
    benchmark's contenders take it)."""
    from dataclasses import replace

    from workloads import WORKLOADS, make_workload

    wl = make_workload(WORKLOADS[workload], tokenizer, seed=0, docs_scale=docs_scale)
    return replace(wl, items=[wl.items[0]])


def scorer(
    backends: dict[str, Any], groups: list[tuple[str, list[str]]]
) -> tuple[Callable[[str], None], dict[str, list[float]]]:
    """A ``call(name)`` that scores ``groups`` (one query's) with ``backends[name]``, and the
    dict in which each call leaves its scores under ``name``."""
    from qwen3_rerank_core import DEFAULT_INSTRUCTION

    scores: dict[str, list[float]] = {}

    def call(name: str) -> None:
        scores[name] = list(backends[name].score_groups(groups, DEFAULT_INSTRUCTION)[0])

    return call, scores


def largest_difference(a: Sequence[float], b: Sequence[float]) -> float:
    """The largest ``|a[i] - b[i]|`` of two score lists of one length."""
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def interleaved(
    call: Callable[[str], Any], names: tuple[str, ...], rounds: int
) -> dict[str, float]:
    """The median seconds of ``call(name)`` for each of ``names``, over ``rounds``
    rounds that alternate their order (as given, then reversed)."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            call(name)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@dataclass(frozen=True)
class Race:
    """What :func:`race` measured."""

    medians: dict[str, float]
    """Median seconds of a call, by backend name (and ``"peer"`` where one took turns)."""
    max_diff: float
    """Largest score difference between the two backends."""


def race(
    backends: dict[str, Any],
    groups: list[tuple[str, list[str]]],
    rounds: int,
    peer: Callable[[], object] | None = None,
) -> Race:
    """Score ``groups`` with the two ``backends`` (and ``peer()``, where given) ``rounds``
    times each, alternating their order, after one warmup call each."""
    first, second = backends
    score, scores = scorer(backends, groups)

    def call(name: str) -> None:
        if name == "peer" and peer is not None:
            peer()
        else:
            score(name)

    names = (first, second, "peer") if peer is not None else (first, second)
    for name in names:
        call(name)
    medians = interleaved(call, names, rounds)
    return Race(medians, largest_difference(scores[first], scores[second]))


@contextlib.contextmanager
def st_peer(folder: str, dtype: Any, workload: Any) -> Iterator[Callable[[], object]]:
    """A call of sentence-transformers' ``CrossEncoder`` on ``workload``, loaded as the
    benchmark's ``st`` contender loads it, pinned to ``dtype`` (its folder removed on exit)."""
    from contenders import STContender

    name = str(dtype).removeprefix("torch.")
    spec = {"model_dir": folder, "device": "cpu", "dtype": name, "max_length": workload.max_length}
    contender = STContender(spec)
    contender.load()
    try:
        yield lambda: contender.score(workload)
    finally:
        contender.close()
