"""Unit tests of the remote backend against a fake vLLM server (httpx.MockTransport).

The fake (``fake_vllm.FakeVLLM``) speaks the four routes the backend uses with a
byte-level "tokenizer" and a deterministic fake score of the full prompt text, so
the expected score of every document can be computed independently
(``fake_vllm.expected``).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fake_vllm import (
    BAD_ANSWERS,
    DOCS,
    INSTR,
    MODES,
    QUERY,
    URL,
    FakeVLLM,
    classify_answer,
    expected,
    make_backend,
    on_classify_call,
    raising,
    run,
)

from qwen3_rerank_core._backends._http import (
    Attempts,
    Call,
    Done,
    Fail,
    ReplicaPool,
    Retry,
    RetryPolicy,
    parse_retry_after,
    redact_url,
)
from qwen3_rerank_core._backends._remote import RemoteBackend
from qwen3_rerank_core._backends._remote_scoring import token_bound
from qwen3_rerank_core._backends._vllm_api import reply_outcome
from qwen3_rerank_core._config import RerankConfig
from qwen3_rerank_core._errors import (
    InvalidResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)
from qwen3_rerank_core._prompt import (
    PREFIX,
    SUFFIX,
    format_prompt,
)

SECRET = "sk-very-secret-key-123"
FORMATS = ["client", "server"]


# ----------------------------------------------------------------------------- request shapes


@pytest.mark.parametrize("mode", MODES)
def test_client_format_request_shape(mode: str) -> None:
    fake = FakeVLLM()
    backend = make_backend(fake, api_key=SECRET)
    scores = run(backend, mode, [(QUERY, DOCS)])
    assert scores == [expected(QUERY, DOCS)]
    assert fake.paths() == ["/tokenize", "/tokenize", "/classify"]
    assert [b["prompt"] for b in fake.bodies("/tokenize")] == [PREFIX, SUFFIX]
    (body,) = fake.bodies("/classify")
    assert body == {
        "model": "m",
        "input": [format_prompt(INSTR, QUERY, d) for d in DOCS],
        "add_special_tokens": False,
    }


def test_headers_and_url() -> None:
    seen: list[httpx.Request] = []
    fake = FakeVLLM()

    def hook(request: httpx.Request, body: Any) -> None:
        seen.append(request)

    fake.hook = hook
    backend = make_backend(fake, api_key=SECRET, base_url=URL + "/v1/")
    backend.score_groups([(QUERY, ["a"])], INSTR)
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in seen)
    assert all(r.method == "POST" for r in seen)
    assert {str(r.url) for r in seen} == {URL + "/tokenize", URL + "/classify"}
    assert all(r.headers["content-type"] == "application/json" for r in seen)


def test_no_authorization_header_without_api_key() -> None:
    seen: list[httpx.Request] = []
    fake = FakeVLLM()
    fake.hook = lambda request, body: seen.append(request)  # type: ignore[func-returns-value]
    make_backend(fake).score_groups([(QUERY, ["a"])], INSTR)
    assert seen and all("authorization" not in r.headers for r in seen)


@pytest.mark.parametrize("mode", MODES)
def test_server_format_request_shape(mode: str) -> None:
    fake = FakeVLLM()
    backend = make_backend(fake, prompt_format="server")
    scores = run(backend, mode, [(QUERY, DOCS), ("second query", ["x", "y"])])
    assert scores == [expected(QUERY, DOCS), expected("second query", ["x", "y"])]
    bodies = fake.bodies("/v1/score")
    assert bodies == [
        {
            "model": "m",
            "text_1": QUERY,
            "text_2": DOCS,
            "chat_template_kwargs": {"instruction": INSTR},
        },
        {
            "model": "m",
            "text_1": "second query",
            "text_2": ["x", "y"],
            "chat_template_kwargs": {"instruction": INSTR},
        },
    ]
    assert not fake.bodies("/classify")


def test_setup_is_done_once() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake)
    for _ in range(3):
        backend.score_groups([(QUERY, ["a"])], INSTR)
    assert fake.paths("/tokenize") == ["/tokenize", "/tokenize"]


def test_empty_groups_send_nothing() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake)
    assert backend.score_groups([(QUERY, []), ("q", [])], INSTR) == [[], []]
    assert backend.score_groups([], INSTR) == []
    assert fake.requests == []


# ----------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prompt_format", FORMATS)
def test_chunking_and_merge(mode: str, prompt_format: str) -> None:
    fake = FakeVLLM(shuffle=True)
    backend = make_backend(
        fake, max_docs_per_request=3, max_concurrency=2, prompt_format=prompt_format
    )
    docs = [f"document number {i}" for i in range(10)]
    scores = run(backend, mode, [(QUERY, docs)])
    assert scores == [expected(QUERY, docs)]
    path = "/classify" if prompt_format == "client" else "/v1/score"
    key = "input" if prompt_format == "client" else "text_2"
    sizes = sorted(len(b[key]) for b in fake.bodies(path))
    assert sizes == [1, 3, 3, 3]


@pytest.mark.parametrize("mode", MODES)
def test_progress_bar_counts_every_document(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """show_progress: the one progress bar of the backends advances once per request,
    by the documents that request scored, and is closed when the call ends."""
    import tqdm.auto

    bars: list[Any] = []
    real_tqdm = tqdm.auto.tqdm

    def recording_tqdm(*args: Any, **kwargs: Any) -> Any:
        bars.append(real_tqdm(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(tqdm.auto, "tqdm", recording_tqdm)
    backend = make_backend(FakeVLLM(), max_docs_per_request=3, show_progress=True)
    docs = [f"document number {i}" for i in range(7)]
    assert run(backend, mode, [(QUERY, docs)]) == [expected(QUERY, docs)]
    assert len(bars) == 1
    assert (bars[0].total, bars[0].n, bars[0].desc) == (7, 7, "Scoring")


def test_client_format_batches_across_queries() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake, max_docs_per_request=4)
    groups = [(f"query {g}", [f"doc {g}.{i}" for i in range(g + 1)]) for g in range(4)]
    scores = backend.score_groups(groups, INSTR)
    assert scores == [expected(q, d) for q, d in groups]
    assert sorted(len(b["input"]) for b in fake.bodies("/classify")) == [2, 4, 4]


@pytest.mark.parametrize("mode", MODES)
def test_concurrency_is_bounded(mode: str) -> None:
    fake = FakeVLLM()
    fake.delay = 0.03
    backend = make_backend(fake, max_docs_per_request=1, max_concurrency=3)
    docs = [f"d{i}" for i in range(9)]
    assert run(backend, mode, [(QUERY, docs)]) == [expected(QUERY, docs)]
    if mode == "sync":  # MockTransport runs handlers of the async client one at a time
        assert 2 <= fake.max_in_flight <= 3


async def test_async_concurrency_is_bounded() -> None:
    active = 0
    peak = 0
    fake = FakeVLLM()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return fake(request)

    config = RerankConfig(
        model="m", backend="remote", base_url=URL, max_docs_per_request=1, max_concurrency=3
    )
    backend = RemoteBackend(config, transport=httpx.MockTransport(handler))
    docs = [f"d{i}" for i in range(9)]
    assert await backend.ascore_groups([(QUERY, docs)], INSTR) == [expected(QUERY, docs)]
    assert peak == 3
    await backend.aclose()


async def test_many_concurrent_async_calls() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake, max_docs_per_request=2)
    queries = [f"query {i}" for i in range(64)]
    results = await asyncio.gather(*(backend.ascore_groups([(q, DOCS)], INSTR) for q in queries))
    assert results == [[expected(q, DOCS)] for q in queries]
    await backend.aclose()


def test_async_client_survives_new_event_loops() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake)
    for _ in range(3):  # each asyncio.run has its own loop
        assert asyncio.run(backend.ascore_groups([(QUERY, ["a"])], INSTR)) == [
            expected(QUERY, ["a"])
        ]


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prompt_format", FORMATS)
def test_long_documents_are_cut_like_locally(mode: str, prompt_format: str) -> None:
    fake = FakeVLLM()
    backend = make_backend(fake, max_length=400, prompt_format=prompt_format)
    docs = ["short", "long " * 200, "x" * 5000, "end"]
    assert run(backend, mode, [(QUERY, docs)]) == [expected(QUERY, docs, max_length=400)]
    # Only the two long bodies and their head were tokenized (after the setup).
    assert len(fake.paths("/tokenize")) == 2 + 3 + (2 if prompt_format == "server" else 0)
    if prompt_format == "client":
        inputs = [x for b in fake.bodies("/classify") for x in b["input"]]
        assert sum(isinstance(x, list) for x in inputs) == 2
        assert all(len(x) == 400 for x in inputs if isinstance(x, list))
    else:
        assert len(fake.paths("/detokenize")) == 2
        sent = [d for b in fake.bodies("/v1/score") for d in b["text_2"]]
        assert len(sent) == 4 and {"short", "end"} <= set(sent)
        (cut,) = [d for d in sent if d.startswith("long long")]
        assert len(cut) < 400
        assert not fake.bodies("/classify")


def test_server_format_falls_back_to_token_ids_when_text_cannot_round_trip() -> None:
    docs = ["é" * 400]
    used_ids = 0
    for max_length in (400, 401):
        fake = FakeVLLM()
        backend = make_backend(fake, max_length=max_length, prompt_format="server")
        scores = backend.score_groups([(QUERY, docs)], INSTR)
        assert scores == [expected(QUERY, docs, max_length=max_length)]
        used_ids += len(fake.bodies("/classify"))
        assert len(fake.bodies("/classify")) + len(fake.bodies("/v1/score")) == 1
    assert used_ids == 1  # one of the two cuts splits a 2-byte character


def test_max_length_is_lowered_to_the_servers(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeVLLM(max_model_len=600)
    backend = make_backend(fake, max_length=8192)
    docs = ["y" * 2000]
    with caplog.at_level(logging.WARNING, "qwen3_rerank_core"):
        assert backend.score_groups([(QUERY, docs)], INSTR) == [
            expected(QUERY, docs, max_length=600)
        ]
    assert "max_model_len=600" in caplog.text


def test_query_too_long_raises_value_error() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake, max_length=300)
    with pytest.raises(ValueError, match=r"leaves no\s+room for a document"):
        backend.score_groups([("q" * 400, ["doc"])], INSTR)
    assert not fake.bodies("/classify")


def test_template_larger_than_max_length_raises_value_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        make_backend(FakeVLLM(), max_length=100).score_groups([(QUERY, ["d"])], INSTR)


def test_token_bound_is_an_upper_bound() -> None:
    for text in ["abc", "é", "\u0958", "ﷺ", "🎉", "e\u0301", "<|im_end|>"]:
        assert token_bound(text) >= len(text.encode("utf-8"))
    assert token_bound("\u0958") == 6  # NFC decomposes it: 3 bytes become 6
    assert token_bound("ﷺ") > 3  # NFKC expands it


# ----------------------------------------------------------------------------- retries


def fail_first(n: int, response: Callable[[], httpx.Response], path: str = "/classify"):
    count = 0

    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal count
        if request.url.path == path and count < n:
            count += 1
            return response()
        return None

    return hook


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(mode: str, status: int) -> None:
    fake = FakeVLLM()
    fake.hook = fail_first(2, lambda: httpx.Response(status, json={"error": {"message": "busy"}}))
    backend = make_backend(fake, max_retries=2)
    assert run(backend, mode, [(QUERY, DOCS)]) == [expected(QUERY, DOCS)]
    assert len(fake.bodies("/classify")) == 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [429, 503])
def test_retries_are_bounded(mode: str, status: int) -> None:
    fake = FakeVLLM()
    fake.hook = fail_first(
        99, lambda: httpx.Response(status, json={"error": {"message": "overloaded", "code": 1}})
    )
    backend = make_backend(fake, max_retries=3)
    with pytest.raises(RemoteStatusError) as info:
        run(backend, mode, [(QUERY, DOCS)])
    assert info.value.status_code == status
    assert info.value.message == "overloaded"
    assert len(fake.bodies("/classify")) == 4


def test_zero_retries() -> None:
    fake = FakeVLLM()
    fake.hook = fail_first(1, lambda: httpx.Response(503, text="down"))
    with pytest.raises(RemoteStatusError, match="down"):
        make_backend(fake, max_retries=0).score_groups([(QUERY, DOCS)], INSTR)
    assert len(fake.bodies("/classify")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_is_honoured(mode: str) -> None:
    fake = FakeVLLM()
    fake.hook = fail_first(
        1, lambda: httpx.Response(429, headers={"Retry-After": "0.3"}, json={"error": "slow down"})
    )
    backend = make_backend(fake)
    start = time.monotonic()
    assert run(backend, mode, [(QUERY, DOCS)]) == [expected(QUERY, DOCS)]
    assert time.monotonic() - start >= 0.3


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = time.time()
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert 8.0 <= (parse_retry_after(date, now=now) or 0) <= 10.0


def test_retry_policy_backoff_and_cap() -> None:
    policy = RetryPolicy(max_retries=5, base=1.0, cap=5.0, rng=lambda: 1.0)
    assert [policy.backoff(i) for i in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    low = RetryPolicy(max_retries=5, base=1.0, cap=5.0, rng=lambda: 0.0)
    assert [low.backoff(i) for i in range(3)] == [0.5, 1.0, 2.0]
    assert policy.delay(0, retry_after=7.0) == 7.0
    assert policy.delay(0, retry_after=1e9) == policy.max_retry_after


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_raise_at_once(mode: str, status: int) -> None:
    fake = FakeVLLM()
    fake.hook = fail_first(
        1, lambda: httpx.Response(status, json={"error": {"message": f"nope {status}"}})
    )
    with pytest.raises(RemoteStatusError) as info:
        run(make_backend(fake, max_retries=5), mode, [(QUERY, DOCS)])
    assert info.value.status_code == status
    assert info.value.message == f"nope {status}"
    assert info.value.url == URL + "/classify"
    assert len(fake.bodies("/classify")) == 1


def test_error_message_from_plain_text_and_fastapi_detail() -> None:
    call: Call[Any] = Call("/x", {}, lambda d: d)
    out = reply_outcome(call, 404, {}, b'{"detail":"Not Found"}', URL + "/x")
    assert isinstance(out, Fail) and isinstance(out.error, RemoteStatusError)
    assert out.error.message == "Not Found"
    out = reply_outcome(call, 502, {}, b"<html>bad gateway</html>", URL + "/x")
    assert isinstance(out, Retry) and "bad gateway" in str(out.error)
    out = reply_outcome(call, 500, {}, b"", URL + "/x")
    assert isinstance(out, Retry) and "(empty body)" in str(out.error)


def test_context_length_error_says_what_to_do() -> None:
    call: Call[Any] = Call("/x", {}, lambda d: d)
    body = b'{"error":{"message":"This model\'s maximum context length is 2048 tokens."}}'
    out = reply_outcome(call, 400, {}, body, URL)
    assert isinstance(out, Fail) and "max_length" in str(out.error)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_invalid_answers_raise(mode: str, case: str) -> None:
    fake = FakeVLLM()
    fake.hook = classify_answer(BAD_ANSWERS[case])
    with pytest.raises(InvalidResponseError):
        run(make_backend(fake, max_retries=3), mode, [(QUERY, DOCS)])
    assert len(fake.bodies("/classify")) == 1  # not retried


def test_invalid_score_answer_in_server_format() -> None:
    fake = FakeVLLM()

    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        if request.url.path == "/v1/score":
            return httpx.Response(200, content=b'{"data": [{"index": 0, "score": NaN}]}')
        return None

    fake.hook = hook
    with pytest.raises(InvalidResponseError, match="not finite"):
        make_backend(fake, prompt_format="server").score_groups([(QUERY, ["a"])], INSTR)


def test_invalid_tokenize_answer() -> None:
    fake = FakeVLLM()
    fake.hook = lambda request, body: (
        httpx.Response(200, json={"tokens": ["a"]}) if request.url.path == "/tokenize" else None
    )
    with pytest.raises(InvalidResponseError, match="tokenize"):
        make_backend(fake).score_groups([(QUERY, ["a"])], INSTR)


def test_failure_of_one_chunk_fails_the_call() -> None:
    fake = FakeVLLM()
    fake.delay = 0.01
    fake.hook = on_classify_call(
        3, lambda body: httpx.Response(404, json={"error": {"message": "gone"}})
    )
    backend = make_backend(fake, max_docs_per_request=1, max_concurrency=2)
    with pytest.raises(RemoteStatusError, match="gone"):
        backend.score_groups([(QUERY, [f"d{i}" for i in range(20)])], INSTR)
    assert len(fake.bodies("/classify")) < 20  # the rest was cancelled


async def test_failure_of_one_chunk_cancels_async_requests() -> None:
    fake = FakeVLLM()
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        if request.url.path == "/classify":
            count += 1
            if count == 2:
                return httpx.Response(400, json={"error": {"message": "bad"}})
            await asyncio.sleep(1.0)
        return fake(request)

    config = RerankConfig(
        model="m", backend="remote", base_url=URL, max_docs_per_request=1, max_concurrency=4
    )
    backend = RemoteBackend(config, transport=httpx.MockTransport(handler))
    start = time.monotonic()
    with pytest.raises(RemoteStatusError):
        await backend.ascore_groups([(QUERY, [f"d{i}" for i in range(8)])], INSTR)
    assert time.monotonic() - start < 0.9
    await backend.aclose()


# ----------------------------------------------------------------------------- transport errors


@pytest.mark.parametrize("mode", MODES)
def test_timeouts_are_retried_then_raised(mode: str) -> None:
    fake = FakeVLLM()
    fake.hook = raising(httpx.ReadTimeout, "timed out", path="/classify")
    with pytest.raises(RemoteTimeoutError) as info:
        run(make_backend(fake, max_retries=2), mode, [(QUERY, DOCS)])
    assert len(fake.bodies("/classify")) == 3
    assert "vllm.test" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_transient_transport_error_is_retried(mode: str) -> None:
    fake = FakeVLLM()
    failures = 0

    def hook(request: httpx.Request, body: Any) -> None:
        nonlocal failures
        if request.url.path == "/classify" and failures < 1:
            failures += 1
            raise httpx.RemoteProtocolError("peer closed connection", request=request)

    fake.hook = hook
    assert run(make_backend(fake), mode, [(QUERY, DOCS)]) == [expected(QUERY, DOCS)]


@pytest.mark.parametrize("mode", MODES)
def test_connection_errors_raise_after_retries(mode: str) -> None:
    fake = FakeVLLM()
    fake.hook = raising(httpx.ConnectError, "connection refused")
    with pytest.raises(RemoteConnectionError, match="connection refused"):
        run(make_backend(fake, max_retries=1), mode, [(QUERY, DOCS)])
    # 2 concurrent setup calls x (1 try + 1 retry); the first to fail for good stops the other
    assert 2 <= len(fake.requests) <= 4


@pytest.mark.parametrize("mode", MODES)
def test_replica_failover(mode: str) -> None:
    fake = FakeVLLM()
    fake.hook = raising(httpx.ConnectError, "connection refused", host="down.test")
    urls = ("http://down.test:8000", "http://up.test:8000")
    backend = make_backend(fake, base_url=urls, max_retries=0, max_docs_per_request=1)
    docs = [f"d{i}" for i in range(6)]
    assert run(backend, mode, [(QUERY, docs)]) == [expected(QUERY, docs)]
    hosts = [host for host, path, _ in fake.requests if path == "/classify"]
    assert hosts.count("up.test") == 6
    assert hosts.count("down.test") <= 1  # then it is skipped while cooling down


def test_round_robin_over_healthy_replicas() -> None:
    fake = FakeVLLM()
    urls = ("http://a.test", "http://b.test", "http://c.test")
    backend = make_backend(fake, base_url=urls, max_docs_per_request=1, max_concurrency=1)
    backend.score_groups([(QUERY, [f"d{i}" for i in range(9)])], INSTR)
    hosts = [host for host, path, _ in fake.requests if path == "/classify"]
    assert sorted(hosts.count(h) for h in ("a.test", "b.test", "c.test")) == [3, 3, 3]


def test_all_replicas_down() -> None:
    fake = FakeVLLM()

    def hook(request: httpx.Request, body: Any) -> None:
        raise httpx.ConnectError("refused", request=request)

    fake.hook = hook
    urls = ("http://a.test", "http://b.test")
    with pytest.raises(RemoteConnectionError):
        make_backend(fake, base_url=urls, max_retries=1).score_groups([(QUERY, ["d"])], INSTR)
    # each of the 2 setup calls: 2 rounds (1 try + 1 retry) x 2 replicas, unless stopped early
    assert 4 <= len(fake.requests) <= 2 * 2 * 2
    assert {h for h, _, _ in fake.requests} == {"a.test", "b.test"}


def test_attempts_fail_over_without_spending_retries() -> None:
    pool = ReplicaPool(["http://a", "http://b", "http://c"])
    attempts = Attempts(RetryPolicy(max_retries=1, base=0.001), pool)
    refused = Retry(RemoteConnectionError("refused"), failover=True)
    urls = [attempts.next_url()]
    step = attempts.step(refused)
    assert isinstance(step, Retry) and step.delay == 0.0 and attempts.retries == 0
    urls.append(attempts.next_url())
    attempts.step(refused)
    urls.append(attempts.next_url())
    assert sorted(urls) == ["http://a", "http://b", "http://c"]
    step = attempts.step(refused)  # every replica failed: spend the retry
    assert isinstance(step, Retry) and attempts.retries == 1
    attempts.next_url()
    assert isinstance(attempts.step(Done(1)), Done)


def test_attempts_give_up() -> None:
    attempts = Attempts(RetryPolicy(max_retries=0), ReplicaPool(["http://a"]))
    attempts.next_url()
    error = RemoteStatusError(503, "x")
    step = attempts.step(Retry(error))
    assert isinstance(step, Fail) and step.error is error


# ----------------------------------------------------------------------------- secrets


def test_api_key_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeVLLM()
    fake.hook = fail_first(
        99, lambda: httpx.Response(503, json={"error": {"message": f"bad key {SECRET}"}})
    )
    backend = make_backend(fake, api_key=SECRET)
    assert SECRET not in repr(backend)
    with caplog.at_level(logging.DEBUG), pytest.raises(RemoteError) as info:
        backend.score_groups([(QUERY, DOCS)], INSTR)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in getattr(info.value, "message", "")
    assert SECRET not in getattr(info.value, "url", "")
    assert SECRET not in caplog.text
    assert "***" in str(info.value)


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:1/x?token=1#f") == "http://h:1/x"
    assert redact_url("https://[::1]:8000/v") == "https://[::1]:8000/v"


def test_repr() -> None:
    backend = make_backend(FakeVLLM(), base_url=("http://a.test", "http://b.test"))
    assert repr(backend) == (
        "RemoteBackend(base_url=['http://a.test', 'http://b.test'], model='m', "
        "prompt_format='client')"
    )


async def test_close_and_aclose() -> None:
    fake = FakeVLLM()
    backend = make_backend(fake)
    backend.score_groups([(QUERY, ["a"])], INSTR)
    await backend.ascore_groups([(QUERY, ["a"])], INSTR)
    await backend.aclose()
    backend.close()
    # usable again: clients are created on demand
    assert backend.score_groups([(QUERY, ["a"])], INSTR) == [expected(QUERY, ["a"])]
    backend.close()


def test_user_supplied_clients_are_not_closed() -> None:
    fake = FakeVLLM()
    client = httpx.Client(transport=httpx.MockTransport(fake))
    config = RerankConfig(model="m", backend="remote", base_url=URL)
    backend = RemoteBackend(config, http_client=client)
    assert backend.score_groups([(QUERY, ["a"])], INSTR) == [expected(QUERY, ["a"])]
    backend.close()
    assert not client.is_closed
    client.close()


# ----------------------------------------------------------------------------- through the facade


def test_facade_forwards_backend_options() -> None:
    """Qwen3Reranker(backend_options={"transport": ...}) reaches the remote backend."""
    from qwen3_rerank_core import Qwen3Reranker

    fake = FakeVLLM()
    rr = Qwen3Reranker(
        model="m",
        backend="remote",
        base_url=URL,
        instruction=INSTR,
        backend_options={"transport": httpx.MockTransport(fake)},
    )
    assert rr.score(QUERY, DOCS) == pytest.approx(expected(QUERY, DOCS), abs=1e-12)
    ranked = asyncio.run(rr.arerank(QUERY, DOCS, top_n=2))
    assert [r.index for r in ranked] == [r.index for r in rr.rerank(QUERY, DOCS)][:2]
    assert fake.paths("/classify")


def test_transformers_backend_rejects_backend_options() -> None:
    from qwen3_rerank_core import Qwen3Reranker

    rr = Qwen3Reranker(model="m", backend_options={"transport": object()})
    with pytest.raises(TypeError, match="transport"):
        rr.score(QUERY, DOCS)
