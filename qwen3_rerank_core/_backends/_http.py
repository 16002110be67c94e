"""Sans-I/O core of the remote backend: requests, replies, retries, replicas.

Nothing here performs I/O or imports ``httpx``. The remote backend's sync and
async drivers share all of it and differ only in how they send a request and
how they sleep:

* :class:`Call` describes one HTTP request and how to parse its JSON answer.
* :func:`reply_outcome` turns a status/headers/body into a value, a retryable
  error or a fatal error; :func:`transport_outcome` does the same for a request
  that got no answer.
* :class:`Attempts` is the retry state of one :class:`Call`: which replica to
  try next and, after each outcome, whether to stop, fail or wait and retry.
* A *program* is a generator that yields lists of calls and receives their
  results in the same order (see ``_remote.py``).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .._errors import (
    InvalidResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

__all__ = [
    "RETRY_STATUSES",
    "Attempts",
    "Call",
    "Done",
    "Fail",
    "Program",
    "ReplicaPool",
    "Retry",
    "RetryPolicy",
    "parse_score_list",
    "parse_tokens",
    "redact_url",
    "reply_outcome",
    "transport_outcome",
]

logger = logging.getLogger("qwen3_rerank_core.remote")

T = TypeVar("T")

#: HTTP statuses worth retrying: rate limited, or the server/proxy is struggling.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Most characters of a server's error text kept in an exception.
_MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request: ``POST path`` with a JSON ``payload`` (``GET`` when ``None``).

    ``parse`` turns the decoded JSON of a 2xx answer into the call's result and
    raises :class:`InvalidResponseError` when it does not fit the request.
    """

    path: str
    payload: Mapping[str, Any] | None
    parse: Callable[[Any], T]
    #: What the call does, for logs and error messages ("score 64 documents").
    what: str = ""
    #: Documents it scores (for progress bars); 0 for helper calls.
    count: int = 0

    @property
    def method(self) -> str:
        return "GET" if self.payload is None else "POST"


#: A program yields lists of calls and receives their results, in order.
Program = Generator[list[Call[Any]], list[Any], T]


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Done:
    """The call succeeded with ``value``."""

    value: Any


@dataclass(frozen=True)
class Fail:
    """The call failed for good with ``error``."""

    error: RemoteError


@dataclass(frozen=True)
class Retry:
    """The call may be retried after ``delay`` seconds."""

    error: RemoteError
    delay: float = 0.0
    #: The server asked for this pause (``Retry-After``), in seconds.
    retry_after: float | None = None
    #: The request never reached the server (connect failure): try another replica now.
    failover: bool = False


Outcome = Done | Fail | Retry


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may carry secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # pragma: no cover - config validated the URL
        return "<url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # pragma: no cover - config validated the URL
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _server_message(content: bytes) -> str:
    """The human-readable error text of an error answer (vLLM, FastAPI or plain text)."""
    text = content.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message: object = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        if message is None:
            message = data.get("message", data.get("detail"))
    if message is None:
        message = text or "(empty body)"
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def reply_outcome(
    call: Call[Any],
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    url: str,
    *,
    secrets: Sequence[str] = (),
) -> Outcome:
    """Classify an HTTP answer: parsed value, retryable error or fatal error."""
    where = redact_url(url)
    if 200 <= status < 300:
        try:
            data = json.loads(content)
        except ValueError as exc:
            preview = _redact(content[:200].decode("utf-8", errors="replace"), secrets)
            return Fail(
                InvalidResponseError(
                    f"{where} answered HTTP {status} with a body that is not JSON "
                    f"({exc}): {preview!r}"
                )
            )
        try:
            return Done(call.parse(data))
        except InvalidResponseError as exc:
            # The message quotes the answer, which may echo the request's credentials.
            return Fail(InvalidResponseError(_redact(f"{where}: {exc}", secrets)))
    message = _redact(_server_message(content), secrets)
    error = RemoteStatusError(status, message, url=where)
    if status in RETRY_STATUSES:
        retry_after = parse_retry_after(_header(headers, "retry-after"))
        return Retry(error, retry_after=retry_after)
    if status == 400 and "maximum context length" in message:
        error = RemoteStatusError(
            status,
            message + " (set max_length no larger than the server's --max-model-len)",
            url=where,
        )
    return Fail(error)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, val in headers.items():
            if key.lower() == name:
                return val
    return value


def transport_outcome(
    url: str, *, timeout: bool, connect: bool, detail: str, secrets: Sequence[str] = ()
) -> Retry:
    """The outcome of a request that got no answer (always retryable).

    ``connect`` is true when the request never reached the server, which makes
    it safe to send it to another replica at once. ``secrets`` are blanked out
    of ``detail`` (the transport's error text).
    """
    where = redact_url(url)
    detail = _redact(detail, secrets)
    error: RemoteError
    if timeout:
        error = RemoteTimeoutError(f"no answer from {where} in time ({detail})")
    else:
        error = RemoteConnectionError(f"could not talk to {where}: {detail}")
    return Retry(error, failover=connect)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by ``max_retries``."""

    max_retries: int
    base: float = 0.5
    cap: float = 30.0
    #: The longest ``Retry-After`` honoured; a longer one fails the call at once.
    max_retry_after: float = 60.0
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def backoff(self, retry: int) -> float:
        """Pause before retry number ``retry`` (0-based): ``base * 2**retry``, jittered."""
        ceiling = min(self.cap, self.base * (2.0**retry))
        return ceiling * (0.5 + 0.5 * self.rng())

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(retry)


class ReplicaPool:
    """Round-robin over base URLs, skipping replicas that recently refused connections."""

    def __init__(self, urls: Sequence[str], *, cooldown: float = 5.0) -> None:
        if not urls:
            raise ValueError("at least one base URL is needed")
        self.urls: tuple[str, ...] = tuple(urls)
        self._cooldown = cooldown
        self._down_until = [0.0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, exclude: set[int]) -> int:
        """Index of the next replica to use, preferring healthy ones not in ``exclude``."""
        n = len(self.urls)
        now = time.monotonic()
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % n
            order = [(start + k) % n for k in range(n)]
            for healthy_only in (True, False):
                for i in order:
                    if i in exclude:
                        continue
                    if healthy_only and self._down_until[i] > now:
                        continue
                    return i
            return start

    def mark_down(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + self._cooldown

    def mark_up(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = 0.0


class Attempts:
    """Retry state of one call: next replica, and what to do after each outcome.

    A connect failure, or a ``Retry-After`` longer than the policy's
    ``max_retry_after``, moves on to a replica not yet tried in this round
    without spending a retry; once every replica failed that way the call fails
    (a too long ``Retry-After``) or a retry is spent. Any other retryable
    failure spends a retry, and the next round starts after a backoff, on
    another replica than the one that just failed when there is one.
    """

    def __init__(self, policy: RetryPolicy, pool: ReplicaPool) -> None:
        self.policy = policy
        self.pool = pool
        self.retries = 0
        self.attempts = 0
        self._tried: set[int] = set()
        #: The replica that just failed with a retryable error, avoided next if possible.
        self._avoid: int | None = None
        self.replica = -1

    def next_url(self) -> str:
        exclude = set(self._tried)
        if self._avoid is not None and len(exclude | {self._avoid}) < len(self.pool.urls):
            exclude.add(self._avoid)
        self._avoid = None
        self.replica = self.pool.pick(exclude)
        self._tried.add(self.replica)
        self.attempts += 1
        return self.pool.urls[self.replica]

    def step(self, outcome: Outcome) -> Outcome:
        """``Done``/``Fail`` to finish, or ``Retry`` with the delay to wait first."""
        if not isinstance(outcome, Retry):
            self.pool.mark_up(self.replica)
            return outcome
        if outcome.failover:
            self.pool.mark_down(self.replica)
            if len(self._tried) < len(self.pool.urls):
                return Retry(outcome.error, delay=0.0, failover=True)
        if outcome.retry_after is not None and outcome.retry_after > self.policy.max_retry_after:
            # This replica will not take the request within what we are willing
            # to wait (asking again sooner only adds load): try another replica
            # now, or give up at once.
            self.pool.mark_down(self.replica)
            if len(self._tried) < len(self.pool.urls):
                return Retry(outcome.error, delay=0.0, failover=True)
            return Fail(_too_long(outcome.error, outcome.retry_after, self.policy))
        if self.retries >= self.policy.max_retries:
            return Fail(outcome.error)
        delay = self.policy.delay(self.retries, outcome.retry_after)
        self.retries += 1
        self._tried.clear()
        self._avoid = self.replica
        return Retry(outcome.error, delay=delay, retry_after=outcome.retry_after)


def _too_long(error: RemoteError, retry_after: float, policy: RetryPolicy) -> RemoteError:
    note = (
        f" (the server asks to retry after {retry_after:.0f} s, longer than the "
        f"{policy.max_retry_after:.0f} s this client waits; not retried)"
    )
    if isinstance(error, RemoteStatusError):
        return RemoteStatusError(error.status_code, error.message + note, url=error.url)
    return type(error)(f"{error}{note}")  # pragma: no cover - only statuses carry Retry-After


# --------------------------------------------------------------------------- parsing


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _probability(value: object, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidResponseError(f"{where} is not a number: {value!r}")
    score = float(value)
    if not math.isfinite(score):
        raise InvalidResponseError(f"{where} is not finite: {value!r}")
    if not 0.0 <= score <= 1.0:
        raise InvalidResponseError(
            f"{where} = {score!r} is not a probability; is the server started with "
            "the Qwen3-Reranker --hf-overrides (see docs/remote_vllm.md)?"
        )
    return score


def parse_score_list(data: Any, n: int, *, score_key: str) -> list[float]:
    """Scores from a vLLM ``/score`` (``score_key="score"``) or ``/classify``
    (``score_key="probs"``) answer, in request order.

    Raises :class:`InvalidResponseError` unless there is exactly one result per
    input, the indices are unique and in range and every score is a finite
    probability.
    """
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InvalidResponseError(
            f"expected a JSON object with a 'data' list, got {_preview(data)}"
        )
    items = data["data"]
    if len(items) != n:
        raise InvalidResponseError(f"expected {n} results, got {len(items)}")
    scores: list[float | None] = [None] * n
    for item in items:
        if not isinstance(item, dict):
            raise InvalidResponseError(f"result is not an object: {_preview(item)}")
        index = item.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
            raise InvalidResponseError(f"result index {index!r} is not in 0..{n - 1}")
        if scores[index] is not None:
            raise InvalidResponseError(f"result index {index} appears twice")
        value = item.get(score_key)
        if score_key == "probs":
            if not isinstance(value, list) or len(value) != 1:
                raise InvalidResponseError(
                    f"result {index}: expected 'probs' with exactly one value, got "
                    f"{_preview(value)}; is the server started with the Qwen3-Reranker "
                    "--hf-overrides (see docs/remote_vllm.md)?"
                )
            value = value[0]
        scores[index] = _probability(value, f"score of result {index}")
    return [s for s in scores if s is not None]


def parse_tokens(data: Any) -> tuple[list[int], int | None]:
    """Token ids and ``max_model_len`` from a vLLM ``/tokenize`` answer."""
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(_is_int(t) and t >= 0 for t in tokens):
        raise InvalidResponseError(
            f"expected {{'tokens': [int, ...]}} from /tokenize, got {_preview(data)}"
        )
    max_model_len = data.get("max_model_len")
    return tokens, max_model_len if _is_int(max_model_len) and max_model_len > 0 else None


def parse_detokenized(data: Any) -> str:
    """The text of a vLLM ``/detokenize`` answer."""
    prompt = data.get("prompt") if isinstance(data, dict) else None
    if not isinstance(prompt, str):
        raise InvalidResponseError(
            f"expected {{'prompt': str}} from /detokenize, got {_preview(data)}"
        )
    return prompt


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
