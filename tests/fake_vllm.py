"""A fake vLLM server for the remote backend's tests (an ``httpx.MockTransport`` handler).

:class:`FakeVLLM` speaks the four routes the backend uses (/tokenize, /detokenize,
/classify, /score) with a byte-level "tokenizer" (one token per UTF-8 byte) and
a deterministic fake score of the full prompt text, so the expected score of
every document can be computed independently with PromptEncoder
(:func:`expected`). Its ``hook`` injects failures. :func:`make_backend` builds
a backend on it; :data:`BAD_ANSWERS` are malformed /classify answers.

Import from tests as ``import fake_vllm`` (``conftest.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from qwen3_rerank_core._backends._remote import RemoteBackend
from qwen3_rerank_core._config import RerankConfig
from qwen3_rerank_core._prompt import DEFAULT_INSTRUCTION, PromptEncoder, format_prompt

URL = "http://vllm.test:8000"
INSTR = "Find passages that answer the question"

Handler = Callable[[httpx.Request, Any], "httpx.Response | None"]


def fake_score(text: str) -> float:
    return (zlib.crc32(text.encode("utf-8")) % 9973 + 1) / 9975


def byte_tokens(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def byte_text(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def expected(query: str, docs: list[str], *, instruction: str = INSTR, max_length: int = 4096):
    enc = PromptEncoder(
        lambda texts: [byte_tokens(t) for t in texts], lambda t: 1, max_length=max_length
    )
    return [fake_score(byte_text(ids)) for ids in enc.encode_prompts(instruction, query, docs)]


class FakeVLLM:
    """A MockTransport handler imitating vLLM's routes, with hooks to inject failures."""

    def __init__(self, *, max_model_len: int = 4096, shuffle: bool = True) -> None:
        self.max_model_len = max_model_len
        self.shuffle = shuffle
        self.requests: list[tuple[str, str, Any]] = []  # (host, path, json)
        self.hook: Handler | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def paths(self, path: str | None = None) -> list[str]:
        return [p for _, p, _ in self.requests if path is None or p == path]

    def bodies(self, path: str) -> list[Any]:
        return [b for _, p, b in self.requests if p == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        with self._lock:
            self.requests.append((request.url.host, request.url.path, body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.hook is not None:
                response = self.hook(request, body)
                if response is not None:
                    return response
            return self.answer(request.url.path, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def answer(self, path: str, body: Any) -> httpx.Response:
        if path == "/tokenize":
            tokens = byte_tokens(body["prompt"])
            assert body["add_special_tokens"] is False
            return httpx.Response(
                200,
                json={"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens},
            )
        if path == "/detokenize":
            return httpx.Response(200, json={"prompt": byte_text(body["tokens"])})
        if path == "/classify":
            inputs = body["input"]
            texts = [t if isinstance(t, str) else byte_text(t) for t in inputs]
            for t in texts:
                assert len(byte_tokens(t)) <= self.max_model_len
            data = [
                {"index": i, "label": "LABEL_0", "probs": [fake_score(t)], "num_classes": 1}
                for i, t in enumerate(texts)
            ]
            return self._list(data)
        if path == "/v1/score":
            instruction = (body.get("chat_template_kwargs") or {}).get(
                "instruction", DEFAULT_INSTRUCTION
            )
            docs = body["text_2"]
            data = [
                {
                    "index": i,
                    "object": "score",
                    "score": fake_score(format_prompt(instruction, body["text_1"], d)),
                }
                for i, d in enumerate(docs)
            ]
            return self._list(data)
        return httpx.Response(404, json={"detail": "Not Found"})

    def _list(self, data: list[dict[str, Any]]) -> httpx.Response:
        if self.shuffle:
            data = data[::-1]
        return httpx.Response(200, json={"object": "list", "data": data})


def on_classify_call(number: int, answer: Callable[[Any], httpx.Response]) -> Handler:
    """A :attr:`FakeVLLM.hook` answering the ``number``-th /classify request with ``answer(body)``."""
    count = 0

    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        nonlocal count
        if request.url.path == "/classify":
            count += 1
            if count == number:
                return answer(body)
        return None

    return hook


def raising(
    error: type[httpx.TransportError],
    message: str,
    *,
    path: str | None = None,
    host: str | None = None,
) -> Handler:
    """A :attr:`FakeVLLM.hook` raising ``error(message)`` on the requests to ``path`` and ``host``.

    Without ``path`` or ``host`` every request fails.
    """

    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        if path in (None, request.url.path) and host in (None, request.url.host):
            raise error(message, request=request)
        return None

    return hook


def make_backend(
    fake: Callable[[httpx.Request], Any] | None,
    *,
    base_url: Any = URL,
    backoff: tuple[float, float] = (0.001, 0.005),
    **settings: Any,
) -> RemoteBackend:
    """A remote backend (model "m", 2 retries) on ``fake`` as its ``httpx.MockTransport``.

    ``fake`` is a :class:`FakeVLLM` or any MockTransport handler; ``None`` uses real
    sockets. ``backoff`` is the retry pause's (base, cap) in seconds.
    """
    config = RerankConfig(
        **{"model": "m", "backend": "remote", "base_url": base_url, "max_retries": 2, **settings}
    )
    transport = None if fake is None else httpx.MockTransport(fake)
    return RemoteBackend(
        config, transport=transport, _backoff_base=backoff[0], _backoff_cap=backoff[1]
    )


def run(backend: RemoteBackend, mode: str, groups: Any, instruction: str = INSTR) -> Any:
    if mode == "sync":
        return backend.score_groups(groups, instruction)
    return asyncio.run(backend.ascore_groups(groups, instruction))


MODES = ["sync", "async"]
DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "", "  spaces  \n", "日本語 🎉"]
QUERY = "what is the capital of France?"


# ----------------------------------------------------------------------------- bad answers


def classify_answer(data: Any) -> Handler:
    def hook(request: httpx.Request, body: Any) -> httpx.Response | None:
        if request.url.path != "/classify":
            return None
        payload = data(len(body["input"])) if callable(data) else data
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return httpx.Response(200, content=content, headers={"content-type": "application/json"})

    return hook


def result_items(n: int, **override: Any) -> list[dict[str, Any]]:
    return [{"index": i, "probs": [0.5], **override} for i in range(n)]


BAD_ANSWERS: dict[str, Any] = {
    "malformed json": b'{"data": [',
    "not an object": b"[1, 2]",
    "no data": {"object": "list"},
    "one result too few": lambda n: {"data": result_items(n - 1)},
    "one result too many": lambda n: {"data": result_items(n + 1)},
    "duplicate index": lambda n: {"data": [*result_items(n - 1), {"index": 0, "probs": [0.5]}]},
    "index out of range": lambda n: {"data": [*result_items(n - 1), {"index": n, "probs": [0.5]}]},
    "negative index": lambda n: {"data": [*result_items(n - 1), {"index": -1, "probs": [0.5]}]},
    "bool index": lambda n: {
        "data": [{**d, "index": True} if d["index"] == 1 else d for d in result_items(n)]
    },
    "NaN score": lambda n: (
        b'{"data": [' + b",".join(b'{"index": %d, "probs": [NaN]}' % i for i in range(n)) + b"]}"
    ),
    "infinite score": lambda n: (
        b'{"data": ['
        + b",".join(b'{"index": %d, "probs": [Infinity]}' % i for i in range(n))
        + b"]}"
    ),
    "string score": lambda n: {"data": result_items(n, probs=["0.5"])},
    "score above one": lambda n: {"data": result_items(n, probs=[3.5])},
    "two probs": lambda n: {"data": result_items(n, probs=[0.3, 0.7])},
    "missing probs": lambda n: {"data": [{"index": i} for i in range(n)]},
    "item not an object": lambda n: {"data": [0.5] * n},
}
