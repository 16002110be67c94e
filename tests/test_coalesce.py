"""Cross-call batching (``qwen3_rerank_core._coalesce``, issue #22).

Unit tests drive a :class:`Coalescer` with a fake score function whose first call
can be held (a "gate"), so that calls queue up behind it deterministically:
merging, order, the per-instruction split, error isolation, cancellation and
``close``. The facade tests use a registered model-free backend; the integration
tests run 16 threads and 16 asyncio tasks on the tiny checkpoint and check the
scores against sequential calls and the forward passes against one ``score_many``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core._backends import (
    Backend,
    BackendSpec,
    Group,
    backend_spec,
    registered_backend,
)
from qwen3_rerank_core._coalesce import Coalescer

WAIT = 10.0  # seconds; generous, the waits end as soon as their condition holds


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def length_scores(groups: Sequence[Group], instruction: str) -> list[list[float]]:
    """A deterministic fake model: a document's score is its length / 100."""
    return [[len(doc) / 100 for doc in docs] for _, docs in groups]


class FakeModel:
    """Records each ``score`` call; ``hold()`` makes the next call wait for ``release()``."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Group], str]] = []
        self._gate: threading.Event | None = None  # taken by the next call
        self._held: threading.Event | None = None
        self.entered = threading.Event()

    def hold(self) -> None:
        self._gate = self._held = threading.Event()

    def release(self) -> None:
        assert self._held is not None
        self._held.set()

    def __call__(self, groups: list[Group], instruction: str) -> list[list[float]]:
        self.calls.append((list(groups), instruction))
        gate, self._gate = self._gate, None
        self.entered.set()
        if gate is not None:
            assert gate.wait(WAIT), "the gate was never released"
        if any(query == "bad" for query, _ in groups):
            raise ValueError("bad query")
        return length_scores(groups, instruction)


def group(query: str, *docs: str) -> Group:
    return (query, list(docs))


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def coalescer(model: FakeModel) -> Iterator[Coalescer]:
    c = Coalescer(model)
    yield c
    c.close()


class Caller(threading.Thread):
    """``coalescer.submit(groups, instruction)`` in a thread; keeps the result or error."""

    def __init__(self, coalescer: Coalescer, groups: list[Group], instruction: str = "i") -> None:
        super().__init__(daemon=True)
        self.coalescer, self.groups, self.instruction = coalescer, groups, instruction
        self.result: list[list[float]] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.coalescer.submit(self.groups, self.instruction)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> Caller:
        self.join(WAIT)
        assert not self.is_alive()
        return self


def block_worker(coalescer: Coalescer, model: FakeModel) -> Caller:
    """Start a call that holds the worker until ``model.release()``."""
    model.hold()
    first = Caller(coalescer, [group("first", "x")])
    first.start()
    assert model.entered.wait(WAIT)
    return first


def queue_callers(coalescer: Coalescer, calls: list[tuple[list[Group], str]]) -> list[Caller]:
    """Start ``calls`` one after the other, each queued before the next starts."""
    callers = []
    for groups, instruction in calls:
        caller = Caller(coalescer, groups, instruction)
        caller.start()
        callers.append(caller)
        wait_until(lambda: coalescer.queued == len(callers), "a queued call")
    return callers


# ------------------------------------------------------------------ unit tests
def test_a_lone_call_runs_at_once_with_its_own_groups(
    coalescer: Coalescer, model: FakeModel
) -> None:
    groups = [group("q", "a", "bbb"), group("r", "cc")]
    assert coalescer.submit(groups, "instr") == [[0.01, 0.03], [0.02]]
    assert model.calls == [(groups, "instr")]


def test_a_lone_sync_call_runs_in_its_own_thread_an_async_one_on_the_worker() -> None:
    threads: list[str] = []

    def score(groups: list[Group], instruction: str) -> list[list[float]]:
        threads.append(threading.current_thread().name)
        return length_scores(groups, instruction)

    c = Coalescer(score)
    try:
        assert c.submit([group("q", "ab")], "i") == [[0.02]]
        assert asyncio.run(c.asubmit([group("q", "abc")], "i")) == [[0.03]]
    finally:
        c.close()
    assert threads[0] == threading.current_thread().name
    assert threads[1].startswith("qwen3-rerank-batch")


def test_queued_calls_share_one_call_and_get_their_own_scores_in_order(
    coalescer: Coalescer, model: FakeModel
) -> None:
    first = block_worker(coalescer, model)
    calls = [
        ([group("q1", "aaaa", "b"), group("q2", "cc")], "i"),
        ([group("q3", "ddd")], "i"),
        ([group("q4", "e", "ffffff", "gg")], "i"),
    ]
    callers = queue_callers(coalescer, calls)
    model.release()
    for caller, (groups, _) in zip(callers, calls, strict=True):
        assert caller.finish().error is None
        assert caller.result == length_scores(groups, "i")
    assert first.finish().result == [[0.01]]
    assert len(model.calls) == 2  # the first call, then all the queued ones together
    assert model.calls[1] == ([g for groups, _ in calls for g in groups], "i")


def test_one_merged_call_per_instruction(coalescer: Coalescer, model: FakeModel) -> None:
    first = block_worker(coalescer, model)
    calls = [
        ([group("q1", "a")], "x"),
        ([group("q2", "bb")], "y"),
        ([group("q3", "ccc")], "x"),
    ]
    callers = queue_callers(coalescer, calls)
    model.release()
    for caller, (groups, instr) in zip(callers, calls, strict=True):
        assert caller.finish().result == length_scores(groups, instr)
    first.finish()
    assert model.calls[1:] == [
        ([group("q1", "a"), group("q3", "ccc")], "x"),
        ([group("q2", "bb")], "y"),
    ]


def test_a_failing_merged_call_fails_only_the_faulty_caller(
    coalescer: Coalescer, model: FakeModel
) -> None:
    first = block_worker(coalescer, model)
    calls = [([group("good", "aa")], "i"), ([group("bad", "b")], "i"), ([group("ok", "c")], "i")]
    good, bad, ok = queue_callers(coalescer, calls)
    model.release()
    assert good.finish().result == [[0.02]]
    assert ok.finish().result == [[0.01]]
    assert isinstance(bad.finish().error, ValueError)
    first.finish()
    # The merged call raised, then each caller's groups ran on their own.
    assert [len(groups) for groups, _ in model.calls[1:]] == [3, 1, 1, 1]


def test_a_merged_answer_of_the_wrong_length_is_retried_per_caller(model: FakeModel) -> None:
    calls_seen: list[int] = []

    def short(groups: list[Group], instruction: str) -> list[list[float]]:
        calls_seen.append(len(groups))
        result = model(groups, instruction)
        return result[:1]  # one group's scores, whatever was asked

    c = Coalescer(short)
    try:
        first = block_worker(c, model)
        a, b = queue_callers(c, [([group("a", "xx")], "i"), ([group("b", "y")], "i")])
        model.release()
        assert a.finish().result == [[0.02]] and b.finish().result == [[0.01]]
        first.finish()
        assert calls_seen == [1, 2, 1, 1]
    finally:
        c.close()


def test_batches_are_capped_in_documents(model: FakeModel) -> None:
    c = Coalescer(model, max_batch_docs=3)
    try:
        first = block_worker(c, model)
        calls = [([group(f"q{i}", "a", "b")], "i") for i in range(3)]
        callers = queue_callers(c, calls)
        model.release()
        for caller in callers:
            assert caller.finish().result == [[0.01, 0.01]]
        first.finish()
        assert [len(groups) for groups, _ in model.calls] == [1, 1, 1, 1]
    finally:
        c.close()
    with pytest.raises(ValueError, match="max_batch_docs"):
        Coalescer(model, max_batch_docs=0)


def test_async_callers_are_merged_and_never_block_the_loop(
    coalescer: Coalescer, model: FakeModel
) -> None:
    async def main() -> list[list[list[float]]]:
        first = await asyncio.to_thread(block_worker, coalescer, model)
        tasks = [
            asyncio.create_task(coalescer.asubmit([group(f"q{i}", "a" * (i + 1))], "i"))
            for i in range(8)
        ]
        # The worker is held: the loop still runs (sleeps end, other tasks progress).
        deadline = time.monotonic() + WAIT
        while coalescer.queued < 8:
            assert time.monotonic() < deadline, "the tasks were not queued"
            await asyncio.sleep(0.001)
        model.release()
        await asyncio.to_thread(first.finish)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert results == [[[(i + 1) / 100]] for i in range(8)]
    assert [len(groups) for groups, _ in model.calls] == [1, 8]


def test_a_cancelled_async_caller_is_dropped_from_the_batch(
    coalescer: Coalescer, model: FakeModel
) -> None:
    async def main() -> None:
        first = block_worker(coalescer, model)
        keep = asyncio.create_task(coalescer.asubmit([group("keep", "aa")], "i"))
        drop = asyncio.create_task(coalescer.asubmit([group("drop", "b")], "i"))
        late = asyncio.create_task(
            asyncio.wait_for(coalescer.asubmit([group("late", "c")], "i"), 0.05)
        )
        with pytest.raises(TimeoutError):
            await late  # timed out while queued
        drop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drop
        model.release()
        assert await keep == [[0.02]]
        await asyncio.to_thread(first.finish)

    asyncio.run(main())
    assert model.calls[1:] == [([group("keep", "aa")], "i")]


def test_a_caller_cancelled_while_its_batch_runs_does_not_disturb_it(
    coalescer: Coalescer, model: FakeModel
) -> None:
    async def main() -> None:
        model.hold()
        gone = asyncio.create_task(coalescer.asubmit([group("gone", "abc")], "i"))
        await asyncio.to_thread(model.entered.wait, WAIT)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        stay = asyncio.create_task(coalescer.asubmit([group("stay", "ab")], "i"))
        model.release()
        assert await stay == [[0.02]]

    asyncio.run(main())
    assert [g[0][0] for g, _ in model.calls] == ["gone", "stay"]


def test_close_fails_the_queued_calls_and_lets_the_running_one_finish(
    coalescer: Coalescer, model: FakeModel
) -> None:
    first = block_worker(coalescer, model)
    queued = queue_callers(coalescer, [([group("q", "a")], "i"), ([group("r", "b")], "i")])
    closer = threading.Thread(target=coalescer.close)
    closer.start()
    for caller in queued:
        error = caller.finish().error
        assert isinstance(error, RuntimeError) and "closed" in str(error)
    assert closer.is_alive()  # close waits for the running batch
    model.release()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert first.finish().result == [[0.01]]
    assert coalescer.closed
    with pytest.raises(RuntimeError, match="closed"):
        coalescer.submit([group("q", "a")], "i")
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(coalescer.asubmit([group("q", "a")], "i"))
    coalescer.close()  # idempotent
    assert len(model.calls) == 1


def test_a_call_from_inside_score_runs_directly() -> None:
    inner: list[list[list[float]]] = []

    def score(groups: list[Group], instruction: str) -> list[list[float]]:
        if instruction == "outer":
            inner.append(c.submit(groups, "inner"))
        return length_scores(groups, instruction)

    c = Coalescer(score)
    try:
        assert c.submit([group("q", "abc")], "outer") == [[0.03]]
        assert inner == [[[0.03]]]
    finally:
        c.close()


def test_a_coalescer_that_never_ran_closes() -> None:
    c = Coalescer(length_scores)
    c.close()
    assert c.closed


class SetupRecorder:
    """A ``caller_setup`` that records which thread captured it and which ran it."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []  # (the captured tag, the running thread)
        self.tag = threading.local()

    def __call__(self) -> Callable[[], None]:
        tag = getattr(self.tag, "value", "none")  # read in the submitting thread

        def setup() -> None:
            self.ran.append((tag, threading.get_ident()))

        return setup


def test_a_queued_call_runs_its_callers_setup_on_the_worker(model: FakeModel) -> None:
    recorder = SetupRecorder()
    c = Coalescer(model, caller_setup=recorder)
    first = block_worker(c, model)  # a sync lead: scored in its own thread, no setup

    class Tagged(Caller):
        def run(self) -> None:
            recorder.tag.value = self.instruction
            super().run()

    callers: list[Caller] = []
    for n, instruction in enumerate("ab", 1):  # two instructions: two scores
        caller = Tagged(c, [group("q", "xy")], instruction)
        caller.start()
        callers.append(caller)
        wait_until(lambda n=n: c.queued == n, "a queued call")
    model.release()
    first.finish()
    assert [caller.finish().result for caller in callers] == [[[0.02]], [[0.02]]]
    assert [tag for tag, _ in recorder.ran] == ["a", "b"]
    threads = {thread for _, thread in recorder.ran}
    assert len(threads) == 1 and threads.isdisjoint({first.ident, *(x.ident for x in callers)})
    c.close()


def test_an_async_call_carries_the_setup_of_the_loops_thread(model: FakeModel) -> None:
    recorder = SetupRecorder()
    recorder.tag.value = "loop"
    c = Coalescer(model, caller_setup=recorder)

    async def main() -> list[list[float]]:
        return await c.asubmit([group("q", "abc")], "i")

    assert asyncio.run(main()) == [[0.03]]
    assert [tag for tag, _ in recorder.ran] == ["loop"]
    assert recorder.ran[0][1] != threading.get_ident()
    c.close()


def test_the_default_async_path_runs_the_setup_in_its_worker_thread() -> None:
    recorder = SetupRecorder()
    recorder.tag.value = "caller"
    seen: list[int] = []

    class Plain(Backend):
        def score_groups(
            self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
        ) -> list[list[float]]:
            seen.append(threading.get_ident())
            return [[0.5] * len(docs) for _, docs in groups]

        def caller_setup(self) -> Callable[[], None]:
            return recorder()

    out = asyncio.run(Plain().ascore_groups([group("q", "d")], "i"))
    assert out == [[0.5]]
    assert recorder.ran == [("caller", seen[0])] and seen[0] != threading.get_ident()


# ------------------------------------------------------- the facade's wiring
class CountingBackend(Backend):
    """No model: p(yes) = len(document) / 1000; records each score_groups call."""

    def __init__(self, config: Any) -> None:
        self.calls: list[int] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.closed = False

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        self.calls.append(len(groups))
        gate, self.gate = self.gate, None
        self.entered.set()
        if gate is not None:
            assert gate.wait(WAIT)
        return [[len(d) / 1000 for d in docs] for _, docs in groups]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def counting() -> Iterator[BackendSpec]:
    spec = BackendSpec("counting", lambda: CountingBackend, summary="test", coalesce=True)
    with registered_backend(spec):
        yield spec


def test_the_flag_is_on_for_local_backends_only() -> None:
    assert backend_spec("transformers").coalesce and backend_spec("vllm").coalesce
    assert not backend_spec("remote").coalesce
    assert not BackendSpec("mine", lambda: CountingBackend, summary="x").coalesce


def test_the_facade_merges_concurrent_calls(counting: BackendSpec) -> None:
    rr = Qwen3Reranker(model="m", backend="counting").load()
    backend = rr._backend
    assert isinstance(backend, CountingBackend)

    async def main() -> list[list[float]]:
        gate = backend.gate = threading.Event()
        first = asyncio.create_task(rr.ascore("q0", ["x"]))
        await asyncio.to_thread(backend.entered.wait, WAIT)
        rest = [rr.ascore(f"q{i}", ["a" * i, "b"]) for i in range(1, 9)]
        bad = rr.ascore("", ["d"])  # refused before it is submitted
        gathered = asyncio.gather(*rest, bad, return_exceptions=True)
        coalescer = rr._coalescer
        assert coalescer is not None
        deadline = time.monotonic() + WAIT
        while coalescer.queued < 8:
            assert time.monotonic() < deadline, "the calls were not queued"
            await asyncio.sleep(0.001)
        gate.set()
        return [await first, *await gathered]

    results = asyncio.run(main())
    assert results[:-1] == [[0.001]] + [[i / 1000, 0.001] for i in range(1, 9)]
    assert isinstance(results[-1], ValueError)
    assert backend.calls == [1, 8]
    assert rr.score_many([("q", ["ab"]), ("r", [])]) == [[0.002], []]
    rr.close()
    assert backend.closed and rr._coalescer is None
    with pytest.raises(RuntimeError, match="closed"):
        rr.score("q", ["d"])


def test_aclose_stops_the_coalescer(counting: BackendSpec) -> None:
    async def main() -> None:
        rr = Qwen3Reranker(model="m", backend="counting")
        assert await rr.ascore("q", ["abc"]) == [0.003]
        coalescer = rr._coalescer
        assert coalescer is not None
        await rr.aclose()
        assert coalescer.closed

    asyncio.run(main())


def test_coalesce_calls_false_gives_each_call_its_own_backend_call(
    counting: BackendSpec,
) -> None:
    rr = Qwen3Reranker(model="m", backend="counting", coalesce_calls=False).load()
    backend = rr._backend
    assert isinstance(backend, CountingBackend) and rr._coalescer is None

    async def main() -> list[list[float]]:
        gate = backend.gate = threading.Event()
        first = asyncio.create_task(rr.ascore("q0", ["x"]))
        await asyncio.to_thread(backend.entered.wait, WAIT)
        rest = asyncio.gather(*(rr.ascore(f"q{i}", ["a" * i]) for i in range(1, 4)))
        await asyncio.sleep(0.05)  # with batching, these would be queued behind the first
        gate.set()
        return [await first, *await rest]

    assert asyncio.run(main()) == [[0.001], [0.001], [0.002], [0.003]]
    assert backend.calls == [1, 1, 1, 1]
    rr.close()
    with pytest.raises(TypeError, match="coalesce_calls must be a bool, got 'no'"):
        Qwen3Reranker(model="m", backend="counting", coalesce_calls="no")


def test_without_the_flag_calls_go_straight_to_the_backend() -> None:
    spec = BackendSpec("plain", lambda: CountingBackend, summary="test")
    with registered_backend(spec):
        rr = Qwen3Reranker(model="m", backend="plain")
        assert rr.score("q", ["ab"]) == [0.002]
        assert rr._coalescer is None
        rr.close()


# ----------------------------------------------- the tiny checkpoint, for real
@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Iterator[Qwen3Reranker]:
    pytest.importorskip("torch")
    from qwen3_rerank_core.pytest_plugin import load_tiny_reranker

    rr = load_tiny_reranker(tiny_model_dir)
    yield rr
    rr.close()


class ForwardCounter:
    """Counts the backend's forward passes (the lean forward's batches and prefixes)."""

    def __init__(self, rr: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        lean = rr._backend._lean  # type: ignore[union-attr]
        assert lean is not None, "the tiny checkpoint runs on the lean forward"
        for name in ("last_hidden", "prefix"):
            monkeypatch.setattr(lean, name, self._counted(getattr(lean, name)))

    def _counted(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.n += 1
            return fn(*args, **kwargs)

        return counted


def _items(n_docs: int) -> list[tuple[str, list[str]]]:
    from qwen3_rerank_core.pytest_plugin import SAMPLE_TEXTS

    texts = list(SAMPLE_TEXTS)
    return [
        (
            f"question {i}: {texts[i % len(texts)][:30]}?",
            [texts[(3 * i + j) % len(texts)] + " more" * ((i + j) % 7) for j in range(n_docs)],
        )
        for i in range(16)
    ]


def _run_threads(rr: Qwen3Reranker, items: list[tuple[str, list[str]]]) -> list[list[float]]:
    results: list[list[float]] = [[] for _ in items]
    barrier = threading.Barrier(len(items))

    def work(i: int) -> None:
        barrier.wait()
        results[i] = rr.score(*items[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _run_tasks(rr: Qwen3Reranker, items: list[tuple[str, list[str]]]) -> list[list[float]]:
    async def main() -> list[list[float]]:
        return list(await asyncio.gather(*(rr.ascore(q, docs) for q, docs in items)))

    return asyncio.run(main())


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("run", [_run_threads, _run_tasks], ids=["threads", "asyncio"])
def test_16_callers_score_like_sequential_calls_in_few_forward_passes(
    tiny: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch, run: Any
) -> None:
    items = _items(10)
    sequential = [tiny.score(q, docs) for q, docs in items]
    counter = ForwardCounter(tiny, monkeypatch)
    tiny.score_many(items)
    one_call = counter.n
    counter.n = 0
    for _ in range(2):
        # Each caller's batches are its own (prefix reuse per query): the same bits.
        assert run(tiny, items) == sequential
        assert counter.n <= one_call + 2, (counter.n, one_call)
        counter.n = 0


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("run", [_run_threads, _run_tasks], ids=["threads", "asyncio"])
def test_16_callers_with_one_short_document_share_batches(
    tiny: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch, run: Any
) -> None:
    items = [(q, docs[:1]) for q, docs in _items(1)]
    sequential = [tiny.score(q, docs) for q, docs in items]
    counter = ForwardCounter(tiny, monkeypatch)
    tiny.score_many(items)
    one_call = counter.n
    counter.n = 0
    results = run(tiny, items)
    assert counter.n <= one_call + 2, (counter.n, one_call)
    # Single prompts of several callers share a padded batch, where fp32 may round
    # differently than alone (as score_many does): within 1e-5, not bit for bit.
    flat = [s for scores in results for s in scores]
    alone = [s for scores in sequential for s in scores]
    assert max(abs(a - b) for a, b in zip(flat, alone, strict=True)) <= 1e-5


@pytest.mark.usefixtures("one_torch_thread")
def test_a_merged_batch_scores_exactly_like_score_many_of_its_calls(
    tiny: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the worker held by a first call, the next 15 are merged into one batch: their
    scores are score_many's of those 15 calls, bit for bit, on every run."""
    items = [(q, docs[:1]) for q, docs in _items(1)]
    expected = tiny.score_many(items[1:])
    for _ in range(2):
        results = _first_alone_then_the_rest(tiny, items, monkeypatch)
        assert results[0] == tiny.score(*items[0])
        assert results[1:] == expected


def _first_alone_then_the_rest(
    rr: Qwen3Reranker, items: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> list[list[float]]:
    """Score ``items`` in threads: the first call holds the worker until the others queue."""
    coalescer = rr._coalescer
    assert coalescer is not None
    score = coalescer._score
    gate, entered = threading.Event(), threading.Event()

    def holding(groups: list[Group], instruction: str) -> list[list[float]]:
        if not entered.is_set():
            entered.set()
            gate.wait(WAIT)
        return score(groups, instruction)

    monkeypatch.setattr(coalescer, "_score", holding)
    results: list[list[float]] = [[] for _ in items]

    def work(i: int) -> None:
        results[i] = rr.score(*items[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    threads[0].start()
    assert entered.wait(WAIT)
    for t in threads[1:]:
        t.start()
    wait_until(lambda: coalescer.queued == len(items) - 1, "the other calls queued")
    gate.set()
    for t in threads:
        t.join()
    monkeypatch.setattr(coalescer, "_score", score)
    return results


def test_calls_on_the_worker_follow_the_callers_torch_thread_count(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch keeps a thread count per thread: the worker thread, born while torch ran on 1
    thread, must score a later call at the count its caller set since (same bits as a
    sync call), not at its own."""
    torch = pytest.importorskip("torch")
    from qwen3_rerank_core.pytest_plugin import SAMPLE_QUERY, SAMPLE_TEXTS, load_tiny_reranker

    before = torch.get_num_threads()
    rr = load_tiny_reranker(tiny_model_dir)
    try:
        torch.set_num_threads(1)
        asyncio.run(rr.ascore(SAMPLE_QUERY, list(SAMPLE_TEXTS)))  # the worker starts at 1
        torch.set_num_threads(2)
        backend = rr._backend
        assert backend is not None
        seen: list[int] = []
        score = backend.score_groups

        def recording(*args: Any, **kwargs: Any) -> list[list[float]]:
            seen.append(torch.get_num_threads())
            return score(*args, **kwargs)

        assert rr._coalescer is not None
        monkeypatch.setattr(rr._coalescer, "_score", recording)
        async_scores = asyncio.run(rr.ascore(SAMPLE_QUERY, list(SAMPLE_TEXTS)))
        assert seen == [2]
        assert async_scores == rr.score(SAMPLE_QUERY, list(SAMPLE_TEXTS))
    finally:
        rr.close()
        torch.set_num_threads(before)
