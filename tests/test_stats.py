"""Call statistics: ``Qwen3Reranker.stats()`` (``RerankStats``), the backend counters,
the CLI's ``--verbose`` report and the LlamaIndex ``ReRankEndEvent`` tags.

The exact numbers are checked on the tiny checkpoint with known inputs: one
reranker with a small ``max_length`` (so that one document is cut) and a memory
cache, through a sequence of calls whose hits, misses, forward passes and
prompt tokens are known.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from shared_backend import SharedBackend

import qwen3_rerank_core._reranker as reranker_module
from qwen3_rerank_core import Qwen3Reranker, RerankConfig, RerankStats
from qwen3_rerank_core._backends import Backend
from qwen3_rerank_core._stats import (
    LATENCY_WINDOW,
    BackendCounters,
    StatsRecorder,
    attach_counters,
    counters_of,
)

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "what is the capital of France?"
SHORT = ["Paris is the capital of France.", "Berlin is in Germany.", "Rome is in Italy."]
OTHER = "Madrid is the capital of Spain."
LONG = "A very long passage about the history of Paris and its many bridges. " * 40
MAX_LENGTH = 160


@pytest.fixture(scope="module")
def counted(tiny_model_dir: Path) -> Iterator[Qwen3Reranker]:
    """A reranker of its own (its counters are exact), with a memory cache."""
    reranker = Qwen3Reranker(
        model=str(tiny_model_dir),
        device="cpu",
        dtype="float32",
        max_length=MAX_LENGTH,
        cache="memory",
    )
    yield reranker
    reranker.close()


def prompt_lengths(reranker: Qwen3Reranker, docs: Sequence[str]) -> list[int]:
    encoder = reranker._backend.encoder  # type: ignore[union-attr]
    group = encoder.encode_group(reranker.default_instruction, QUERY, list(docs))
    return [len(group.full(i)) for i in range(len(docs))]


def test_stats_are_exact_on_known_calls(counted: Qwen3Reranker) -> None:
    assert counted.stats() == RerankStats()  # nothing yet, no latency
    assert counted.stats().latency_p50 is None and counted.stats().cache_hit_rate is None

    counted.score(QUERY, SHORT[:1])  # 1 miss: one prompt, one batch
    backend: Any = counted._backend
    assert backend._reuse_prefix, "the tiny model on CPU reuses the shared prefix"
    tokens = prompt_lengths(counted, SHORT[:1])
    s = counted.stats()
    assert (s.calls, s.documents, s.cache_hits, s.cache_misses) == (1, 1, 0, 1)
    assert (s.prompt_tokens, s.truncated_documents, s.forward_passes) == (sum(tokens), 0, 1)

    counted.score(QUERY, SHORT)  # 1 hit, 2 misses: the prefix once, then one batch
    tokens += prompt_lengths(counted, SHORT[1:])
    s = counted.stats()
    assert (s.calls, s.documents, s.cache_hits, s.cache_misses) == (2, 4, 1, 3)
    assert (s.prompt_tokens, s.truncated_documents, s.forward_passes) == (sum(tokens), 0, 3)

    counted.score(QUERY, [*SHORT, OTHER, LONG])  # 3 hits, 2 misses, the long one is cut
    long_tokens = prompt_lengths(counted, [OTHER, LONG])
    assert long_tokens[1] == MAX_LENGTH
    tokens += long_tokens
    s = counted.stats()
    assert (s.calls, s.documents, s.cache_hits, s.cache_misses) == (3, 9, 4, 5)
    assert (s.prompt_tokens, s.truncated_documents, s.forward_passes) == (sum(tokens), 1, 5)
    assert s.cache_hit_rate == 4 / 9

    model_seconds = s.model_seconds
    counted.score_many([(QUERY, SHORT), ("empty", [])])  # fully cached: no model time
    counted.score(QUERY, [])  # an empty call is a call of no documents
    s = counted.stats()
    assert (s.calls, s.documents, s.cache_hits, s.cache_misses) == (5, 12, 7, 5)
    assert (s.prompt_tokens, s.forward_passes, s.model_seconds) == (
        sum(tokens),
        5,
        model_seconds,
    )
    assert s.latency_p50 is not None and s.latency_p95 is not None
    assert 0 < s.latency_p50 <= s.latency_p95
    assert 0 < model_seconds <= s.latency_p95 * s.calls


def test_without_a_cache_hits_and_misses_stay_zero(tiny_reranker: Qwen3Reranker) -> None:
    before = tiny_reranker.stats()
    tiny_reranker.score(QUERY, SHORT)
    after = tiny_reranker.stats()
    assert after.calls == before.calls + 1
    assert after.documents == before.documents + len(SHORT)
    assert (after.cache_hits, after.cache_misses) == (0, 0)
    assert after.forward_passes > before.forward_passes


def test_the_snapshot_is_frozen_and_plain() -> None:
    stats = RerankStats(calls=2, documents=4, cache_hits=1, cache_misses=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.calls = 3  # type: ignore[misc]
    data = stats.as_dict()
    assert data["calls"] == 2 and data["cache_hit_rate"] == 0.25
    assert set(data) == {f.name for f in dataclasses.fields(RerankStats)} | {"cache_hit_rate"}
    assert "2 call(s), 4 document(s)" in stats.summary()


def test_latency_percentiles_over_the_last_calls() -> None:
    recorder = StatsRecorder()
    for ms in range(1, 101):
        recorder.record_call(documents=1, seconds=ms / 1000)
    s = recorder.snapshot()
    assert (s.latency_p50, s.latency_p95) == (0.050, 0.095)
    for _ in range(LATENCY_WINDOW):  # the window forgets the old calls
        recorder.record_call(documents=1, seconds=1.0)
    s = recorder.snapshot()
    assert (s.calls, s.latency_p50, s.latency_p95) == (100 + LATENCY_WINDOW, 1.0, 1.0)


def test_counting_is_thread_safe() -> None:
    recorder = StatsRecorder()

    def work() -> None:
        for _ in range(2000):
            recorder.record_call(documents=2, seconds=0.001, hits=1, misses=1)
            recorder.counters.add(prompt_tokens=3, forward_passes=1)
            recorder.record_model(0.5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = recorder.snapshot()
    n = 8 * 2000
    assert (s.calls, s.documents, s.cache_hits, s.cache_misses) == (n, 2 * n, n, n)
    assert (s.prompt_tokens, s.forward_passes, s.model_seconds) == (3 * n, n, 0.5 * n)


def test_backend_counters_attach_and_detach() -> None:
    class Plain:
        pass

    backend = Plain()
    own = counters_of(backend)  # a backend built outside a reranker counts for itself
    assert counters_of(backend) is own
    shared = BackendCounters()
    attach_counters(backend, shared)
    counters_of(backend).add_prompts([10, 160, 170], 160)
    assert shared.values() == (340, 2, 0) and own.values() == (0, 0, 0)


# ---------------------------------------------------------------- the CLI and events
@pytest.fixture
def shared_model(tiny_reranker: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = tiny_reranker._get_backend()

    def create(config: RerankConfig, **options: Any) -> Backend:
        assert config.model == tiny_reranker.config.model
        return SharedBackend(inner)

    monkeypatch.setattr(reranker_module, "create_backend", create)


@pytest.mark.usefixtures("shared_model")
def test_cli_verbose_prints_the_stats(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qwen3_rerank_core._cli import main

    argv = ["rerank", QUERY, *SHORT, "-m", str(tiny_model_dir), "--dtype", "float32"]
    assert main([*argv, "--cache", "memory", "-v"]) == 0
    err = capsys.readouterr().err
    assert "stats: 1 call(s), 3 document(s)" in err
    assert "cache 0 hit(s) / 3 miss(es)" in err and "2 forward pass(es)" in err
    assert main(argv) == 0
    assert "stats:" not in capsys.readouterr().err  # only with --verbose


@pytest.mark.usefixtures("shared_model")
def test_llama_index_end_event_carries_the_stats(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("llama_index.postprocessor.qwen3_rerank")
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.qwen3_rerank import QwenRerank
    from llama_index.postprocessor.qwen3_rerank.base import STATS_TAG

    ends: list[ReRankEndEvent] = []

    class Recorder(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, ReRankEndEvent):
                ends.append(event)

    handler = Recorder()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        reranker = Qwen3Reranker(model=str(tiny_model_dir), dtype="float32", cache="memory")
        post = QwenRerank(reranker=reranker, top_n=2)
        nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in SHORT]
        with caplog.at_level(logging.DEBUG, logger="llama_index.postprocessor.qwen3_rerank"):
            post.postprocess_nodes(nodes, query_str=QUERY)
            post.postprocess_nodes(nodes, query_str=QUERY)
    finally:
        root.event_handlers.remove(handler)
    first, second = (e.tags[STATS_TAG] for e in ends)
    assert (first["calls"], first["cache_misses"], first["cache_hits"]) == (1, 3, 0)
    assert (second["calls"], second["cache_hits"]) == (2, 3)
    assert second == reranker.stats().as_dict()
    assert any("qwen3-rerank stats: 2 call(s)" in r.getMessage() for r in caplog.records)


def test_remote_counts_scoring_requests_and_uses_the_cache() -> None:
    httpx = pytest.importorskip("httpx")
    import fake_vllm

    fake = fake_vllm.FakeVLLM()
    reranker = Qwen3Reranker(
        model="m",
        backend="remote",
        base_url=fake_vllm.URL,
        max_docs_per_request=2,
        cache="memory",
        backend_options={"transport": httpx.MockTransport(fake)},
    )
    docs = ["a b", "c d", "e f", "g h", "i j"]
    with reranker:
        scores = reranker.score(QUERY, docs, instruction=fake_vllm.INSTR)
        assert scores == fake_vllm.expected(QUERY, docs)
        s = reranker.stats()
        assert len(fake.bodies("/classify")) == 3  # 2 + 2 + 1 documents
        assert (s.calls, s.documents, s.cache_misses, s.forward_passes) == (1, 5, 5, 3)
        assert reranker.score(QUERY, docs, instruction=fake_vllm.INSTR) == scores
        s = reranker.stats()
        assert len(fake.bodies("/classify")) == 3  # answered from the cache
        assert (s.calls, s.documents, s.cache_hits, s.forward_passes) == (2, 10, 5, 3)
