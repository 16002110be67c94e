"""The ``remote`` backend: scores through a vLLM server started with ``vllm serve``.

It glues three layers together (details and the reasons in ``docs/remote_vllm.md``):

* ``_remote_scoring.py``: the scoring program, which decides which prompts go
  as text and which as token ids, to which route (sans-I/O, in named phases);
* ``_vllm_api.py``: vLLM's routes, the parsing of their answers and the hints
  for a misconfigured server;
* ``_http_driver.py`` over ``_http.py``: the generic HTTP layer that runs the
  program, sync or async, with retries, replicas, the deadline and redacted
  credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import httpx

from .._prompt import TokenTemplate
from .._stats import count_requests, counters_of
from . import _vllm_api
from ._base import Backend, Group, progress_bar
from ._http import Program, ReplicaPool, RetryPolicy, redact_url
from ._http_driver import HttpDriver
from ._remote_scoring import score_program, setup_program

if TYPE_CHECKING:
    from .._config import RerankConfig

__all__ = ["RemoteBackend"]

logger = logging.getLogger("qwen3_rerank_core.remote")

_USER_AGENT = "qwen3-rerank-core"


class RemoteBackend(Backend):
    """Scores with a vLLM server (or several replicas) over HTTP.

    ``transport`` replaces the HTTP transport of both the sync and the async
    client (e.g. ``httpx.MockTransport`` in tests); ``http_client`` /
    ``async_http_client`` replace the clients themselves (proxies, TLS, ...;
    the backend then does not close them). ``_backoff_base`` and ``_backoff_cap``
    set the retry pauses in seconds (tests make them tiny).
    """

    def __init__(
        self,
        config: RerankConfig,
        *,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        _backoff_base: float = 0.5,
        _backoff_cap: float = 30.0,
    ) -> None:
        urls = config.base_urls
        if not urls:
            raise ValueError("backend='remote' needs base_url, e.g. 'http://127.0.0.1:8000'")
        self.config = config
        self._api = _vllm_api.VLLMApi(config.model)
        self._driver = HttpDriver(
            [_vllm_api.api_root(u) for u in urls],
            policy=RetryPolicy(
                max_retries=config.max_retries, base=_backoff_base, cap=_backoff_cap
            ),
            timeout=config.timeout,
            max_concurrency=config.max_concurrency,
            api_key=config.api_key,
            user_agent=_USER_AGENT,
            explain=_vllm_api.explain,
            transport=transport,
            http_client=http_client,
            async_http_client=async_http_client,
        )
        #: The server's template ids and cut rule, learned on the first call.
        self._template: TokenTemplate | None = None

    def __repr__(self) -> str:
        urls = [redact_url(u) for u in self._pool.urls]
        return (
            f"RemoteBackend(base_url={urls if len(urls) > 1 else urls[0]!r}, "
            f"model={self.config.model!r}, prompt_format={self.config.prompt_format!r})"
        )

    @property
    def _pool(self) -> ReplicaPool:
        """The replicas."""
        return self._driver.pool

    @property
    def _policy(self) -> RetryPolicy:
        """The retry policy (tests may replace it)."""
        return self._driver.policy

    @_policy.setter
    def _policy(self, policy: RetryPolicy) -> None:
        self._driver.policy = policy

    # ------------------------------------------------------------------ public API

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        with self._progress(groups, show_progress) as advance:
            return self._driver.run(self._counted(groups, instruction), advance)

    async def ascore_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        with self._progress(groups, show_progress) as advance:
            return await self._driver.arun(self._counted(groups, instruction), advance)

    def close(self) -> None:
        self._driver.close()

    async def aclose(self) -> None:
        await self._driver.aclose()

    # ------------------------------------------------------------------ internals

    def _progress(
        self, groups: Sequence[Group], show_progress: bool
    ) -> AbstractContextManager[Callable[[int], object]]:
        total = sum(len(docs) for _, docs in groups)
        return progress_bar(total, show_progress or self.config.show_progress, desc="Scoring")

    def _counted(self, groups: Sequence[Group], instruction: str) -> Program[list[list[float]]]:
        """:meth:`_program`, its scoring requests counted (``reranker.stats()``)."""
        return count_requests(self._program(groups, instruction), counters_of(self))

    def _program(self, groups: Sequence[Group], instruction: str) -> Program[list[list[float]]]:
        if not any(len(docs) for _, docs in groups):
            return [[] for _ in groups]
        template = self._template
        if template is None:
            template = yield from setup_program(self._api, self.config.max_length)
            self._template = template
        scores: list[list[float]] = yield from score_program(
            self._api,
            template,
            groups,
            instruction,
            server_format=self.config.prompt_format == "server",
            max_docs_per_request=self.config.max_docs_per_request,
        )
        return scores
