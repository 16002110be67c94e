"""Fault matrix of the remote backend: every fault, sync and async driver.

For each fault the backend either **recovers** (the scores equal those the fake
server gives without the fault) or raises a **typed error** (a class of
``_errors.py``) **within its deadline** (``faultkit.request_deadline``: what
its ``timeout``, ``max_retries``, backoff and replicas allow). The outcome
table of ``docs/reliability.md`` lists these cases.

Most faults are injected into ``FakeVLLM`` (``tests/fake_vllm.py``,
``httpx.MockTransport``) on the scoring routes; the last section repeats the
transport faults on real sockets (``faultkit.RawServer``), where httpx's own
timeouts and errors fire. Pauses are tiny (backoff of a few ms) so the whole
matrix takes seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fake_vllm
import faultkit
import httpx
import pytest
import vllm_server
from fake_vllm import DOCS, INSTR, MODES, QUERY, URL, FakeVLLM, expected, make_backend, run

from qwen3_rerank_core._backends._remote import RemoteBackend
from qwen3_rerank_core._config import RerankConfig
from qwen3_rerank_core._errors import (
    InvalidResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

SCORE_PATHS = ("/classify", "/v1/score")
MAX_RETRIES = 2
#: Seconds of slack on top of a deadline (scheduling, thread start-up).
SLACK = 1.0

Make = Callable[[httpx.Request], httpx.Response]


# ----------------------------------------------------------------------------- faults


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def connect_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("timed out", request=request)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def disconnected(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


def reset(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)


def status(code: int, retry_after: Callable[[], str] | None = None) -> Make:
    def make(request: httpx.Request) -> httpx.Response:
        headers = {"Retry-After": retry_after()} if retry_after else {}
        return httpx.Response(code, headers=headers, json={"error": {"message": f"busy {code}"}})

    return make


def http_date(seconds: float) -> Callable[[], str]:
    return lambda: email.utils.formatdate(time.time() + seconds, usegmt=True)


def seconds(value: float) -> Callable[[], str]:
    return lambda: f"{value:g}"


@dataclass
class Fault:
    """What the scoring routes do (``make``), how often, and what the call must end with."""

    make: Make
    #: How many scoring requests fail (None: all of them).
    times: int | None = None
    #: None: the call recovers with the right scores; else the error it must raise.
    error: type[RemoteError] | None = None
    #: Scoring requests the call sends in all (None: not checked).
    requests: int | None = None
    #: The fault carries a Retry-After that is honoured (longer pauses allowed).
    retry_after: bool = False
    #: The call takes at least this long (an honoured Retry-After).
    at_least: float = 0.0
    #: Text the error message must contain.
    match: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def hook(self) -> Callable[[httpx.Request, Any], httpx.Response | None]:
        count = 0
        lock = threading.Lock()

        def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
            nonlocal count
            if request.url.path not in SCORE_PATHS:
                return None
            with lock:
                count += 1
                if self.times is not None and count > self.times:
                    return None
            return self.make(request)

        return hook


TRANSIENT = MAX_RETRIES  # fails that many times, then the last retry succeeds
ALL_TRIES = MAX_RETRIES + 1

FAULTS: dict[str, Fault] = {
    # --- timeouts and broken connections: retried, then a typed error
    "read timeout, transient": Fault(read_timeout, TRANSIENT, requests=ALL_TRIES),
    "read timeout": Fault(read_timeout, None, RemoteTimeoutError, ALL_TRIES, match="in time"),
    "connect timeout, transient": Fault(connect_timeout, TRANSIENT, requests=ALL_TRIES),
    "connect timeout": Fault(connect_timeout, None, RemoteTimeoutError, ALL_TRIES),
    "connection refused, transient": Fault(refused, TRANSIENT, requests=ALL_TRIES),
    "connection refused": Fault(refused, None, RemoteConnectionError, ALL_TRIES, match="refused"),
    "disconnected, transient": Fault(disconnected, TRANSIENT, requests=ALL_TRIES),
    "disconnected": Fault(disconnected, None, RemoteConnectionError, ALL_TRIES),
    "connection reset, transient": Fault(reset, TRANSIENT, requests=ALL_TRIES),
    "connection reset": Fault(reset, None, RemoteConnectionError, ALL_TRIES, match="reset"),
    # --- overloaded or failing server: retried, then the status
    **{
        f"HTTP {code}, transient": Fault(status(code), TRANSIENT, requests=ALL_TRIES)
        for code in (429, 500, 502, 503, 504)
    },
    **{
        f"HTTP {code}": Fault(status(code), None, RemoteStatusError, ALL_TRIES, match=f"{code}")
        for code in (429, 500, 502, 503, 504)
    },
    # --- Retry-After: honoured when short, never waited for when too long
    "429 Retry-After seconds": Fault(
        status(429, seconds(0.3)), 1, requests=2, retry_after=True, at_least=0.3
    ),
    "503 Retry-After HTTP-date": Fault(
        status(503, http_date(2)), 1, requests=2, retry_after=True, at_least=1.0
    ),
    "429 Retry-After in the past": Fault(
        status(429, http_date(-30)), 1, requests=2, retry_after=True
    ),
    "429 Retry-After unparsable": Fault(status(429, lambda: "soon"), TRANSIENT, requests=ALL_TRIES),
    "429 Retry-After 3600 s": Fault(
        status(429, seconds(3600)), None, RemoteStatusError, 1, match="retry after 3600 s"
    ),
    "503 Retry-After in an hour (HTTP-date)": Fault(
        status(503, http_date(3600)), None, RemoteStatusError, 1, match="not retried"
    ),
    "429 Retry-After above max_retry_after": Fault(
        status(429, seconds(1.5)),
        None,
        RemoteStatusError,
        1,
        match="longer than",
        settings={"max_retry_after": 1.0},
    ),
}


def backend_for(fake: FakeVLLM, **settings: Any) -> RemoteBackend:
    max_retry_after = settings.pop("max_retry_after", None)
    backend = make_backend(fake, **{"max_retries": MAX_RETRIES, "timeout": 5.0, **settings})
    if max_retry_after is not None:
        backend._policy = dataclasses.replace(backend._policy, max_retry_after=max_retry_after)
    return backend


def scoring_requests(fake: FakeVLLM) -> int:
    return sum(fake.paths(p).__len__() for p in SCORE_PATHS)


def check_deadline(elapsed: float, backend: RemoteBackend, *, retry_after: bool = False) -> None:
    deadline = faultkit.request_deadline(backend, retry_after=retry_after)
    assert elapsed <= deadline + SLACK, (elapsed, deadline)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prompt_format", ["client", "server"])
@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(name: str, prompt_format: str, mode: str) -> None:
    fault = FAULTS[name]
    fake = FakeVLLM()
    backend = backend_for(fake, prompt_format=prompt_format, **fault.settings)
    backend.score_groups([(QUERY, ["warm-up"])], INSTR)  # setup calls out of the way
    fake.requests.clear()
    fake.hook = fault.hook()
    start = time.monotonic()
    if fault.error is None:
        assert run(backend, mode, [(QUERY, DOCS)]) == [expected(QUERY, DOCS)]
    else:
        with pytest.raises(fault.error, match=fault.match) as info:
            run(backend, mode, [(QUERY, DOCS)])
        assert "vllm.test" in str(info.value)  # says which server
    elapsed = time.monotonic() - start
    check_deadline(elapsed, backend, retry_after=fault.retry_after)
    assert elapsed >= fault.at_least
    if fault.requests is not None:
        assert scoring_requests(fake) == fault.requests


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["read timeout", "connection refused", "HTTP 503"])
def test_fault_during_setup(name: str, mode: str) -> None:
    """The first /tokenize calls are retried and fail the same way."""
    fault = FAULTS[name]
    fake = FakeVLLM()

    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        return fault.make(request) if request.url.path == "/tokenize" else None

    fake.hook = hook
    backend = backend_for(fake)
    start = time.monotonic()
    with pytest.raises(fault.error or RemoteError):
        run(backend, mode, [(QUERY, DOCS)])
    check_deadline(time.monotonic() - start, backend)
    assert not fake.paths("/classify")


# ----------------------------------------------------------------------------- bad answers

BAD = {
    name: fake_vllm.BAD_ANSWERS[name]
    for name in (
        "malformed json",
        "not an object",
        "no data",
        "one result too few",
        "one result too many",
        "duplicate index",
        "index out of range",
        "NaN score",
        "infinite score",
        "score above one",
    )
}
BAD["score below zero"] = lambda n: {"data": fake_vllm.result_items(n, probs=[-0.25])}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BAD))
def test_bad_answer(name: str, mode: str) -> None:
    """A 200 answer that does not fit the request: InvalidResponseError, not retried."""
    fake = FakeVLLM()
    fake.hook = fake_vllm.classify_answer(BAD[name])
    backend = backend_for(fake)
    start = time.monotonic()
    with pytest.raises(InvalidResponseError):
        run(backend, mode, [(QUERY, DOCS)])
    check_deadline(time.monotonic() - start, backend)
    assert len(fake.bodies("/classify")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_one_misaligned_chunk_fails_the_whole_call(mode: str) -> None:
    """No partial results: one chunk with a wrong count among good ones fails the call."""
    fake = FakeVLLM()
    fake.hook = fake_vllm.on_classify_call(
        3,
        lambda body: httpx.Response(
            200, json={"data": fake_vllm.result_items(len(body["input"]) - 1)}
        ),
    )
    backend = backend_for(fake, max_docs_per_request=2, max_concurrency=1)
    with pytest.raises(InvalidResponseError, match="expected 2 results, got 1"):
        run(backend, mode, [(QUERY, [f"d{i}" for i in range(10)])])
    assert len(fake.bodies("/classify")) == 3  # the rest was not even sent


# ----------------------------------------------------------------------------- replicas

REPLICAS = ("http://a.test:8000", "http://b.test:8000", "http://c.test:8000")


def on_host(host: str, make: Make) -> Callable[[httpx.Request, Any], httpx.Response | None]:
    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        return make(request) if request.url.host == host else None

    return hook


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name",
    [
        "connection refused",
        "read timeout",
        "HTTP 503",
        "connection reset",
        "429 Retry-After 3600 s",
    ],
)
def test_one_replica_of_three_down(name: str, mode: str) -> None:
    """Every request still succeeds, on the other replicas; each still spends at most
    one retry on the bad one (it is avoided on the retry)."""
    fake = FakeVLLM()
    fake.hook = on_host("b.test", FAULTS[name].make)
    backend = backend_for(fake, base_url=REPLICAS, max_retries=1, max_docs_per_request=1)
    docs = [f"document {i}" for i in range(12)]
    start = time.monotonic()
    assert run(backend, mode, [(QUERY, docs)]) == [expected(QUERY, docs)]
    check_deadline(time.monotonic() - start, backend)
    hosts = [h for h, p, _ in fake.requests if p == "/classify"]
    assert sum(h != "b.test" for h in hosts) == len(docs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "error", "rounds"),
    [
        ("connection refused", RemoteConnectionError, MAX_RETRIES + 1),
        ("read timeout", RemoteTimeoutError, MAX_RETRIES + 1),
        ("HTTP 502", RemoteStatusError, MAX_RETRIES + 1),
        ("429 Retry-After 3600 s", RemoteStatusError, 1),
    ],
)
def test_all_replicas_down(name: str, error: type[RemoteError], rounds: int, mode: str) -> None:
    fake = FakeVLLM()
    backend = backend_for(fake, base_url=REPLICAS)
    backend.score_groups([(QUERY, ["warm-up"])], INSTR)
    fake.requests.clear()
    fake.hook = FAULTS[name].hook()
    start = time.monotonic()
    with pytest.raises(error):
        run(backend, mode, [(QUERY, ["one document"])])
    check_deadline(time.monotonic() - start, backend)
    per_round = len(REPLICAS) if name in ("connection refused", "429 Retry-After 3600 s") else 1
    assert scoring_requests(fake) == rounds * per_round
    assert len({h for h, _, _ in fake.requests}) == min(len(REPLICAS), rounds * per_round)


# ----------------------------------------------------------------------------- failing fast


@pytest.mark.parametrize("mode", MODES)
def test_a_fatal_chunk_does_not_wait_for_slow_ones(mode: str) -> None:
    """When one request fails for good, the call raises at once, not after the others."""
    fake = FakeVLLM()
    slow = 2.0

    def fatal(request: httpx.Request) -> bool:
        return (
            request.url.path == "/classify" and "fatal" in json.loads(request.content)["input"][0]
        )

    def sync_handler(request: httpx.Request) -> httpx.Response:
        if fatal(request):
            return httpx.Response(404, json={"error": {"message": "gone"}})
        if request.url.path == "/classify":
            time.sleep(slow)
        return fake(request)

    async def async_handler(request: httpx.Request) -> httpx.Response:
        if fatal(request):
            return httpx.Response(404, json={"error": {"message": "gone"}})
        if request.url.path == "/classify":
            await asyncio.sleep(slow)
        return fake(request)

    config = RerankConfig(
        model="m", backend="remote", base_url=URL, max_docs_per_request=1, max_concurrency=4
    )
    handler = sync_handler if mode == "sync" else async_handler
    backend = RemoteBackend(config, transport=httpx.MockTransport(handler))
    start = time.monotonic()
    with pytest.raises(RemoteStatusError, match="gone"):
        run(backend, mode, [(QUERY, ["slow 1", "fatal", "slow 2", "slow 3"])])
    assert time.monotonic() - start < slow / 2


# ----------------------------------------------------------------------------- real sockets


def bounded(fn: Callable[[], Any], limit: float) -> tuple[Any, BaseException | None, float]:
    """Run ``fn`` in a thread; fail the test (instead of hanging it) after ``limit`` s."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - start
    assert not thread.is_alive(), f"the call hung for more than {limit} s"
    return (result[0] if result else None), (errors[0] if errors else None), elapsed


def socket_backend(url: str) -> RemoteBackend:
    """A backend on real sockets; the two setup requests go one after the other."""
    return make_backend(
        None, base_url=url, timeout=0.4, max_retries=1, max_concurrency=1, backoff=(0.01, 0.05)
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("silent", RemoteTimeoutError),
        ("trickle", RemoteTimeoutError),
        ("hang_up", RemoteConnectionError),
        ("reset", RemoteConnectionError),
    ],
)
def test_real_socket_fault(behaviour: Any, error: type[RemoteError], mode: str) -> None:
    with faultkit.RawServer(behaviour) as server:
        backend = socket_backend(server.url)
        deadline = faultkit.request_deadline(backend)
        if mode == "sync":
            deadline += backend.config.timeout  # the last read of a trickled answer
        _, exc, elapsed = bounded(lambda: run(backend, mode, [(QUERY, ["a"])]), deadline + 10)
        assert isinstance(exc, error), exc
        assert elapsed <= deadline + SLACK, (elapsed, deadline)
        assert server.accepted >= 2  # the first setup request and its retry
    if behaviour in ("silent", "trickle"):
        assert elapsed >= backend.config.timeout * (backend.config.max_retries + 1)


@pytest.mark.parametrize("mode", MODES)
def test_real_refused_port(mode: str) -> None:
    url = f"http://127.0.0.1:{vllm_server.free_port()}"
    backend = socket_backend(url)
    _, exc, elapsed = bounded(lambda: run(backend, mode, [(QUERY, ["a"])]), 30)
    assert isinstance(exc, RemoteConnectionError), exc
    assert elapsed <= faultkit.request_deadline(backend) + SLACK


@pytest.mark.parametrize("mode", MODES)
def test_real_dead_replica_next_to_a_live_one(mode: str) -> None:
    """A dead port and a silent server next to a good (mock) one: real errors, recovered."""
    dead = f"http://127.0.0.1:{vllm_server.free_port()}"
    fake = FakeVLLM()
    good = httpx.MockTransport(fake)

    class Router(httpx.BaseTransport, httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.real = httpx.HTTPTransport()
            self.areal = httpx.AsyncHTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.host == "127.0.0.1":
                return self.real.handle_request(request)
            return good.handle_request(request)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.host == "127.0.0.1":
                return await self.areal.handle_async_request(request)
            return await good.handle_async_request(request)

    with faultkit.RawServer("silent") as silent:
        config = RerankConfig(
            model="m",
            backend="remote",
            base_url=(dead, silent.url, URL),
            timeout=0.4,
            max_retries=2,
            max_docs_per_request=1,
        )
        backend = RemoteBackend(config, transport=Router(), _backoff_base=0.01, _backoff_cap=0.05)
        docs = [f"document {i}" for i in range(6)]
        got, exc, elapsed = bounded(lambda: run(backend, mode, [(QUERY, docs)]), 30)
    assert exc is None, exc
    assert got == [expected(QUERY, docs)]
    assert elapsed <= 2 * faultkit.request_deadline(backend) + SLACK
