"""The public facade: :class:`Qwen3Reranker`."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

from ._backends import Backend, Group, backend_spec, create_backend
from ._cache import CacheLookup, model_identity, open_cache
from ._coalesce import Coalescer
from ._config import RerankConfig
from ._fusion import FusedScore, Fusion, FusionInputs, prepare_call, prepare_fusion_many
from ._prompt import DEFAULT_INSTRUCTION
from ._stats import RerankStats, StatsRecorder, attach_counters
from ._validation import (
    _preview,
    check_documents,
    check_instruction,
    check_min_score,
    check_query,
    check_sequence,
    check_top_n,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Qwen3Reranker", "RankOptions", "RerankResult"]

logger = logging.getLogger("qwen3_rerank_core")


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One ranked document: its position in the input, its score and the caller's string."""

    index: int
    """Position of the document in the list that was passed in."""
    score: float
    """p(yes) in [0, 1]."""
    document: str
    """The caller's document string (the same object, never a truncated copy), as it was
    when the call started."""
    fusion: FusedScore | None = None
    """With ``fusion=``: the fused score and its parts (results are ordered by
    ``fusion.fused``); ``None`` otherwise (results are ordered by ``score``)."""

    @property
    def fused_score(self) -> float:
        """The score the results are ordered by: ``fusion.fused``, or ``score`` without fusion."""
        return self.score if self.fusion is None else self.fusion.fused


def rank(
    scores: Sequence[float],
    documents: Sequence[str],
    *,
    top_n: int | None = None,
    min_score: float | None = None,
    fusion: FusionInputs | None = None,
) -> list[RerankResult]:
    """Sort by score (or fused score) descending (ties: lower input index first), then
    apply ``min_score`` (on the score, p(yes)) and ``top_n``."""
    if fusion is None:
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        results = [RerankResult(i, scores[i], documents[i]) for i in order]
    else:
        order, fused = fusion.order(scores)
        results = [RerankResult(i, scores[i], documents[i], fused[i]) for i in order]
    if min_score is not None:
        results = [r for r in results if r.score >= min_score]
    if top_n is not None:
        results = results[:top_n]
    return results


class RankOptions(TypedDict, total=False):
    """The keywords of :meth:`Qwen3Reranker.rerank` and :meth:`~Qwen3Reranker.arerank`."""

    top_n: int | None
    """Keep the best ``top_n`` results (``None``: all)."""
    min_score: float | None
    """Drop results whose p(yes) is below it (``None``: keep all)."""
    instruction: str | None
    """Task instruction for this call (``None``: the configured one)."""
    fusion: Fusion | None
    """Hybrid ranking: order by the fused score of ``docs/hybrid.md`` (``None``: by p(yes))."""
    first_stage_scores: Sequence[float] | None
    """With ``fusion``: one first-stage score per document (``None``: the input order is the rank)."""
    signals: Mapping[str, Sequence[float | bool]] | None
    """With ``fusion``: named caller signals, one value per document."""


@dataclass(frozen=True, slots=True)
class _RankCall:
    """A ``rerank`` call's checked options: what to rank and how."""

    groups: list[Group]
    instruction: str
    top_n: int | None
    min_score: float | None
    fusion: FusionInputs | None

    def ranked(self, scores: Sequence[float]) -> list[RerankResult]:
        # Rank the validated snapshot, not the caller's list: it may change while the
        # model runs (another thread or task), which must not misalign results.
        documents = self.groups[0][1]
        return rank(
            scores, documents, top_n=self.top_n, min_score=self.min_score, fusion=self.fusion
        )


def _check_rank_options(options: Mapping[str, object], method: str) -> None:
    unknown = sorted(set(options) - set(RankOptions.__annotations__))
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(unknown)}")


class Qwen3Reranker:
    """Scores (query, document) pairs with a Qwen3-Reranker model.

    The score of a document is p(yes) = softmax([logit_no, logit_yes])[1], the
    model's probability that the document meets the query and instruction; it
    is the same on every backend. The model is loaded on first use (or by
    :meth:`load`), so building the object is cheap.

    Args:
        config: a :class:`RerankConfig`, or a model id/folder as a string.
        backend_options: objects for the backend's constructor that are not
            settings: for ``remote``, ``transport=`` (e.g. ``httpx.MockTransport``),
            ``http_client=`` / ``async_http_client=`` (your own ``httpx`` clients,
            never closed by the reranker); for ``vllm``, ``llm=`` (an existing
            ``vllm.LLM``) or extra ``vllm.LLM`` keyword arguments.
        **settings: any :class:`RerankConfig` field (``model``, ``backend``,
            ``instruction``, ``max_length``, ``device``, ``dtype``, ...); with
            ``config`` given, they override its values. Unknown names are
            rejected.

    Example::

        >>> from qwen3_rerank_core import Qwen3Reranker
        >>> with Qwen3Reranker(model="Qwen/Qwen3-Reranker-0.6B") as rr:  # doctest: +SKIP
        ...     results = rr.rerank("capital of France?", ["Berlin is ...", "Paris is ..."])
        >>> [(r.index, r.document) for r in results]  # best first; score in r.score  # doctest: +SKIP
    """

    def __init__(
        self,
        config: RerankConfig | str | None = None,
        /,
        *,
        backend_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        if isinstance(config, str):
            settings = {"model": config, **settings}
            config = None
        if config is None:
            self._config = RerankConfig.from_dict(settings)
        elif isinstance(config, RerankConfig):
            self._config = config.replace(**settings) if settings else config
        else:
            # The value is not shown: settings (a dict, ...) may hold the api_key.
            hint = "; pass settings as keywords: Qwen3Reranker(**settings)"
            raise TypeError(
                f"config must be a RerankConfig, a model name or None, "
                f"got {type(config).__name__}{hint if isinstance(config, Mapping) else ''}"
            )
        self._backend_options = dict(backend_options or {})
        self._backend: Backend | None = None
        self._coalescer: Coalescer | None = None  # cross-call batching (local backends)
        self._lock = threading.Lock()
        self._closed = False
        self._stats = StatsRecorder()
        # The score cache (docs/serving.md); its store opens on first use.
        self._cache = open_cache(self._config, functools.partial(model_identity, self._config))

    # ------------------------------------------------------------------ state
    @property
    def config(self) -> RerankConfig:
        """The frozen settings of this reranker."""
        return self._config

    @property
    def default_instruction(self) -> str:
        """The instruction used when a call gives none."""
        return self._config.instruction or DEFAULT_INSTRUCTION

    def __repr__(self) -> str:
        return f"Qwen3Reranker(model={self._config.model!r}, backend={self._config.backend!r})"

    def load(self) -> Qwen3Reranker:
        """Load the model now instead of on first use; returns ``self``."""
        self._get_backend()
        return self

    def _get_backend(self) -> Backend:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        backend = self._backend
        if backend is None:
            with self._lock:
                if self._backend is None:
                    logger.info(
                        "loading %s on the %s backend", self._config.model, self._config.backend
                    )
                    created = create_backend(self._config, **self._backend_options)
                    attach_counters(created, self._stats.counters)
                    if self._config.coalesce_calls and backend_spec(self._config.backend).coalesce:
                        self._coalescer = Coalescer(
                            functools.partial(
                                created.score_groups, show_progress=self._config.show_progress
                            ),
                            caller_setup=created.caller_setup,
                        )
                    self._backend = created
                backend = self._backend
        return backend

    def close(self) -> None:
        """Release the model or connections. Idempotent."""
        with self._lock:
            backend, self._backend = self._backend, None
            coalescer, self._coalescer = self._coalescer, None
            self._closed = True
        if coalescer is not None:
            coalescer.close()
        if self._cache is not None:
            self._cache.close()
        if backend is not None:
            backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        with self._lock:
            backend, self._backend = self._backend, None
            coalescer, self._coalescer = self._coalescer, None
            self._closed = True
        if coalescer is not None:
            await asyncio.to_thread(coalescer.close)  # waits for the running batch
        if self._cache is not None:
            self._cache.close()
        if backend is not None:
            await backend.aclose()

    def __enter__(self) -> Qwen3Reranker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Qwen3Reranker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------- validation
    def _prepare(
        self, items: Sequence[tuple[object, object]], instruction: object
    ) -> tuple[list[Group], str]:
        instr = self.default_instruction if instruction is None else check_instruction(instruction)
        groups: list[Group] = []
        for query, documents in items:
            groups.append((check_query(query), check_documents(documents)))
        return groups, instr

    @staticmethod
    def _check_items(items: object) -> list[tuple[object, object]]:
        pairs = check_sequence(items, name="items", what="a sequence of (query, documents) pairs")
        for i, item in enumerate(pairs):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(
                    f"items[{i}] must be a (query, documents) pair, got {_preview(item)}"
                )
        return [(query, documents) for query, documents in pairs]

    @staticmethod
    def _check_scores(groups: Sequence[Group], scores: list[list[float]]) -> list[list[float]]:
        """``scores`` if the backend gave one p(yes) in [0, 1] per document of each group."""
        if len(scores) != len(groups):
            raise RuntimeError(f"backend returned {len(scores)} groups for {len(groups)}")
        for (_, docs), group_scores in zip(groups, scores, strict=True):
            if len(group_scores) != len(docs):
                raise RuntimeError(
                    f"backend returned {len(group_scores)} scores for {len(docs)} documents"
                )
            for s in group_scores:
                if not (math.isfinite(s) and 0.0 <= s <= 1.0):
                    raise RuntimeError(f"backend returned an invalid score {s!r}")
        return scores

    def _score_groups(self, groups: list[Group], instruction: str) -> list[list[float]]:
        """The backend's scores of non-empty ``groups``; on a local backend, batched with
        the concurrent calls (:class:`~._coalesce.Coalescer`)."""
        backend = self._get_backend()
        coalescer = self._coalescer
        if coalescer is not None:
            return coalescer.submit(groups, instruction)
        return backend.score_groups(groups, instruction, show_progress=self._config.show_progress)

    async def _ascore_groups(self, groups: list[Group], instruction: str) -> list[list[float]]:
        """Async :meth:`_score_groups`; never blocks the event loop."""
        backend = self._get_backend()
        coalescer = self._coalescer
        if coalescer is not None:
            return await coalescer.asubmit(groups, instruction)
        return await backend.ascore_groups(
            groups, instruction, show_progress=self._config.show_progress
        )

    # Around the backend: the score cache (look up first, score only the misses, store
    # them) and the statistics (stats()).
    def _run(self, groups: list[Group], instruction: str) -> list[list[float]]:
        started = time.perf_counter()
        todo = [g for g in groups if g[1]]
        lookup = self._lookup(todo, instruction)
        misses = todo if lookup is None else lookup.missing(todo)
        fresh: list[list[float]] = []
        if misses:
            t0 = time.perf_counter()
            fresh = self._check_scores(misses, self._score_groups(misses, instruction))
            self._stats.record_model(time.perf_counter() - t0)
            if lookup is not None and self._cache is not None:
                self._cache.put(lookup, fresh)
        return self._finish(groups, lookup, fresh, started)

    async def _arun(self, groups: list[Group], instruction: str) -> list[list[float]]:
        started = time.perf_counter()
        todo = [g for g in groups if g[1]]
        lookup = None
        if todo and self._cache is not None:  # store I/O off the event loop
            lookup = await asyncio.to_thread(self._lookup, todo, instruction)
        misses = todo if lookup is None else lookup.missing(todo)
        fresh: list[list[float]] = []
        if misses:
            t0 = time.perf_counter()
            fresh = self._check_scores(misses, await self._ascore_groups(misses, instruction))
            self._stats.record_model(time.perf_counter() - t0)
            if lookup is not None and self._cache is not None:
                await asyncio.to_thread(self._cache.put, lookup, fresh)
        return self._finish(groups, lookup, fresh, started)

    def _lookup(self, todo: list[Group], instruction: str) -> CacheLookup | None:
        """The cached scores of ``todo`` (``None`` without a cache or documents)."""
        if self._cache is None or not todo:
            return None
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return self._cache.lookup(todo, instruction)

    def _finish(
        self,
        groups: list[Group],
        lookup: CacheLookup | None,
        fresh: list[list[float]],
        started: float,
    ) -> list[list[float]]:
        """Every group's scores (``[]`` for no documents), the call counted in stats()."""
        scores = iter(fresh if lookup is None else lookup.fill(fresh))
        out = [next(scores) if docs else [] for _, docs in groups]
        self._stats.record_call(
            documents=sum(len(docs) for _, docs in groups),
            seconds=time.perf_counter() - started,
            hits=0 if lookup is None else lookup.hits,
            misses=0 if lookup is None else lookup.misses,
        )
        return out

    def stats(self) -> RerankStats:
        """A frozen snapshot of this reranker's statistics since it was built: calls,
        documents, prompt tokens, truncated documents, forward passes, cache hits and
        misses, seconds in the model, p50/p95 call latency (:class:`RerankStats`)."""
        return self._stats.snapshot()

    # -------------------------------------------------------------- scoring
    def score(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[float]:
        """One p(yes) per document, in input order.

        ``instruction`` overrides the configured instruction for this call.
        An empty ``documents`` returns ``[]`` without loading the model.
        """
        groups, instr = self._prepare([(query, documents)], instruction)
        return self._run(groups, instr)[0]

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[float]:
        """Async :meth:`score`; never blocks the event loop."""
        groups, instr = self._prepare([(query, documents)], instruction)
        return (await self._arun(groups, instr))[0]

    def rerank(
        self, query: str, documents: Sequence[str], **options: Unpack[RankOptions]
    ) -> list[RerankResult]:
        """Documents sorted by score (descending; ties keep input order).

        Keywords (:class:`RankOptions`): ``min_score`` drops results below it, then
        ``top_n`` keeps the first ones; ``instruction`` overrides the configured one.

        Hybrid ranking: with ``fusion=Fusion(...)``, results are ordered by the fused
        score of ``docs/hybrid.md`` (in ``result.fusion``; ``result.score`` stays
        p(yes) and ``min_score`` applies to it); ``first_stage_scores`` (one per
        document; without them the input order is the first-stage rank) and
        ``signals`` (name -> one value per document) are its inputs.
        """
        call = self._rank_call(query, documents, options, "rerank")
        return call.ranked(self._run(call.groups, call.instruction)[0])

    async def arerank(
        self, query: str, documents: Sequence[str], **options: Unpack[RankOptions]
    ) -> list[RerankResult]:
        """Async :meth:`rerank`; never blocks the event loop."""
        call = self._rank_call(query, documents, options, "arerank")
        return call.ranked((await self._arun(call.groups, call.instruction))[0])

    def _rank_call(
        self, query: str, documents: Sequence[str], options: RankOptions, method: str
    ) -> _RankCall:
        """Check a ``rerank``/``arerank`` call's inputs and options, before any scoring."""
        _check_rank_options(options, method)
        top_n = check_top_n(options.get("top_n"))
        min_score = check_min_score(options.get("min_score"))
        groups, instr = self._prepare([(query, documents)], options.get("instruction"))
        fused = prepare_call(
            options.get("fusion"),
            len(groups[0][1]),
            options.get("first_stage_scores"),
            options.get("signals"),
        )
        return _RankCall(groups, instr, top_n, min_score, fused)

    def score_many(
        self,
        items: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
    ) -> list[list[float]]:
        """:meth:`score` for several ``(query, documents)`` pairs, batched across queries."""
        groups, instr = self._prepare(self._check_items(items), instruction)
        return self._run(groups, instr)

    async def ascore_many(
        self,
        items: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
    ) -> list[list[float]]:
        """Async :meth:`score_many`."""
        groups, instr = self._prepare(self._check_items(items), instruction)
        return await self._arun(groups, instr)

    def rerank_many(
        self,
        items: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        instruction: str | None = None,
        fusion: Fusion | None = None,
        first_stage_scores: Sequence[Sequence[float] | None] | None = None,
        signals: Sequence[Mapping[str, Sequence[float | bool]] | None] | None = None,
    ) -> list[list[RerankResult]]:
        """:meth:`rerank` for several ``(query, documents)`` pairs, batched across queries.

        With ``fusion=``, ``first_stage_scores`` and ``signals`` hold one entry per item.
        """
        top_n, min_score = check_top_n(top_n), check_min_score(min_score)
        groups, instr = self._prepare(self._check_items(items), instruction)
        sizes = [len(docs) for _, docs in groups]
        fused = prepare_fusion_many(fusion, sizes, first_stage_scores, signals)
        all_scores = self._run(groups, instr)
        return [
            rank(scores, docs, top_n=top_n, min_score=min_score, fusion=f)
            for scores, (_, docs), f in zip(all_scores, groups, fused, strict=True)
        ]
