"""The remote API key never shows: reprs, serialization, logs, exceptions, tracebacks.

One distinctive key is used everywhere and every text a user or a log
collector could see is searched for it: reprs of the configuration, the
reranker, the backend and both framework adapters; the adapters' serialized
forms; every log record (all loggers, DEBUG) of calls that fail with 401, 500,
a connection error, a timeout or a malformed answer, including servers that
echo the key back; the exceptions' messages, attributes, chained causes, notes
and formatted tracebacks (also with the frames' local variables, as error
trackers record them), and any httpx request or response they reference.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from qwen3_rerank_core import Qwen3Reranker, RerankConfig
from qwen3_rerank_core._backends._remote import RemoteBackend
from qwen3_rerank_core._errors import (
    InvalidResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

SECRET = "sk-SECRET-canary-123"
URL = "http://vllm.test:8000"
QUERY = "what is the capital of France?"
DOCS = ["Paris is the capital of France.", "Bananas are yellow."]

Handler = Callable[[httpx.Request], httpx.Response]


def remote(handler: Handler, **settings: Any) -> Qwen3Reranker:
    return Qwen3Reranker(
        model="m",
        backend="remote",
        base_url=URL,
        api_key=SECRET,
        max_retries=1,
        backend_options={
            "transport": httpx.MockTransport(handler),
            "_backoff_base": 0.001,
            "_backoff_cap": 0.002,
        },
        **settings,
    )


def assert_hidden(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text


# ------------------------------------------------------------------ reprs


def test_config_repr_and_errors() -> None:
    cfg = RerankConfig(backend="remote", base_url=URL, api_key=SECRET)
    assert_hidden(repr(cfg), str(cfg), repr(cfg.replace(timeout=5.0)))
    # A bad value of another setting names that setting only.
    with pytest.raises(ValueError) as info:
        cfg.replace(timeout=-1)
    assert_hidden(str(info.value), repr(info.value))
    # A key of the wrong type is refused without being echoed.
    for bad in (SECRET.encode(), [SECRET]):
        with pytest.raises(TypeError, match="api_key must be a str or None") as info:
            RerankConfig(backend="remote", base_url=URL, api_key=bad)  # type: ignore[arg-type]
        assert_hidden(str(info.value), repr(info.value))


@pytest.mark.parametrize(
    "url", [f"http://user:{SECRET}@vllm.test:8000", f"https://{SECRET}@vllm.test", "http://a:b@c:1"]
)
def test_credentials_in_base_url_are_refused_unechoed(url: str) -> None:
    """A password in the URL would show in reprs and in httpx's request log: refused."""
    with pytest.raises(ValueError, match=r"must not hold credentials.*api_key") as info:
        RerankConfig(backend="remote", base_url=[URL, url])
    assert_hidden(str(info.value), repr(info.value))
    assert url.rsplit("@", 1)[0].split("//")[1] not in str(info.value)
    assert "***@" in str(info.value)


def test_reranker_and_backend_repr() -> None:
    rr = remote(lambda request: httpx.Response(200, json={}))
    assert_hidden(repr(rr), str(rr), repr(rr.config))
    backend = rr._get_backend()  # builds the backend; sends nothing
    assert isinstance(backend, RemoteBackend)
    assert_hidden(repr(rr), repr(backend), str(backend))
    rr.close()


def test_settings_given_as_a_mapping_are_not_echoed() -> None:
    # A common mistake: the settings dict passed where a RerankConfig goes.
    with pytest.raises(TypeError, match="config must be a RerankConfig") as info:
        Qwen3Reranker({"backend": "remote", "base_url": URL, "api_key": SECRET})  # type: ignore[arg-type]
    assert_hidden(str(info.value), repr(info.value))


# ------------------------------------------------------------------ failing calls


def _echo(status: int) -> Handler:
    """A server answering ``status`` and echoing the request's Authorization header."""

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        return httpx.Response(
            status,
            json={"error": {"message": f"rejected {auth!r}", "headers": dict(request.headers)}},
        )

    return handler


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"refused {request.headers.get('authorization')}", request=request)


def _time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout(f"timed out {request.headers.get('authorization')}", request=request)


def _malformed(request: httpx.Request) -> httpx.Response:
    """200 answers that do not fit the request and quote the key back."""
    echo = {"tokens": request.headers["authorization"], "data": request.headers["authorization"]}
    return httpx.Response(200, json=echo)


def _not_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=f"<html>{request.headers['authorization']}</html>")


FAILURES: dict[str, tuple[Handler, type[RemoteError]]] = {
    "401": (_echo(401), RemoteStatusError),
    "500": (_echo(500), RemoteStatusError),
    "connection-error": (_refuse, RemoteConnectionError),
    "timeout": (_time_out, RemoteTimeoutError),
    "malformed-200": (_malformed, InvalidResponseError),
    "not-json-200": (_not_json, InvalidResponseError),
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it links to (cause, context, group members)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
        todo += list(getattr(e, "exceptions", ()))


def _assert_exception_hidden(exc: BaseException) -> None:
    assert_hidden(
        "".join(traceback.format_exception(exc)),
        "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format()),
    )
    for e in _chain(exc):
        assert_hidden(str(e), repr(e), repr(e.args), repr(getattr(e, "__notes__", [])))
        for name, value in vars(e).items():
            assert_hidden(name, repr(value), str(value))
            # An httpx request/response reached from an exception must not carry the key
            # (its repr hides headers, so look inside).
            request = value if isinstance(value, httpx.Request) else None
            if isinstance(value, httpx.Response):
                request = value.request
                assert_hidden(value.headers, value.content)
            if request is not None:
                assert_hidden(request.headers.get("authorization"), dict(request.headers))


def _log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) + repr(r.args) + repr(r.__dict__) for r in records)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failing_calls_never_show_the_key(
    caplog: pytest.LogCaptureFixture, failure: str, mode: str
) -> None:
    handler, expected = FAILURES[failure]
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    rr = remote(recording)
    with caplog.at_level(logging.DEBUG), pytest.raises(RemoteError) as info:
        if mode == "sync":
            rr.score(QUERY, DOCS)
        else:
            asyncio.run(rr.ascore(QUERY, DOCS))
    rr.close()
    # The key was really sent, so every check below could have found it.
    assert seen and all(r.headers["authorization"] == f"Bearer {SECRET}" for r in seen)
    assert isinstance(info.value, expected)
    _assert_exception_hidden(info.value)
    assert caplog.records  # the failures and retries are logged ...
    assert_hidden(_log_text(caplog.records))  # ... without the key


def test_server_echo_is_redacted_not_dropped() -> None:
    rr = remote(_echo(401))
    with pytest.raises(RemoteStatusError) as info:
        rr.score(QUERY, DOCS)
    assert info.value.status_code == 401
    assert "rejected 'Bearer ***'" in info.value.message  # the rest of the message stays


# ------------------------------------------------------------------ adapters


def test_llama_index_adapter() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.postprocessor.qwen3_rerank import QwenRerank

    own = QwenRerank(model="m", backend="remote", base_url=[URL], api_key=SECRET)
    shared = QwenRerank(reranker=Qwen3Reranker(backend="remote", base_url=URL, api_key=SECRET))
    for rerank in (own, shared):
        assert rerank.reranker.config.api_key == SECRET  # it is there, and used
        assert_hidden(
            repr(rerank),
            str(rerank),
            rerank.model_dump(),
            rerank.model_dump_json(),
            rerank.to_dict(),
            rerank.to_json(),
            json.dumps(rerank.to_dict()),
            rerank.dict(),
            rerank.json(),
            repr(rerank.api_key),
            repr(rerank.reranker),
        )


def test_langchain_adapter() -> None:
    pytest.importorskip("langchain_core")
    from langchain_qwen3_rerank import QwenRerank

    own = QwenRerank(model="m", backend="remote", base_url=[URL], api_key=SECRET)
    shared = QwenRerank(reranker=Qwen3Reranker(backend="remote", base_url=URL, api_key=SECRET))
    for rerank in (own, shared):
        assert rerank.reranker.config.api_key == SECRET
        assert_hidden(
            repr(rerank),
            str(rerank),
            rerank.model_dump(),
            rerank.model_dump_json(),
            rerank.dict(),
            rerank.json(),
            repr(rerank.api_key),
            repr(rerank.reranker),
        )
