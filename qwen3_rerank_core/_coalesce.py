"""Cross-call batching: concurrent calls share the model's forward passes.

A local model runs one forward pass at a time. Without coalescing, concurrent
calls (threads, asyncio tasks) queue on the backend's lock and each runs its own
small batches. A :class:`Coalescer` runs the model for all of them, one batch at
a time:

- a call that finds the model idle starts at once, with no batching window: a
  sync call in its own thread, exactly as without coalescing; an async one on the
  coalescer's worker thread (where ``asyncio.to_thread`` would have run it);
- calls that arrive while it runs wait in a queue; when the run ends, the worker
  thread merges all queued calls into ONE ``score(groups, instruction)`` per
  instruction (the groups of several callers concatenated: the backend batches
  across groups and reuses each query's prefix), splits the scores back to each
  caller, in its own order, and goes on while calls keep queueing.

Each call carries what its thread would compute with: ``caller_setup`` (the
backend's :meth:`~._backends._base.Backend.caller_setup`, e.g. the caller's torch
thread count) is captured in the submitting thread and run on the worker thread
before the call is scored, so a call scores the same whichever thread runs it.

Isolation: the inputs are validated before submission (by the facade); a call
cancelled while queued (an asyncio task cancelled or timed out, a sync caller
interrupted) is dropped from the batch, one cancelled once its batch has started
has its result discarded; when a merged ``score`` raises, each caller's groups
are scored again on their own, so only the faulty call gets the exception.
:meth:`Coalescer.close` fails the queued calls with a ``RuntimeError`` and waits
for the running batch.

Example::

    >>> c = Coalescer(lambda groups, instr: [[float(len(d)) for d in docs] for _, docs in groups])
    >>> c.submit([("q", ["a", "bb"])], "instr")
    [[1.0, 2.0]]
    >>> c.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence

from ._backends._base import Group, nothing

__all__ = ["CallerSetup", "Coalescer", "ScoreFunction"]

#: ``score(groups, instruction)``: one list of scores per group, in the groups' order.
ScoreFunction = Callable[[list[Group], str], list[list[float]]]

#: Called in the submitting thread; returns what the scoring thread runs first.
CallerSetup = Callable[[], Callable[[], None]]

#: A merged batch takes queued calls up to this many documents (at least one call), so
#: a small call is never held up behind an unbounded pile of work.
MAX_BATCH_DOCS = 4096

_Result = list[list[float]]


class _Call:
    """One caller's submission and the future its scores arrive in."""

    __slots__ = ("future", "groups", "instruction", "n_docs", "setup")

    def __init__(
        self, groups: Sequence[Group], instruction: str, setup: Callable[[], None]
    ) -> None:
        self.groups = list(groups)
        self.instruction = instruction
        self.setup = setup  # run in the scoring thread before this call is scored
        self.n_docs = sum(len(docs) for _, docs in self.groups)
        self.future: concurrent.futures.Future[_Result] = concurrent.futures.Future()


def _no_setup() -> Callable[[], None]:
    return nothing


def _closed_error() -> RuntimeError:
    return RuntimeError("the reranker was closed before this call was scored")


class Coalescer:
    """Merges concurrent ``score(groups, instruction)`` calls into shared batches.

    ``score`` is called one call at a time: from a sync caller that found the model
    idle, else from the one worker thread.
    :meth:`submit` (sync, thread-safe) and :meth:`asubmit` (never blocks the event
    loop) return exactly ``score(groups, instruction)`` for the caller's groups.
    ``max_batch_docs`` bounds the documents of one merged batch (a single call
    larger than it runs alone). ``caller_setup``, called in each submitting thread,
    returns what the worker thread runs before scoring that call (a merged batch runs
    its oldest call's); by default nothing.
    """

    def __init__(
        self,
        score: ScoreFunction,
        *,
        max_batch_docs: int = MAX_BATCH_DOCS,
        caller_setup: CallerSetup | None = None,
    ) -> None:
        if max_batch_docs < 1:
            raise ValueError(f"max_batch_docs must be >= 1, got {max_batch_docs}")
        self._score = score
        self._caller_setup = caller_setup or _no_setup
        self._max_batch_docs = max_batch_docs
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when ``_busy`` turns False
        self._queue: list[_Call] = []
        self._busy = False  # a caller or the worker runs the model, or a drain is scheduled
        self._runner: int | None = None  # the thread running ``score`` now
        self._closed = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.batches = 0
        """Number of ``score`` calls made (merged batches and solo re-runs)."""
        self.calls = 0
        """Number of calls scored (submitted, not cancelled)."""

    # ------------------------------------------------------------------ callers
    def submit(self, groups: Sequence[Group], instruction: str) -> list[list[float]]:
        """``score(groups, instruction)``, batched with concurrent calls (blocks).

        When the model is idle, the call runs at once in the calling thread (as it would
        without coalescing); otherwise it waits for the next merged batch.
        """
        me = threading.get_ident()
        if me == self._runner:  # from inside ``score``: no deadlock
            return self._score(list(groups), instruction)
        call = _Call(groups, instruction, nothing)
        with self._lock:
            if self._closed:
                raise RuntimeError("the reranker is closed")
            lead = not self._busy
            if lead:
                self._busy, self._runner = True, me
            else:
                call.setup = self._caller_setup()  # it will run on the worker thread
                self._queue.append(call)
        if lead:
            self._lead(call)
        try:
            return call.future.result()
        except BaseException:
            call.future.cancel()  # interrupted while waiting: drop it if still queued
            raise

    async def asubmit(self, groups: Sequence[Group], instruction: str) -> list[list[float]]:
        """Async :meth:`submit`; never blocks the event loop. A task cancelled while
        queued is dropped from the batch (once started, its result is discarded)."""
        call = self._enqueue(groups, instruction)
        # Cancelling the awaiting task cancels ``call.future`` (if still queued).
        return await asyncio.wrap_future(call.future)

    def close(self) -> None:
        """Fail the queued calls (``RuntimeError``), wait for the running batch and stop
        the worker thread. Idempotent; later submissions raise ``RuntimeError``."""
        me = threading.get_ident()
        with self._lock:
            self._closed = True
            queued, self._queue = self._queue, []
            executor, self._executor = self._executor, None
        for call in queued:
            if call.future.set_running_or_notify_cancel():
                call.future.set_exception(_closed_error())
        inside = False
        with self._lock:
            inside = self._runner == me  # called from inside ``score``: do not wait for it
            while self._busy and not inside:
                self._idle.wait()
        if executor is not None:
            executor.shutdown(wait=not inside)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def queued(self) -> int:
        """Calls waiting for the next batch (not counting the running one)."""
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------------- worker
    def _enqueue(self, groups: Sequence[Group], instruction: str) -> _Call:
        call = _Call(groups, instruction, self._caller_setup())
        with self._lock:
            if self._closed:
                raise RuntimeError("the reranker is closed")
            self._queue.append(call)
            if not self._busy:
                self._start_drain()
        return call

    def _lead(self, call: _Call) -> None:
        """Run ``call`` alone in the caller's thread (the model was idle), then hand the
        calls that queued meanwhile to the worker thread."""
        try:
            call.future.set_running_or_notify_cancel()
            self._score_calls([call], call.instruction)
        finally:
            with self._lock:
                self._runner = None
                if self._queue and not self._closed:
                    self._start_drain()
                else:
                    self._set_idle()

    def _set_idle(self) -> None:
        """The model is idle (with ``_lock`` held)."""
        self._busy = False
        self._runner = None
        self._idle.notify_all()

    def _start_drain(self) -> None:
        """Schedule :meth:`_drain` on the worker thread (with ``_lock`` held)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="qwen3-rerank-batch"
            )
        self._executor.submit(self._drain)
        self._busy = True

    def _take(self) -> list[_Call]:
        """The next batch: queued calls, oldest first, up to ``max_batch_docs``."""
        with self._lock:
            n = total = 0
            for call in self._queue:
                if n and total + call.n_docs > self._max_batch_docs:
                    break
                n += 1
                total += call.n_docs
            batch, self._queue = self._queue[:n], self._queue[n:]
            if not batch:
                self._set_idle()
            return batch

    def _drain(self) -> None:
        """Run batches until the queue is empty (on the worker thread)."""
        self._runner = threading.get_ident()
        while batch := self._take():
            try:
                self._run(batch)
            except BaseException as exc:  # pragma: no cover - SystemExit & co. in score
                for call in batch:
                    if not call.future.done():
                        call.future.set_exception(exc)
                with self._lock:
                    self._set_idle()
                    if self._queue and not self._closed:
                        self._start_drain()
                raise

    def _run(self, batch: list[_Call]) -> None:
        live = [call for call in batch if call.future.set_running_or_notify_cancel()]
        by_instruction: dict[str, list[_Call]] = {}
        for call in live:
            by_instruction.setdefault(call.instruction, []).append(call)
        for instruction, calls in by_instruction.items():
            self._score_calls(calls, instruction)

    def _score_calls(self, calls: list[_Call], instruction: str) -> None:
        """One ``score`` for ``calls``; each call's own when the merged one raises."""
        self.calls += len(calls)
        merged = [group for call in calls for group in call.groups]
        if len(calls) == 1 or not merged:
            for call in calls:
                self._score_alone(call, instruction)
            return
        try:
            self.batches += 1
            calls[0].setup()
            scores = self._score(merged, instruction)
            if len(scores) != len(merged):
                raise RuntimeError(f"score returned {len(scores)} groups for {len(merged)}")
        except Exception:
            # Only the faulty caller must see the error: score each call on its own.
            for call in calls:
                self._score_alone(call, instruction)
            return
        start = 0
        for call in calls:
            end = start + len(call.groups)
            call.future.set_result(scores[start:end])
            start = end

    def _score_alone(self, call: _Call, instruction: str) -> None:
        if not call.groups:
            call.future.set_result([])
            return
        try:
            self.batches += 1
            call.setup()
            scores = self._score(call.groups, instruction)
        except Exception as exc:
            call.future.set_exception(exc)
        else:
            call.future.set_result(scores)
