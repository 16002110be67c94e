"""Sans-I/O HTTP: requests, replies, retries and replicas, for any JSON API.

Nothing here performs I/O, imports ``httpx`` or knows a server's API; the
drivers in ``_http_driver.py`` send the requests and sleep, and API modules
(``_vllm_api.py``) build the calls:

* :class:`Call` describes one HTTP request and how to parse its JSON answer.
* :func:`reply_outcome` turns a status/headers/body into a value, a retryable
  error or a fatal error; :func:`transport_outcome` does the same for a request
  that got no answer.
* :class:`Attempts` is the retry state of one :class:`Call`: which replica to
  try next and, after each outcome, whether to stop, fail or wait and retry.
* :func:`attempt_steps` is the one send pipeline of a call: it yields the
  next step (:class:`Send` to a replica, or :class:`Pause` before a retry) and
  receives its answer, so the sync and the async driver run the very same
  retry logic and differ only in how they send and sleep.
* A *program* (:data:`Program`) yields lists of calls and receives their
  results in the same order; :func:`drive` and :func:`adrive` run a generator
  of steps with a sync or an async executor.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
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
    "Pause",
    "Program",
    "ReplicaPool",
    "Retry",
    "RetryPolicy",
    "Send",
    "adrive",
    "attempt_steps",
    "drive",
    "redact_url",
    "reply_outcome",
    "transport_outcome",
]

logger = logging.getLogger("qwen3_rerank_core.remote")

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")

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
    explain: Callable[[RemoteStatusError], RemoteStatusError] | None = None,
) -> Outcome:
    """Classify an HTTP answer: parsed value, retryable error or fatal error.

    ``secrets`` are blanked out of every message; ``explain`` may add a server
    API's advice to a fatal status error (see ``_vllm_api.py``).
    """
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
    return Fail(error if explain is None else explain(error))


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


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Send:
    """Step of a call's pipeline: send the call to ``url``; answer with its :data:`Outcome`."""

    url: str


@dataclass(frozen=True)
class Pause:
    """Step of a call's pipeline: wait ``seconds`` before the next attempt; answer ``None``.

    ``error`` is the failure being retried: a driver raises it when the call is
    cancelled during the pause.
    """

    seconds: float
    error: RemoteError


#: The attempts of one call: yields :class:`Send` and :class:`Pause` steps,
#: receives each step's answer and returns the call's parsed value (or raises).
AttemptSteps = Generator[Send | Pause, Outcome | None, T]


def attempt_steps(call: Call[T], policy: RetryPolicy, pool: ReplicaPool) -> AttemptSteps[T]:
    """The send pipeline of ``call``: replicas, retries and their pauses, and the logs."""
    attempts = Attempts(policy, pool)
    while True:
        url = attempts.next_url() + call.path
        outcome = yield Send(url)
        if outcome is None:  # pragma: no cover - a driver bug
            raise TypeError("a Send step must be answered with its Outcome")
        step = attempts.step(outcome)
        if isinstance(step, Done):
            value: T = step.value
            return value
        _log_failure(call, url, attempts, outcome, step)
        if isinstance(step, Fail):
            raise step.error
        yield Pause(step.delay, step.error)


def _log_failure(
    call: Call[Any], url: str, attempts: Attempts, outcome: Outcome, step: Fail | Retry
) -> None:
    what, where = call.what or call.path, redact_url(url)
    if isinstance(step, Retry):
        logger.warning(
            "%s %s failed (%s); %s in %.2fs",
            what,
            where,
            step.error,
            "trying another replica"
            if step.failover
            else f"retry {attempts.retries}/{attempts.policy.max_retries}",
            step.delay,
        )
    elif isinstance(outcome, Retry) and attempts.attempts > 1:
        logger.warning(
            "%s %s failed after %d attempts: %s", what, where, attempts.attempts, step.error
        )


def drive(steps: Generator[S, R, T], execute: Callable[[S], R]) -> T:
    """Run ``steps`` to its end, answering each step with ``execute(step)``."""
    try:
        step = next(steps)
        while True:
            step = steps.send(execute(step))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def adrive(steps: Generator[S, R, T], execute: Callable[[S], Awaitable[R]]) -> T:
    """:func:`drive` with an async ``execute``."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await execute(step))
    except StopIteration as stop:
        result: T = stop.value
        return result
