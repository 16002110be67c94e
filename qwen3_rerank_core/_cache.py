"""The score cache: p(yes) of (model, instruction, query, document) kept across calls.

``RerankConfig(cache=...)`` picks the store:

- ``"memory"``: :class:`MemoryStore`, an in-process LRU of ``cache_size`` scores;
- a file path (``str`` or ``os.PathLike``): :class:`SQLiteStore`, a SQLite database
  (stdlib ``sqlite3``) that several threads and processes share safely (WAL
  journal, a busy timeout, ``INSERT OR REPLACE`` in transactions, one connection
  per thread);
- any object with ``mget(keys)`` / ``mset(pairs)`` (:class:`CacheStore`): the
  LangChain ``BaseStore[str, bytes]`` protocol, so ``InMemoryByteStore``,
  ``LocalFileStore`` or a Redis store work unchanged, as with LangChain's
  ``CacheBackedEmbeddings``.

:class:`ScoreCache` puts keys and values on top of a store. A key is
``"q3r1-" + sha256`` of everything that changes a score (:func:`model_identity`:
the model's identity, checkpoint flavour and dtype, or the server; then
``max_length``, the instruction, the query and the document) and never the api
key; it is computed without loading the model. A value is the score as 8
bytes (``struct '<d'``), so a cached score comes back bit-identical. A store
that fails (corrupt file, permissions, a store raising) is reported once per
cause as a WARNING and scoring goes on uncached; a cached value that is not a
valid score is dropped, never returned.

Example::

    >>> from qwen3_rerank_core._cache import MemoryStore, ScoreCache
    >>> cache = ScoreCache(MemoryStore(100), "memory", lambda: ("my-model", True))
    >>> lookup = cache.lookup([("q", ["a", "b"])], "instruction")
    >>> lookup.hits, lookup.misses
    (0, 2)
    >>> cache.put(lookup, [[0.25, 0.5]])
    >>> cache.lookup([("q", ["b", "a"])], "instruction").scores
    [[0.5, 0.25]]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._backends import Group
    from ._config import RerankConfig

__all__ = [
    "KEY_PREFIX",
    "CacheLookup",
    "CacheStore",
    "MemoryStore",
    "SQLiteStore",
    "ScoreCache",
    "is_cache_store",
    "model_identity",
    "open_cache",
]

logger = logging.getLogger("qwen3_rerank_core")

#: The namespace of every key (characters any store takes, LangChain's LocalFileStore too);
#: the number changes whenever keys or values change meaning.
KEY_PREFIX = "q3r1-"
_VALUE = struct.Struct("<d")
#: Files of a local checkpoint folder whose name, size and mtime enter its identity.
_MODEL_FILE_SUFFIXES = (
    ".json",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".model",
    ".txt",
    ".tiktoken",
    ".jinja",
)


@runtime_checkable
class CacheStore(Protocol):
    """A key-value store of bytes: LangChain's ``BaseStore[str, bytes]`` protocol.

    ``mget`` returns one value (or ``None``) per key, in order; ``mset`` stores
    ``(key, value)`` pairs. ``langchain_core.stores.InMemoryByteStore``,
    ``LocalFileStore`` and Redis stores have both.
    """

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (``None`` where absent)."""
        ...  # pragma: no cover - protocol

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Store the pairs."""
        ...  # pragma: no cover - protocol


def is_cache_store(value: object) -> bool:
    """Whether ``value`` is a store object (it has callable ``mget`` and ``mset``)."""
    return (
        not isinstance(value, (str, bytes, os.PathLike))
        and callable(getattr(value, "mget", None))
        and callable(getattr(value, "mset", None))
    )


class MemoryStore:
    """An in-process LRU of at most ``size`` values; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        with self._lock:
            for key in keys:
                value = self._data.get(key)
                if value is not None:
                    self._data.move_to_end(key)
                out.append(value)
        return out

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            for key, value in key_value_pairs:
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


class SQLiteStore:
    """A SQLite database of ``(key, value)`` rows, shared by threads and processes.

    WAL journal (readers never wait for a writer), a busy timeout of
    ``timeout`` seconds, ``INSERT OR REPLACE`` in one transaction per ``mset``,
    one connection per thread (and per process: a forked child opens its own).
    """

    _CHUNK = 500  # keys per SELECT (SQLite's bound on parameters is 999 on old builds)

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == pid:
            return held[1]
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )
        except BaseException:
            conn.close()
            raise
        self._local.held = (pid, conn)
        with self._lock:
            self._connections.append(conn)
        return conn

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        conn = self._connection()
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), self._CHUNK):
            chunk = list(keys[start : start + self._CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, value FROM scores WHERE key IN ({marks})", chunk)
            found.update(rows.fetchall())
        return [found.get(key) for key in keys]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        if not key_value_pairs:
            return
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO scores (key, value) VALUES (?, ?)", key_value_pairs
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened in this process."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):  # closing never matters
                conn.close()
        self._local = threading.local()


# ------------------------------------------------------------------- identity
def _file_fingerprint(folder: Path) -> list[Any]:
    """Name, size and mtime of the checkpoint's files, and config.json's digest."""
    entries: list[Any] = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.endswith(_MODEL_FILE_SUFFIXES):
            st = path.stat()
            entries.append([path.name, st.st_size, st.st_mtime_ns])
    config = folder / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    return [digest, entries]


def _flavour(model_config: dict[str, Any] | None, model: str) -> str:
    if model_config is None:
        return "unknown"
    from ._checkpoint import flavour_from_config

    try:
        flavour = flavour_from_config(model_config, model=model)
    except Exception:  # an unsupported checkpoint fails when it loads, not here
        return "unsupported"
    return f"{flavour.kind}:{flavour.architecture}:{flavour.tied}"


def _hub_snapshot(model: str) -> tuple[str | None, dict[str, Any] | None]:
    """The commit of a hub id's config.json in the local HF cache, and its content."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None, None
    try:
        path = try_to_load_from_cache(model, "config.json")
    except Exception:  # not a valid repo id, ...
        return None, None
    if not isinstance(path, str):
        return None, None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    return Path(path).parent.name, data if isinstance(data, dict) else None


def model_identity(config: RerankConfig) -> tuple[str, bool]:
    """What identifies the scores of ``config`` besides the inputs, as a JSON string,
    and whether it is final (``False``: a hub id whose revision is not in the local
    cache yet; computed again on the next call). Loads no model.

    Local backends: the model (a folder's resolved path with a fingerprint of
    config.json and its files' names, sizes and mtimes; a hub id with its commit in
    the local HF cache), the checkpoint flavour and the dtype the precision policy
    plans. ``remote``: the served model name, the servers and the prompt format.
    Both: the backend and ``max_length``. Never the api key.
    """
    parts: dict[str, Any] = {"backend": config.backend, "max_length": config.max_length}
    final = True
    if config.backend == "remote":
        parts.update(
            model=config.model,
            servers=sorted(config.base_urls),
            prompt_format=config.prompt_format,
            dtype="server",
        )
        return json.dumps(parts, sort_keys=True), final
    folder = Path(os.path.expanduser(config.model))
    model_config: dict[str, Any] | None = None
    if folder.is_dir():
        from ._checkpoint import read_local_config

        resolved = folder.resolve()
        parts["model"] = [str(resolved), *_file_fingerprint(resolved)]
        try:
            model_config = read_local_config(resolved)
        except Exception:
            model_config = None
    else:
        revision, model_config = _hub_snapshot(config.model)
        parts["model"] = [config.model, revision]
        final = revision is not None
    parts["flavour"] = _flavour(model_config, config.model)
    try:
        from ._precision import planned_dtype

        parts["dtype"] = planned_dtype(
            config.dtype, config.device, config.model, local_files_only=config.local_files_only
        ).name
    except Exception as exc:  # no torch (a custom backend), ...
        logger.debug("score cache: no planned dtype for %s (%s)", config.model, exc)
        parts["dtype"] = f"requested:{config.dtype}"
    return json.dumps(parts, sort_keys=True), final


# ---------------------------------------------------------------- the cache
def _text(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(8, "little") + data


def encode_score(score: float) -> bytes:
    """A score as 8 bytes (little-endian IEEE double)."""
    return _VALUE.pack(score)


def decode_score(value: object) -> float | None:
    """The score in ``value``, or ``None`` when it is not 8 bytes holding one in [0, 1]."""
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != _VALUE.size:
        return None
    (score,) = _VALUE.unpack(value)
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        return None
    return float(score)


@dataclass
class CacheLookup:
    """What a lookup found: per group, a score or ``None`` for each document, and the keys."""

    scores: list[list[float | None]]
    keys: list[list[str]]
    hits: int = 0
    misses: int = 0
    #: ``(group index, [document positions])`` of the documents to score.
    todo: list[tuple[int, list[int]]] = field(default_factory=list)

    def missing(self, groups: Sequence[Group]) -> list[Group]:
        """The groups to score: each group's documents that were not found."""
        return [(groups[gi][0], [groups[gi][1][i] for i in idx]) for gi, idx in self.todo]

    def fill(self, scored: Sequence[Sequence[float]]) -> list[list[float]]:
        """The full scores, with ``scored`` (the answer for :meth:`missing`) put in."""
        out = [list(row) for row in self.scores]
        for (gi, idx), values in zip(self.todo, scored, strict=True):
            for i, value in zip(idx, values, strict=True):
                out[gi][i] = value
        return out  # type: ignore[return-value]


class ScoreCache:
    """Keys and values over a :class:`CacheStore`; failures become warnings.

    ``identity`` computes the per-reranker part of the keys (:func:`model_identity`);
    it is called once, on the first lookup (again while it says it is not final).
    """

    def __init__(
        self, store: CacheStore, name: str, identity: Callable[[], tuple[str, bool]]
    ) -> None:
        self.store = store
        self.name = name
        self._identity = identity
        self._base: Any = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"ScoreCache({self.name})"

    def _warn(self, cause: str, message: str, *args: object) -> None:
        with self._lock:
            if cause in self._warned:
                return
            self._warned.add(cause)
        logger.warning("score cache %s: " + message, self.name, *args)

    def _failed(self, what: str, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}:{exc}"  # a corrupt file fails reads and writes alike
        self._warn(
            cause,
            "%s failed (%s: %s); scoring goes on without the cache",
            what,
            type(exc).__name__,
            exc,
        )

    def _hasher(self) -> Any:
        base = self._base
        if base is None:
            identity, final = self._identity()
            base = hashlib.sha256(_text(identity))
            if final:
                self._base = base
        return base

    def keys(self, groups: Sequence[Group], instruction: str) -> list[list[str]]:
        """The key of every document of ``groups`` with ``instruction``."""
        base = self._hasher().copy()
        base.update(_text(instruction))
        out: list[list[str]] = []
        for query, docs in groups:
            head = base.copy()
            head.update(_text(query))
            row = []
            for doc in docs:
                h = head.copy()
                h.update(_text(doc))
                row.append(KEY_PREFIX + h.hexdigest())
            out.append(row)
        return out

    def lookup(self, groups: Sequence[Group], instruction: str) -> CacheLookup:
        """Look every document up; a failing store gives all misses (and a warning)."""
        keys = self.keys(groups, instruction)
        unique = list(dict.fromkeys(k for row in keys for k in row))
        found: dict[str, float] = {}
        if unique:
            try:
                values = self.store.mget(unique)
                if len(values) != len(unique):
                    raise ValueError(f"mget returned {len(values)} values for {len(unique)} keys")
            except Exception as exc:
                self._failed("reading", exc)
                values = [None] * len(unique)
            bad = 0
            for key, value in zip(unique, values, strict=True):
                if value is None:
                    continue
                score = decode_score(value)
                if score is None:
                    bad += 1
                else:
                    found[key] = score
            if bad:
                self._warn(
                    "invalid",
                    "held %d invalid value(s) (not 8 bytes of a score in [0, 1]); "
                    "they are ignored and scored again",
                    bad,
                )
        result = CacheLookup(scores=[], keys=keys)
        for gi, row in enumerate(keys):
            scores: list[float | None] = [found.get(k) for k in row]
            idx = [i for i, s in enumerate(scores) if s is None]
            if idx:
                result.todo.append((gi, idx))
            result.misses += len(idx)
            result.hits += len(row) - len(idx)
            result.scores.append(scores)
        return result

    def put(self, lookup: CacheLookup, scored: Sequence[Sequence[float]]) -> None:
        """Store the scores of the documents the lookup missed (``scored`` as in
        :meth:`CacheLookup.fill`); a failing store gives a warning."""
        pairs: dict[str, bytes] = {}
        for (gi, idx), values in zip(lookup.todo, scored, strict=True):
            for i, value in zip(idx, values, strict=True):
                pairs[lookup.keys[gi][i]] = encode_score(value)
        if not pairs:
            return
        try:
            self.store.mset(list(pairs.items()))
        except Exception as exc:
            self._failed("writing", exc)

    def close(self) -> None:
        """Close the store when this cache opened it (a SQLite file)."""
        if isinstance(self.store, SQLiteStore):
            self.store.close()


def open_cache(config: RerankConfig, identity: Callable[[], tuple[str, bool]]) -> ScoreCache | None:
    """The :class:`ScoreCache` of ``config.cache`` (``None`` when it is off)."""
    setting = config.cache
    if setting is None:
        return None
    if isinstance(setting, str) and setting == "memory":
        return ScoreCache(MemoryStore(config.cache_size), "memory", identity)
    if isinstance(setting, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(setting))
        return ScoreCache(SQLiteStore(path), repr(path), identity)
    store: CacheStore = setting
    return ScoreCache(store, type(store).__name__, identity)
