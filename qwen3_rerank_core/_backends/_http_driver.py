"""Runs the sans-I/O programs of ``_http.py`` over ``httpx``, sync or async.

:class:`HttpDriver` knows nothing of any server's API. It holds the replicas,
the retry policy, the credentials and the ``httpx`` clients, and runs a
:data:`~._http.Program` (batches of :class:`~._http.Call`) with a sync driver
(a thread pool) or an async one (tasks on the running loop). Both execute the
same per-call pipeline, :func:`~._http.attempt_steps`, and differ only in how
they send one request and how they sleep. Each attempt must be answered in
full within ``timeout`` seconds (the deadline), and credentials are blanked out
of every error and log line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import httpx

from .._errors import RemoteError, RemoteStatusError
from ._http import (
    Call,
    Outcome,
    Pause,
    Program,
    ReplicaPool,
    Retry,
    RetryPolicy,
    Send,
    adrive,
    attempt_steps,
    drive,
    reply_outcome,
    transport_outcome,
)

__all__ = ["HttpDriver", "Progress"]

logger = logging.getLogger("qwen3_rerank_core.remote")

T = TypeVar("T")


#: What a driver reports to: called with ``n`` when a call that scored ``n`` documents is done
#: (the ``advance`` of :func:`~qwen3_rerank_core._backends._base.progress_bar`).
Progress = Callable[[int], object]


class HttpDriver:
    """Sends the calls of programs to ``urls`` (replicas), with retries, over ``httpx``.

    ``transport`` replaces the HTTP transport of both the sync and the async
    client (e.g. ``httpx.MockTransport`` in tests); ``http_client`` /
    ``async_http_client`` replace the clients themselves (the driver then does
    not close them). ``explain`` adds a server API's advice to fatal status
    errors (see :func:`~._http.reply_outcome`).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        policy: RetryPolicy,
        timeout: float,
        max_concurrency: int,
        api_key: str | None = None,
        user_agent: str,
        explain: Callable[[RemoteStatusError], RemoteStatusError] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.pool = ReplicaPool(urls)
        self.policy = policy
        self._timeout = timeout
        self._max_concurrency = max_concurrency
        self._api_key = api_key
        self._user_agent = user_agent
        self._explain = explain
        self._transport = transport
        self._client = http_client
        self._own_client = http_client is None
        self._aclient = async_http_client
        self._own_aclient = async_http_client is None
        self._aclient_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._lock = threading.Lock()

    def run(self, program: Program[T], progress: Progress) -> T:
        """Run ``program``, sending each batch of calls concurrently from threads."""
        client = self._sync_client()
        return drive(program, lambda calls: self._send_all_sync(client, calls, progress))

    async def arun(self, program: Program[T], progress: Progress) -> T:
        """Run ``program``, sending each batch of calls concurrently as tasks."""
        client = self._async_client()
        return await adrive(program, lambda calls: self._send_all_async(client, calls, progress))

    def close(self) -> None:
        """Close the clients this driver created (they are created again on demand)."""
        with self._lock:
            client, self._client = self._client, None
            aclient, self._aclient = self._aclient, None
        if client is not None and self._own_client:
            client.close()
        if aclient is not None and self._own_aclient:
            # An AsyncClient can only be closed on a loop; drop its connections.
            logger.debug("async HTTP client dropped by close(); use aclose() to close it")

    async def aclose(self) -> None:
        """Close the clients this driver created, the async one on the running loop."""
        with self._lock:
            aclient, self._aclient = self._aclient, None
        if aclient is not None and self._own_aclient:
            await aclient.aclose()
        self.close()

    # ------------------------------------------------------------------ clients

    def _client_options(self) -> dict[str, Any]:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        limits = httpx.Limits(max_connections=max(100, self._max_concurrency))
        return {"headers": headers, "timeout": self._timeout, "limits": limits}

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                transport = self._transport
                self._client = httpx.Client(
                    transport=transport if isinstance(transport, httpx.BaseTransport) else None,
                    **self._client_options(),
                )
                self._own_client = True
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            bound = self._aclient_loop() if self._aclient_loop is not None else None
            if self._aclient is None or (self._own_aclient and bound is not loop):
                # httpx's async pool is bound to the loop that first used it.
                transport = self._transport
                self._aclient = httpx.AsyncClient(
                    transport=(
                        transport if isinstance(transport, httpx.AsyncBaseTransport) else None
                    ),
                    **self._client_options(),
                )
                self._own_aclient = True
                self._aclient_loop = weakref.ref(loop)
            return self._aclient

    # ------------------------------------------------------------------ sync driver

    def _send_all_sync(
        self, client: httpx.Client, calls: list[Call[Any]], progress: Progress
    ) -> list[Any]:
        abort = threading.Event()
        if not calls:
            return []
        if len(calls) == 1:
            return [self._send_sync(client, calls[0], abort, progress)]
        workers = min(self._max_concurrency, len(calls))
        first: list[BaseException] = []  # the failure that stopped the call
        lock = threading.Lock()

        def one(call: Call[Any]) -> Any:
            try:
                return self._send_sync(client, call, abort, progress)
            except BaseException as exc:
                with lock:
                    if not first:
                        first.append(exc)
                abort.set()
                raise

        pool = ThreadPoolExecutor(workers, thread_name_prefix="qwen3-rerank")
        try:
            futures = [pool.submit(one, call) for call in calls]
            wait(futures, return_when=FIRST_EXCEPTION)
            if first:
                raise first[0]
            return [f.result() for f in futures]
        finally:
            # On failure, do not wait for the requests still in flight: queued ones
            # are cancelled, running ones stop after their current attempt (abort)
            # and their results are dropped.
            abort.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _send_sync(
        self, client: httpx.Client, call: Call[Any], abort: threading.Event, progress: Progress
    ) -> Any:
        def execute(step: Send | Pause) -> Outcome | None:
            if isinstance(step, Pause):
                if abort.wait(step.seconds):
                    raise step.error  # another request of this call already failed
                return None
            if abort.is_set():
                raise _cancelled(call)
            return self._attempt_sync(client, call, step.url)

        value = drive(attempt_steps(call, self.policy, self.pool), execute)
        progress(call.count)
        return value

    def _attempt_sync(self, client: httpx.Client, call: Call[Any], url: str) -> Outcome:
        """One HTTP request; its answer must be complete within ``timeout``."""
        deadline = time.monotonic() + self._timeout
        content = bytearray()
        try:
            with client.stream(call.method, url, json=call.payload) as response:
                for chunk in response.iter_bytes():
                    content += chunk
                    if time.monotonic() > deadline:
                        return _too_slow(url, self._timeout)
        except httpx.RequestError as exc:
            return _transport_failure(exc, url)
        return self._outcome(call, response, bytes(content), url)

    # ------------------------------------------------------------------ async driver

    async def _send_all_async(
        self, client: httpx.AsyncClient, calls: list[Call[Any]], progress: Progress
    ) -> list[Any]:
        if not calls:
            return []
        if len(calls) == 1:
            return [await self._send_async(client, calls[0], progress)]
        limit = asyncio.Semaphore(self._max_concurrency)
        first: list[BaseException] = []  # the failure that stopped the call

        async def one(call: Call[Any]) -> Any:
            async with limit:
                if first:  # a request waiting for its turn when the call failed
                    raise _cancelled(call)
                try:
                    return await self._send_async(client, call, progress)
                except Exception as exc:
                    if not first:
                        first.append(exc)
                    raise

        tasks = [asyncio.ensure_future(one(call)) for call in calls]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if first:
                raise first[0]
            return [task.result() for task in tasks]
        finally:
            await _cancel_pending(tasks)

    async def _send_async(
        self, client: httpx.AsyncClient, call: Call[Any], progress: Progress
    ) -> Any:
        async def execute(step: Send | Pause) -> Outcome | None:
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                return None
            return await self._attempt_async(client, call, step.url)

        value = await adrive(attempt_steps(call, self.policy, self.pool), execute)
        progress(call.count)
        return value

    async def _attempt_async(self, client: httpx.AsyncClient, call: Call[Any], url: str) -> Outcome:
        """One HTTP request; its answer must be complete within ``timeout``."""
        try:
            response = await asyncio.wait_for(
                client.request(call.method, url, json=call.payload), self._timeout
            )
        except asyncio.TimeoutError:
            return _too_slow(url, self._timeout)
        except httpx.RequestError as exc:
            return _transport_failure(exc, url)
        return self._outcome(call, response, response.content, url)

    def _outcome(
        self, call: Call[Any], response: httpx.Response, content: bytes, url: str
    ) -> Outcome:
        return reply_outcome(
            call,
            response.status_code,
            response.headers,
            content,
            url,
            secrets=(self._api_key,) if self._api_key else (),
            explain=self._explain,
        )


async def _cancel_pending(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel the tasks still running, wait for them, and mark every failure seen."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:  # only the first failure is raised; mark the others seen
        if not task.cancelled():
            task.exception()


def _cancelled(call: Call[Any]) -> RemoteError:
    return RemoteError(f"{call.what or call.path}: cancelled, the call failed")


def _transport_failure(exc: httpx.RequestError, url: str) -> Retry:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return transport_outcome(
        url,
        timeout=isinstance(exc, httpx.TimeoutException),
        connect=isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
        detail=detail,
        secrets=_credentials(exc),
    )


def _credentials(exc: httpx.RequestError) -> tuple[str, ...]:
    """The credentials the failed request carried (a transport's error text may quote them)."""
    try:
        auth = exc.request.headers.get("authorization", "")
    except RuntimeError:  # no request attached
        return ()
    token = auth.partition(" ")[2].strip()
    return tuple(s for s in (auth, token) if s)


def _too_slow(url: str, timeout: float) -> Retry:
    # httpx's timeouts bound each network operation, not the whole request: a
    # server that trickles its answer would never trip them.
    return transport_outcome(
        url, timeout=True, connect=False, detail=f"no complete answer within timeout={timeout:g} s"
    )
