"""The ``remote`` backend: scores through a vLLM server started with ``vllm serve``.

How a call is scored (details and the reasons in ``docs/remote_vllm.md``):

1. Once per backend, ``/tokenize`` gives the token counts of the prompt
   template's prefix and suffix and the server's ``max_model_len``.
2. A prompt whose body (instruction + query + document) has at most as many
   UTF-8 bytes as the body may have tokens cannot need truncation (a byte-level
   BPE token covers at least one byte) and is sent as text. Only the others are
   tokenized with ``/tokenize`` and cut by :class:`~qwen3_rerank_core._prompt.PromptEncoder`,
   exactly as the local backends cut them. So are prompts whose user text
   contains a special-token string (``<|im_end|>``, ``<think>``, ...): they are
   tokenized in pieces (:func:`~qwen3_rerank_core._prompt.split_markers`) and
   always sent as token ids, so the server cannot read the string as the token.
3. ``prompt_format="client"``: every prompt goes to ``/classify`` already
   formatted (text, or token ids when cut), which the server scores as given,
   whatever ``--chat-template`` it runs. ``prompt_format="server"``: raw query
   and documents go to ``/v1/score`` with the instruction in
   ``chat_template_kwargs``; a cut document is sent as the text of its kept
   tokens (``/detokenize``), checked to tokenize back to the same ids, or else
   sent formatted to ``/classify``.

The orchestration is a sans-I/O *program* (a generator of request batches, see
``_http.py``); the sync and async drivers below only send requests and sleep.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import unicodedata
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import httpx

from .._errors import RemoteError
from .._prompt import (
    PREFIX,
    SUFFIX,
    PromptEncoder,
    format_body,
    format_head,
    format_prompt,
    split_markers,
)
from ._base import Backend, Group
from ._http import (
    Attempts,
    Call,
    Done,
    Fail,
    Outcome,
    Program,
    ReplicaPool,
    Retry,
    RetryPolicy,
    parse_detokenized,
    parse_score_list,
    parse_tokens,
    redact_url,
    reply_outcome,
    transport_outcome,
)

if TYPE_CHECKING:
    from .._config import RerankConfig

__all__ = ["RemoteBackend"]

logger = logging.getLogger("qwen3_rerank_core.remote")

T = TypeVar("T")

_USER_AGENT = "qwen3-rerank-core"


def token_bound(text: str) -> int:
    """An upper bound on the number of tokens of ``text`` for a byte-level BPE tokenizer.

    Every token (special tokens included) covers at least one byte of the text
    the tokenizer sees: the raw text, or its NFC (Qwen) or NFKC normalization,
    either of which may be longer than the raw text.
    """
    raw = len(text.encode("utf-8", "surrogatepass"))
    if text.isascii():
        return raw
    return max(
        raw,
        *(
            len(unicodedata.normalize(form, text).encode("utf-8", "surrogatepass"))
            for form in ("NFC", "NFKC")
        ),
    )


def _no_token_id(token: str) -> int:
    # The server computes p(yes) itself: the yes/no ids are not needed remotely.
    return 0


@dataclass(frozen=True)
class _ServerInfo:
    prefix_ids: list[int]
    suffix_ids: list[int]
    #: ``config.max_length``, lowered to the server's ``max_model_len`` when larger.
    max_length: int


@dataclass
class _Item:
    """One document on its way to the server."""

    group: int
    index: int
    #: Raw document text (server format) or full prompt text (client format).
    text: str | None = None
    #: Full prompt token ids (client format, or a cut document that has no exact text).
    ids: list[int] | None = None


class _Progress(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> _Progress:
    if not enabled or total == 0:
        return _NoProgress()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        logger.warning("show_progress needs tqdm (pip install tqdm); no progress bar shown")
        return _NoProgress()
    bar: _Progress = tqdm(total=total, desc="Scoring", unit="doc")
    return bar


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
        self._pool = ReplicaPool([_normalize_base_url(u) for u in urls])
        self._policy = RetryPolicy(
            max_retries=config.max_retries, base=_backoff_base, cap=_backoff_cap
        )
        self._secrets: tuple[str, ...] = (config.api_key,) if config.api_key else ()
        self._transport = transport
        self._client = http_client
        self._own_client = http_client is None
        self._aclient = async_http_client
        self._own_aclient = async_http_client is None
        self._aclient_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._lock = threading.Lock()
        self._info: _ServerInfo | None = None

    def __repr__(self) -> str:
        urls = [redact_url(u) for u in self._pool.urls]
        return (
            f"RemoteBackend(base_url={urls if len(urls) > 1 else urls[0]!r}, "
            f"model={self.config.model!r}, prompt_format={self.config.prompt_format!r})"
        )

    # ------------------------------------------------------------------ public API

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        total = sum(len(docs) for _, docs in groups)
        progress = _progress(total, show_progress or self.config.show_progress)
        try:
            return self._run_sync(self._score_program(groups, instruction), progress)
        finally:
            progress.close()

    async def ascore_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        total = sum(len(docs) for _, docs in groups)
        progress = _progress(total, show_progress or self.config.show_progress)
        try:
            return await self._run_async(self._score_program(groups, instruction), progress)
        finally:
            progress.close()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            aclient, self._aclient = self._aclient, None
        if client is not None and self._own_client:
            client.close()
        if aclient is not None and self._own_aclient:
            # An AsyncClient can only be closed on a loop; drop its connections.
            logger.debug("async HTTP client dropped by close(); use aclose() to close it")

    async def aclose(self) -> None:
        with self._lock:
            aclient, self._aclient = self._aclient, None
        if aclient is not None and self._own_aclient:
            await aclient.aclose()
        self.close()

    # ------------------------------------------------------------------ the program

    def _call(
        self,
        path: str,
        payload: dict[str, Any],
        parse: Callable[[Any], Any],
        what: str,
        count: int = 0,
    ) -> Call[Any]:
        return Call(path, {"model": self.config.model, **payload}, parse, what, count)

    def _tokenize_call(self, text: str) -> Call[Any]:
        return self._call(
            "/tokenize", {"prompt": text, "add_special_tokens": False}, parse_tokens, "tokenize"
        )

    def _setup_program(self) -> Program[_ServerInfo]:
        (prefix_ids, len_a), (suffix_ids, len_b) = yield [
            self._tokenize_call(PREFIX),
            self._tokenize_call(SUFFIX),
        ]
        max_length = self.config.max_length
        max_model_len = len_a or len_b
        if max_model_len is not None and max_length > max_model_len:
            logger.warning(
                "max_length=%d is larger than the server's max_model_len=%d; "
                "prompts are cut to %d tokens instead",
                max_length,
                max_model_len,
                max_model_len,
            )
            max_length = max_model_len
        info = _ServerInfo(prefix_ids, suffix_ids, max_length)
        # Raises ValueError when the template alone does not fit.
        self._encoder(info, {})
        self._info = info
        return info

    @staticmethod
    def _encoder(info: _ServerInfo, tokens: dict[str, list[int]]) -> PromptEncoder:
        known = {PREFIX: info.prefix_ids, SUFFIX: info.suffix_ids, **tokens}
        return PromptEncoder(
            lambda texts: [known[t] for t in texts], _no_token_id, max_length=info.max_length
        )

    def _score_program(
        self, groups: Sequence[Group], instruction: str
    ) -> Program[list[list[float]]]:
        scores: list[list[float]] = [[0.0] * len(docs) for _, docs in groups]
        if not any(scores):
            return scores
        info = self._info
        if info is None:
            info = yield from self._setup_program()
        budget = info.max_length - len(info.prefix_ids) - len(info.suffix_ids)

        # 1. Tokenize only what may be too long or holds special-token strings
        #    (and the heads of those groups). Text with markers is tokenized in
        #    pieces (split_markers) and always sent as token ids: the server
        #    would turn "<|im_end|>" in a document into the template's token.
        longs: list[list[int]] = []
        marked: set[tuple[int, int]] = set()
        wanted: dict[str, None] = {}
        for g, (query, docs) in enumerate(groups):
            head_pieces = split_markers(format_head(instruction, query))
            cut = []
            for i, doc in enumerate(docs):
                pieces = split_markers(format_body(instruction, query, doc))
                if len(head_pieces) > 1 or len(pieces) > 1:
                    marked.add((g, i))
                elif token_bound(pieces[0]) <= budget:
                    continue
                cut.append(i)
                wanted.update(dict.fromkeys(pieces))
            longs.append(cut)
            if cut:
                wanted.update(dict.fromkeys(head_pieces))
        tokens: dict[str, list[int]] = {}
        if wanted:
            texts = list(wanted)
            replies = yield [self._tokenize_call(t) for t in texts]
            tokens = {text: reply[0] for text, reply in zip(texts, replies, strict=True)}
        encoder = self._encoder(info, tokens)

        # 2. One item per document; cut documents get their exact token ids.
        server = self.config.prompt_format == "server"
        items: list[_Item] = []
        cut_items: list[tuple[_Item, list[int], list[int]]] = []  # item, body ids, tail ids
        n_suffix = len(info.suffix_ids)
        for g, (query, docs) in enumerate(groups):
            long_set = set(longs[g])
            for i, doc in enumerate(docs):
                if i not in long_set:
                    text = doc if server else format_prompt(instruction, query, doc)
                    items.append(_Item(g, i, text=text))
            if long_set:
                group = encoder.encode_group(instruction, query, [docs[i] for i in longs[g]])
                for k, i in enumerate(longs[g]):
                    item = _Item(g, i, ids=group.full(k))
                    items.append(item)
                    if server and (g, i) not in marked:
                        tail = group.tails[k][: len(group.tails[k]) - n_suffix]
                        head = group.shared[len(info.prefix_ids) :]
                        cut_items.append((item, head + tail, tail))

        # 3. Server format: turn cut documents back into text the server tokenizes
        #    to the very same ids; keep the ids where that is impossible.
        if cut_items:
            texts = yield [
                self._call("/detokenize", {"tokens": tail}, parse_detokenized, "detokenize")
                for _, _, tail in cut_items
            ]
            checks: list[tuple[_Item, list[int], str]] = []
            for (item, body_ids, _), text in zip(cut_items, texts, strict=True):
                if text.startswith(" "):
                    checks.append((item, body_ids, text[1:]))
            replies = yield [
                self._tokenize_call(format_body(instruction, groups[item.group][0], doc_text))
                for item, _, doc_text in checks
            ]
            for (item, body_ids, doc_text), (ids, _) in zip(checks, replies, strict=True):
                if ids == body_ids:
                    item.text, item.ids = doc_text, None
            for item, _, _ in cut_items:
                if item.ids is not None:
                    logger.debug(
                        "document %d of query %d: its cut text does not tokenize back to "
                        "the same ids; scored as token ids through /classify",
                        item.index,
                        item.group,
                    )

        # 4. Score, in requests of at most max_docs_per_request documents.
        calls, owners = self._score_calls(items, instruction, groups)
        results = yield calls
        for owned, values in zip(owners, results, strict=True):
            for item, value in zip(owned, values, strict=True):
                scores[item.group][item.index] = value
        return scores

    def _score_calls(
        self, items: list[_Item], instruction: str, groups: Sequence[Group]
    ) -> tuple[list[Call[Any]], list[list[_Item]]]:
        size = self.config.max_docs_per_request
        server = self.config.prompt_format == "server"
        calls: list[Call[Any]] = []
        owners: list[list[_Item]] = []

        def add(batch: list[_Item], make: Callable[[list[_Item]], Call[Any]]) -> None:
            for start in range(0, len(batch), size):
                chunk = batch[start : start + size]
                calls.append(make(chunk))
                owners.append(chunk)

        def classify(kind: Literal["text", "ids"], chunk: list[_Item]) -> Call[Any]:
            inputs = [it.text if kind == "text" else it.ids for it in chunk]
            return self._call(
                "/classify",
                {"input": inputs, "add_special_tokens": False},
                partial(parse_score_list, n=len(chunk), score_key="probs"),
                f"score {len(chunk)} documents",
                len(chunk),
            )

        def score(query: str, chunk: list[_Item]) -> Call[Any]:
            return self._call(
                "/v1/score",
                {
                    "text_1": query,
                    "text_2": [it.text for it in chunk],
                    "chat_template_kwargs": {"instruction": instruction},
                },
                partial(parse_score_list, n=len(chunk), score_key="score"),
                f"score {len(chunk)} documents",
                len(chunk),
            )

        with_ids = [it for it in items if it.ids is not None]
        with_text = [it for it in items if it.ids is None]
        if server:
            for g, (query, _) in enumerate(groups):
                add([it for it in with_text if it.group == g], partial(score, query))
        else:
            add(with_text, partial(classify, "text"))
        add(with_ids, partial(classify, "ids"))
        return calls, owners

    # ------------------------------------------------------------------ sync driver

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                transport = self._transport
                self._client = httpx.Client(
                    headers=self._headers(),
                    timeout=self.config.timeout,
                    limits=self._limits(),
                    transport=transport if isinstance(transport, httpx.BaseTransport) else None,
                )
                self._own_client = True
            return self._client

    def _run_sync(self, program: Program[T], progress: _Progress) -> T:
        client = self._sync_client()
        try:
            calls = next(program)
            while True:
                calls = program.send(self._send_all_sync(client, calls, progress))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _send_all_sync(
        self, client: httpx.Client, calls: list[Call[Any]], progress: _Progress
    ) -> list[Any]:
        abort = threading.Event()
        if len(calls) == 1:
            return [self._send_sync(client, calls[0], abort, progress)]
        workers = min(self.config.max_concurrency, len(calls))
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
        self, client: httpx.Client, call: Call[Any], abort: threading.Event, progress: _Progress
    ) -> Any:
        attempts = Attempts(self._policy, self._pool)
        while True:
            if abort.is_set():
                raise RemoteError(f"{call.what or call.path}: cancelled, the call failed")
            url = attempts.next_url() + call.path
            outcome = self._attempt_sync(client, call, url)
            step = self._after(call, url, attempts, outcome)
            if isinstance(step, Done):
                progress.update(call.count)
                return step.value
            if abort.wait(step.delay) or abort.is_set():
                raise step.error  # another request of this call already failed

    def _attempt_sync(self, client: httpx.Client, call: Call[Any], url: str) -> Outcome:
        """One HTTP request; its answer must be complete within ``timeout``."""
        timeout = self.config.timeout
        deadline = time.monotonic() + timeout
        content = bytearray()
        try:
            with client.stream(call.method, url, json=call.payload) as response:
                for chunk in response.iter_bytes():
                    content += chunk
                    if time.monotonic() > deadline:
                        return _too_slow(url, timeout)
        except httpx.RequestError as exc:
            return _transport_failure(exc, url)
        return self._reply(call, response, bytes(content), url)

    # ------------------------------------------------------------------ async driver

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            bound = self._aclient_loop() if self._aclient_loop is not None else None
            if self._aclient is None or (self._own_aclient and bound is not loop):
                # httpx's async pool is bound to the loop that first used it.
                transport = self._transport
                self._aclient = httpx.AsyncClient(
                    headers=self._headers(),
                    timeout=self.config.timeout,
                    limits=self._limits(),
                    transport=(
                        transport if isinstance(transport, httpx.AsyncBaseTransport) else None
                    ),
                )
                self._own_aclient = True
                self._aclient_loop = weakref.ref(loop)
            return self._aclient

    async def _run_async(self, program: Program[T], progress: _Progress) -> T:
        client = self._async_client()
        try:
            calls = next(program)
            while True:
                calls = program.send(await self._send_all_async(client, calls, progress))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def _send_all_async(
        self, client: httpx.AsyncClient, calls: list[Call[Any]], progress: _Progress
    ) -> list[Any]:
        if len(calls) == 1:
            return [await self._send_async(client, calls[0], progress)]
        limit = asyncio.Semaphore(self.config.max_concurrency)
        first: list[BaseException] = []  # the failure that stopped the call

        async def one(call: Call[Any]) -> Any:
            async with limit:
                if first:  # a request waiting for its turn when the call failed
                    raise RemoteError(f"{call.what or call.path}: cancelled, the call failed")
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
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for task in tasks:  # only the first failure is raised; mark the others seen
                if not task.cancelled():
                    task.exception()

    async def _send_async(
        self, client: httpx.AsyncClient, call: Call[Any], progress: _Progress
    ) -> Any:
        attempts = Attempts(self._policy, self._pool)
        while True:
            url = attempts.next_url() + call.path
            outcome = await self._attempt_async(client, call, url)
            step = self._after(call, url, attempts, outcome)
            if isinstance(step, Done):
                progress.update(call.count)
                return step.value
            await asyncio.sleep(step.delay)

    async def _attempt_async(self, client: httpx.AsyncClient, call: Call[Any], url: str) -> Outcome:
        """One HTTP request; its answer must be complete within ``timeout``."""
        timeout = self.config.timeout
        try:
            response = await asyncio.wait_for(
                client.request(call.method, url, json=call.payload), timeout
            )
        except asyncio.TimeoutError:
            return _too_slow(url, timeout)
        except httpx.RequestError as exc:
            return _transport_failure(exc, url)
        return self._reply(call, response, response.content, url)

    # ------------------------------------------------------------------ shared by both

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=max(100, self.config.max_concurrency))

    def _reply(
        self, call: Call[Any], response: httpx.Response, content: bytes, url: str
    ) -> Outcome:
        return reply_outcome(
            call, response.status_code, response.headers, content, url, secrets=self._secrets
        )

    def _after(
        self, call: Call[Any], url: str, attempts: Attempts, outcome: Outcome
    ) -> Done | Retry:
        """Advance the retry state; raise when the call failed for good."""
        step = attempts.step(outcome)
        if isinstance(step, Fail):
            if isinstance(outcome, Retry) and attempts.attempts > 1:
                logger.warning(
                    "%s %s failed after %d attempts: %s",
                    call.what or call.path,
                    redact_url(url),
                    attempts.attempts,
                    step.error,
                )
            raise step.error
        if isinstance(step, Retry):
            logger.warning(
                "%s %s failed (%s); %s in %.2fs",
                call.what or call.path,
                redact_url(url),
                step.error,
                "trying another replica"
                if step.failover
                else f"retry {attempts.retries}/{self._policy.max_retries}",
                step.delay,
            )
            return step
        return step


def _normalize_base_url(url: str) -> str:
    """``http://host:8000`` from ``http://host:8000/``, ``.../v1`` or ``.../v1/``."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url
