"""Exceptions raised by qwen3_rerank_core.

Input mistakes raise the built-in ``TypeError`` / ``ValueError`` with a message
that names the bad value. Everything else derives from :class:`Qwen3RerankError`::

    Qwen3RerankError
     ├── MissingDependencyError (also ImportError)  an optional extra is not installed
     ├── ModelLoadError (also OSError)              weights/tokenizer could not be loaded
     └── RemoteError                                the remote (vLLM server) backend failed
          ├── RemoteConnectionError                 connection refused/reset, DNS, ...
          ├── RemoteTimeoutError                    no answer within ``timeout``
          ├── RemoteStatusError                     HTTP error status (``.status_code``, ``.message``)
          └── InvalidResponseError                  the answer does not match the request
"""

from __future__ import annotations

__all__ = [
    "InvalidResponseError",
    "MissingDependencyError",
    "ModelLoadError",
    "Qwen3RerankError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteStatusError",
    "RemoteTimeoutError",
]


class Qwen3RerankError(Exception):
    """Base class of every non-input error raised by this package."""


class MissingDependencyError(Qwen3RerankError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` to run."""


class ModelLoadError(Qwen3RerankError, OSError):
    """The model or tokenizer could not be loaded (not found, offline, corrupt)."""


class RemoteError(Qwen3RerankError):
    """The remote vLLM server could not produce a valid answer."""


class RemoteConnectionError(RemoteError):
    """The server could not be reached (refused, reset, DNS failure)."""


class RemoteTimeoutError(RemoteError):
    """The server did not answer within the configured ``timeout``."""


class RemoteStatusError(RemoteError):
    """The server answered with an HTTP error status."""

    def __init__(self, status_code: int, message: str, *, url: str = "") -> None:
        self.status_code = status_code
        self.message = message
        self.url = url
        where = f" from {url}" if url else ""
        super().__init__(f"HTTP {status_code}{where}: {message}")


class InvalidResponseError(RemoteError):
    """The server's answer is malformed or does not match the request."""
