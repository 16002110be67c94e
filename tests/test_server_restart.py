"""The remote backend through a REAL vLLM server that goes away mid-run.

Clients keep scoring (sync, async, and over two replicas) in background
threads, many small requests per call (``max_docs_per_request=2``), while

* one of two replicas goes down (a TCP proxy in front of the server is killed,
  cutting its open connections): every call must still succeed, with the
  scores the same call got before;
* the server is stopped and started again on the same port: every call must
  either return the scores it returned before the restart or raise a
  :class:`RemoteError` other than :class:`InvalidResponseError`, within the
  deadline its settings allow (``faultkit.request_deadline``), and the same
  backend objects (with stale pooled connections) must recover afterwards.

One server for the module, started twice (50-120 s each on 2 CPU cores).
Marked ``vllm``: skipped without ``.venv-vllm``, required under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faultkit
import pytest
import vllm_server

from qwen3_rerank_core._backends._remote import RemoteBackend
from qwen3_rerank_core._config import RerankConfig
from qwen3_rerank_core._errors import InvalidResponseError, RemoteConnectionError, RemoteError

pytestmark = pytest.mark.vllm

SERVED_NAME = "qwen3-reranker-tiny"
TOL = 1e-5
QUERY = "Which city is the capital of France?"
DOCS = [
    f"Document {i}: {'Paris is the capital of France' if i % 3 else 'bananas'} ({i})."
    for i in range(8)
]
INSTR = "Given a web search query, retrieve relevant passages that answer the query"
#: Longest wait for a hammering client to reach a given number of successful calls.
PROGRESS_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from vllm_server.running_server(
        tiny_model_dir, tmp_path_factory, "vllm-restart", served_model_name=SERVED_NAME
    )


def backend(base_url: str | list[str], **settings: Any) -> RemoteBackend:
    config = RerankConfig(
        **{
            "model": SERVED_NAME,
            "backend": "remote",
            "base_url": base_url,
            "max_length": 512,
            "max_docs_per_request": 2,
            "max_concurrency": 2,
            "timeout": 10.0,
            "max_retries": 2,
            **settings,
        }
    )
    return RemoteBackend(config, _backoff_base=0.2, _backoff_cap=1.0)


@dataclass
class CallRecord:
    started: float
    elapsed: float
    scores: list[float] | None
    error: BaseException | None


class Hammer:
    """Scores ``DOCS`` again and again in a background thread, recording every call."""

    def __init__(self, name: str, rb: RemoteBackend, *, use_async: bool) -> None:
        self.name = name
        self.backend = rb
        self.use_async = use_async
        self.records: list[CallRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hammer-{name}", daemon=True)

    def start(self) -> Hammer:
        self._thread.start()
        return self

    def _record(self, started: float, scores: Any, error: BaseException | None) -> None:
        self.records.append(
            CallRecord(started, time.monotonic() - started, scores[0] if scores else None, error)
        )

    def _run(self) -> None:
        if self.use_async:
            asyncio.run(self._arun())
            return
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._record(started, self.backend.score_groups([(QUERY, DOCS)], INSTR), None)
            except BaseException as exc:
                self._record(started, None, exc)
            time.sleep(0.05)

    async def _arun(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                scores = await self.backend.ascore_groups([(QUERY, DOCS)], INSTR)
                self._record(started, scores, None)
            except BaseException as exc:
                self._record(started, None, exc)
            await asyncio.sleep(0.05)
        await self.backend.aclose()

    def successes_after(self, t: float) -> int:
        return sum(r.error is None and r.started >= t for r in self.records)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), f"{self.name}: a call never returned"
        self.backend.close()


def assert_close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    diff = max(abs(a - b) for a, b in zip(got, want, strict=True))
    assert diff < TOL, (diff, got, want)


def wait_for(hammers: list[Hammer], n: int, after: float) -> None:
    ok = faultkit.wait_until(
        lambda: all(h.successes_after(after) >= n for h in hammers), PROGRESS_TIMEOUT
    )
    assert ok, {h.name: [(r.error, r.elapsed) for r in h.records[-5:]] for h in hammers}


def check_records(hammer: Hammer, want: list[float]) -> None:
    """Every call returned the reference scores or raised a typed error within its deadline."""
    deadline = faultkit.request_deadline(hammer.backend) + 2.0
    assert hammer.records, hammer.name
    for record in hammer.records:
        assert record.elapsed <= deadline, (hammer.name, record)
        if record.error is None:
            assert record.scores is not None
            assert_close(record.scores, want)
        else:
            assert isinstance(record.error, RemoteError), (hammer.name, record.error)
            assert not isinstance(record.error, InvalidResponseError), (hammer.name, record)


def reference(server: Any) -> list[float]:
    rb = backend(server.url)
    try:
        return rb.score_groups([(QUERY, DOCS)], INSTR)[0]
    finally:
        rb.close()


def test_one_of_two_replicas_goes_down_mid_run(server: Any) -> None:
    want = reference(server)
    proxy = faultkit.TcpProxy(server.port)
    hammers = [
        Hammer(f"{mode}-two-replicas", backend([proxy.url, server.url]), use_async=mode == "async")
        for mode in ("sync", "async")
    ]
    try:
        for h in hammers:
            h.start()
        wait_for(hammers, 3, 0.0)
        assert proxy.accepted > 0  # the proxied replica really served requests
        down = time.monotonic()
        proxy.close()
        wait_for(hammers, 5, down)
    finally:
        proxy.close()
        for h in hammers:
            h.stop()
    for h in hammers:
        errors = [r.error for r in h.records if r.error is not None]
        assert not errors, (h.name, errors)
        check_records(h, want)


def test_server_restart_mid_run(server: Any) -> None:
    want = reference(server)
    dead = f"http://127.0.0.1:{vllm_server.free_port()}"
    hammers = [
        Hammer("sync", backend(server.url), use_async=False),
        Hammer("async", backend(server.url), use_async=True),
        Hammer("sync-dead-replica", backend([dead, server.url]), use_async=False),
    ]
    try:
        for h in hammers:
            h.start()
        wait_for(hammers, 3, 0.0)
        server.stop()
        stopped = time.monotonic()
        server.start()  # the same port
        restarted = time.monotonic()
        wait_for(hammers, 3, restarted)
    finally:
        for h in hammers:
            h.stop()
    for h in hammers:
        check_records(h, want)
        # While the server was down calls failed, as connection errors (refused) ...
        down = [r for r in h.records if stopped < r.started and r.started + r.elapsed < restarted]
        assert any(isinstance(r.error, RemoteConnectionError) for r in down), h.name
        # ... and the same backend (its pooled connections all dead) recovered.
        assert h.records[-1].error is None, (h.name, h.records[-1])
