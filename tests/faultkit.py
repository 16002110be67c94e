"""Real-socket fault injectors for the remote backend's fault tests, and its deadline.

* :class:`RawServer`: a TCP server on 127.0.0.1 that misbehaves at the socket
  level (never answers, hangs up, resets, trickles its answer), so the real
  httpx transport and its timeouts are exercised, not a mock.
* :class:`TcpProxy`: forwards a port to another; ``kill()`` stops listening and
  cuts every open connection, i.e. a replica that goes down mid-run.
* :func:`request_deadline`: the longest one request (with its retries and
  fail-overs) may take under a backend's settings, as ``docs/reliability.md``
  states it.

Import from tests as ``import faultkit`` (``conftest.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Literal

from qwen3_rerank_core._backends._remote import RemoteBackend

Behaviour = Literal["silent", "hang_up", "reset", "trickle"]


def request_deadline(backend: RemoteBackend, *, retry_after: bool = False) -> float:
    """Longest time one request of ``backend`` may take before it succeeds or raises.

    Every round tries each replica once (a refused connection moves on to the
    next replica at once); each attempt lasts at most ``timeout``; between
    rounds the backend pauses at most the backoff ceiling, or the honoured
    ``Retry-After`` when the server sent one.
    """
    policy = backend._policy
    replicas = len(backend._pool.urls)
    attempts = (policy.max_retries + 1) * replicas
    pauses = sum(
        max(min(policy.cap, policy.base * 2.0**k), policy.max_retry_after if retry_after else 0.0)
        for k in range(policy.max_retries)
    )
    return attempts * backend.config.timeout + pauses


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Listener:
    """A listening socket on 127.0.0.1 whose connections are served by threads."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():
                    _close(conn)
                    return
                self._conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening (new connections are refused) and cut every open connection."""
        self._closed.set()
        _close(self._sock)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            _close(conn)

    def __enter__(self) -> _Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_request_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk
    return data


class RawServer(_Listener):
    """An HTTP "server" that misbehaves after reading each request's head.

    ``silent``: never answers (the client's read timeout must fire).
    ``hang_up``: closes the connection without answering.
    ``reset``: resets the connection (RST) without answering.
    ``trickle``: sends a 200 head, then one body byte every ``interval``
    seconds, forever: each read succeeds well within a per-read timeout.
    """

    def __init__(self, behaviour: Behaviour, *, interval: float = 0.05) -> None:
        self.behaviour = behaviour
        self.interval = interval
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        _read_request_head(conn)
        if self.behaviour == "silent":
            self._closed.wait()
        elif self.behaviour == "hang_up":
            _close(conn)
        elif self.behaviour == "reset":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                conn.close()
        elif self.behaviour == "trickle":
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: 100000\r\n\r\n"
            )
            try:
                conn.sendall(head)
                while not self._closed.wait(self.interval):
                    conn.sendall(b" ")
            except OSError:
                pass


class TcpProxy(_Listener):
    """Forwards 127.0.0.1:``port`` to ``upstream_port``; ``close()`` takes it down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            _close(conn)
            return
        upstream.settimeout(None)
        with self._lock:
            if self._closed.is_set():
                _close(upstream)
                _close(conn)
                return
            self._conns.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()
        self._pump(conn, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
