"""Call statistics of a :class:`~qwen3_rerank_core.Qwen3Reranker`: :class:`RerankStats`.

Two parts, both thread-safe:

- :class:`BackendCounters`: what only a backend knows (prompt tokens, documents cut
  to ``max_length``, forward passes). The facade attaches one to its backend
  (:func:`attach_counters`); a backend adds to it through :func:`counters_of`, which
  gives a detached one to a backend built outside a reranker, so backends never check.
- :class:`StatsRecorder`: what the facade knows (calls, documents, cache hits and
  misses, seconds in the model, call latencies); :meth:`StatsRecorder.snapshot`
  joins both into one frozen :class:`RerankStats`.

Example::

    >>> recorder = StatsRecorder()
    >>> recorder.record_call(documents=3, seconds=0.5, hits=1, misses=2)
    >>> recorder.counters.add(prompt_tokens=120, forward_passes=1)
    >>> s = recorder.snapshot()
    >>> (s.calls, s.documents, s.cache_hits, s.cache_misses, s.prompt_tokens, s.forward_passes)
    (1, 3, 1, 2, 120, 1)
    >>> s.latency_p50
    0.5
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "LATENCY_WINDOW",
    "BackendCounters",
    "RerankStats",
    "StatsRecorder",
    "attach_counters",
    "count_requests",
    "counters_of",
]

R = TypeVar("R")

#: How many of the latest call latencies the percentiles are computed over.
LATENCY_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class RerankStats:
    """A snapshot of a reranker's statistics since it was built (``reranker.stats()``).

    Counts are totals over every scoring call (``score``, ``rerank``, their ``*_many``
    and async forms); an empty call counts as a call of 0 documents.
    """

    calls: int = 0
    """Scoring calls made."""
    documents: int = 0
    """Documents asked for, cached or not (duplicates counted each time)."""
    prompt_tokens: int = 0
    """Tokens in the prompts the backend scored (cached documents cost none); 0 on the
    remote backend, whose server tokenizes."""
    truncated_documents: int = 0
    """Documents whose prompt was cut to ``max_length`` (a prompt filling it exactly
    counts too); 0 on the remote backend."""
    forward_passes: int = 0
    """Model runs: batches and shared-prefix runs (transformers), ``LLM.classify``
    calls (vllm), scoring requests (remote; the server may batch them further)."""
    cache_hits: int = 0
    """Documents whose score came from the cache (0 without ``cache``)."""
    cache_misses: int = 0
    """Documents looked up in the cache and not found, so scored (0 without ``cache``)."""
    model_seconds: float = 0.0
    """Seconds the calls spent in the backend, waiting for the model included (under
    cross-call batching a call waits for the running batch); summed over concurrent calls."""
    latency_p50: float | None = None
    """Median call latency in seconds over the last :data:`LATENCY_WINDOW` calls
    (``None`` before the first call)."""
    latency_p95: float | None = None
    """95th percentile call latency in seconds, as ``latency_p50``."""

    @property
    def cache_hit_rate(self) -> float | None:
        """``cache_hits / (cache_hits + cache_misses)``; ``None`` when nothing was looked up."""
        looked_up = self.cache_hits + self.cache_misses
        return self.cache_hits / looked_up if looked_up else None

    def as_dict(self) -> dict[str, Any]:
        """The fields (and ``cache_hit_rate``) as a plain dict, e.g. for a log line or JSON."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        out["cache_hit_rate"] = self.cache_hit_rate
        return out

    def summary(self) -> str:
        """One line for humans (the CLI's ``--verbose`` report)."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.1f} ms"

        return (
            f"{self.calls} call(s), {self.documents} document(s), "
            f"{self.prompt_tokens} prompt token(s), {self.truncated_documents} truncated, "
            f"{self.forward_passes} forward pass(es), cache {self.cache_hits} hit(s) / "
            f"{self.cache_misses} miss(es), {self.model_seconds:.3f} s in the model, "
            f"latency p50 {ms(self.latency_p50)}, p95 {ms(self.latency_p95)}"
        )


class BackendCounters:
    """What a backend adds to the statistics; thread-safe."""

    __slots__ = ("_lock", "forward_passes", "prompt_tokens", "truncated_documents")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.prompt_tokens = 0
        self.truncated_documents = 0
        self.forward_passes = 0

    def add(
        self, *, prompt_tokens: int = 0, truncated_documents: int = 0, forward_passes: int = 0
    ) -> None:
        """Add to the counts."""
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.truncated_documents += truncated_documents
            self.forward_passes += forward_passes

    def add_prompts(self, lengths: Sequence[int], max_length: int) -> None:
        """Count prompts of ``lengths`` tokens (those at ``max_length`` as truncated)."""
        self.add(
            prompt_tokens=sum(lengths),
            truncated_documents=sum(1 for n in lengths if n >= max_length),
        )

    def values(self) -> tuple[int, int, int]:
        """``(prompt_tokens, truncated_documents, forward_passes)``, read together."""
        with self._lock:
            return self.prompt_tokens, self.truncated_documents, self.forward_passes


_ATTR = "_qwen3_rerank_counters"
_ATTACH_LOCK = threading.Lock()


def attach_counters(backend: object, counters: BackendCounters) -> None:
    """Make ``backend`` add to ``counters`` (the facade does it when it builds one)."""
    with contextlib.suppress(AttributeError):  # a backend with __slots__: not counted
        setattr(backend, _ATTR, counters)


def counters_of(backend: object) -> BackendCounters:
    """The counters a backend adds to: the attached ones, else its own detached ones."""
    counters = getattr(backend, _ATTR, None)
    if isinstance(counters, BackendCounters):
        return counters
    with _ATTACH_LOCK:
        counters = getattr(backend, _ATTR, None)
        if not isinstance(counters, BackendCounters):
            counters = BackendCounters()
            attach_counters(backend, counters)
        return counters


def count_requests(
    steps: Generator[list[Any], Any, R], counters: BackendCounters
) -> Generator[list[Any], Any, R]:
    """``steps`` (a remote program: lists of HTTP calls) unchanged, counting each call
    that scores documents (``call.count > 0``) as a forward pass."""
    try:
        calls = next(steps)
        while True:
            counters.add(forward_passes=sum(1 for c in calls if getattr(c, "count", 0) > 0))
            calls = steps.send((yield calls))
    except StopIteration as stop:
        result: R = stop.value
        return result


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile of sorted, non-empty ``ordered``."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class StatsRecorder:
    """The facade's side of the statistics; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = BackendCounters()
        self._calls = 0
        self._documents = 0
        self._hits = 0
        self._misses = 0
        self._model_seconds = 0.0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record_model(self, seconds: float) -> None:
        """Add time spent in the backend."""
        with self._lock:
            self._model_seconds += seconds

    def record_call(
        self, *, documents: int, seconds: float, hits: int = 0, misses: int = 0
    ) -> None:
        """Count one finished call of ``documents`` documents taking ``seconds``."""
        with self._lock:
            self._calls += 1
            self._documents += documents
            self._hits += hits
            self._misses += misses
            self._latencies.append(seconds)

    def snapshot(self) -> RerankStats:
        """The statistics now, as one frozen :class:`RerankStats`."""
        prompt_tokens, truncated, passes = self.counters.values()
        with self._lock:
            ordered = sorted(self._latencies)
            return RerankStats(
                calls=self._calls,
                documents=self._documents,
                prompt_tokens=prompt_tokens,
                truncated_documents=truncated,
                forward_passes=passes,
                cache_hits=self._hits,
                cache_misses=self._misses,
                model_seconds=self._model_seconds,
                latency_p50=_percentile(ordered, 0.50) if ordered else None,
                latency_p95=_percentile(ordered, 0.95) if ordered else None,
            )
