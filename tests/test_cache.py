"""The score cache (``RerankConfig(cache=...)``, ``qwen3_rerank_core._cache``).

On the tiny random checkpoint: every store kind (memory, SQLite, LangChain byte
stores) gives back bit-identical scores without scoring again; partial hits
score only the misses; the key covers every input of a score and never the api
key; a fully cached call loads no model; SQLite is shared by processes and
threads; a broken cache is a warning, never a wrong score; ``eval --cache``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from shared_backend import SharedBackend

import qwen3_rerank_core._reranker as reranker_module
from qwen3_rerank_core import CacheStore, Qwen3Reranker, RerankConfig
from qwen3_rerank_core._backends import Backend
from qwen3_rerank_core._cache import (
    KEY_PREFIX,
    MemoryStore,
    ScoreCache,
    SQLiteStore,
    model_identity,
)

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parent.parent
QUERY = "what is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France. " * 6,
    "Berlin is the capital of Germany.",
    "The Eiffel Tower stands in Paris. " * 4,
    "Gravity pulls objects toward each other.",
    "France's capital hosts the Louvre museum and the Seine river. " * 3,
    "Bananas are rich in potassium.",
]
INSTRUCTION = "Given a question, retrieve passages that answer it"


def bits(values: Sequence[float]) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> str:
    return str(tiny_model_dir)


@pytest.fixture(scope="module")
def reference(tiny_reranker: Qwen3Reranker) -> list[float]:
    """Uncached scores of DOCS (float32, CPU)."""
    return tiny_reranker.score(QUERY, DOCS)


@pytest.fixture
def scored(tiny_reranker: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every document scored by a reranker built in the test (its model is the session's
    tiny one, "loaded" when the reranker first needs it)."""
    seen: list[str] = []
    inner = tiny_reranker._get_backend()

    def create(config: RerankConfig, **options: Any) -> Backend:
        assert config.model == tiny_reranker.config.model
        assert config.dtype in (None, "float32")
        return SharedBackend(inner, seen)

    monkeypatch.setattr(reranker_module, "create_backend", create)
    return seen


@pytest.fixture
def make(model: str, scored: list[str]) -> Iterator[Callable[..., Qwen3Reranker]]:
    made: list[Qwen3Reranker] = []

    def build(cache: Any, **settings: Any) -> Qwen3Reranker:
        options = {"device": "cpu", "dtype": "float32", **settings}
        reranker = Qwen3Reranker(model=model, cache=cache, **options)
        made.append(reranker)
        return reranker

    yield build
    for reranker in made:
        reranker.close()


def close_enough(a: Sequence[float], b: Sequence[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ the stores
STORES: dict[str, Callable[[Path], Any]] = {
    "sqlite-str": lambda tmp: str(tmp / "scores.sqlite"),
    "sqlite-path": lambda tmp: tmp / "sub" / "scores.db",
    "langchain-memory": lambda tmp: pytest.importorskip(
        "langchain_core.stores"
    ).InMemoryByteStore(),
    "langchain-files": lambda tmp: pytest.importorskip("langchain_classic.storage").LocalFileStore(
        tmp / "lfs"
    ),
}


def test_memory_cache_gives_back_bit_identical_scores(
    make: Callable[..., Qwen3Reranker], scored: list[str], reference: list[float]
) -> None:
    reranker = make("memory")
    first = reranker.score(QUERY, DOCS)
    assert close_enough(first, reference)
    assert scored == DOCS
    again = reranker.score(QUERY, DOCS)
    assert bits(again) == bits(first)
    assert scored == DOCS  # nothing scored the second time
    stats = reranker.stats()
    assert (stats.cache_hits, stats.cache_misses) == (len(DOCS), len(DOCS))


@pytest.mark.parametrize("kind", list(STORES))
def test_a_shared_store_serves_a_new_reranker_without_a_model(
    kind: str,
    tmp_path: Path,
    make: Callable[..., Qwen3Reranker],
    scored: list[str],
    reference: list[float],
) -> None:
    setting = STORES[kind](tmp_path)
    if not isinstance(setting, (str, os.PathLike)):
        assert isinstance(setting, CacheStore)
    first = make(setting).score(QUERY, DOCS, instruction=INSTRUCTION)
    assert scored == DOCS
    fresh = make(setting)
    again = fresh.score(QUERY, DOCS, instruction=INSTRUCTION)
    assert bits(again) == bits(first)
    assert scored == DOCS
    assert fresh._backend is None  # a fully cached call loads no model
    # another instruction is another key: scored, and agrees with an uncached call
    assert close_enough(fresh.score(QUERY, DOCS), reference)
    assert fresh._backend is not None


def test_a_store_object_is_not_copied_by_replace() -> None:
    store = MemoryStore(10)
    config = RerankConfig(cache=store)
    assert config.replace(max_length=512).cache is store
    assert Qwen3Reranker(config, max_length=512).config.cache is store


@pytest.mark.parametrize("bad", [3, b"path", object()])
def test_bad_cache_settings_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="cache must be"):
        RerankConfig(cache=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache must be"):
        RerankConfig(cache=" ")
    with pytest.raises(ValueError, match="cache_size"):
        RerankConfig(cache="memory", cache_size=0)


def test_memory_store_is_an_lru_of_cache_size() -> None:
    store = MemoryStore(2)
    store.mset([("a", b"1"), ("b", b"2")])
    assert store.mget(["a"]) == [b"1"]  # "a" is now the most recent
    store.mset([("c", b"3")])
    assert store.mget(["a", "b", "c"]) == [b"1", None, b"3"]
    assert len(store) == 2


# ---------------------------------------------------------------- partial hits
def test_partial_hits_score_only_the_misses(
    make: Callable[..., Qwen3Reranker], scored: list[str], reference: list[float]
) -> None:
    reranker = make("memory")
    reranker.score(QUERY, DOCS[:3])
    scored.clear()
    mixed = reranker.score(QUERY, DOCS)
    assert scored == DOCS[3:]
    assert close_enough(mixed, reference)
    scored.clear()
    many = reranker.score_many([(QUERY, DOCS[::-1]), ("another query", []), ("q2", DOCS[:2])])
    assert scored == DOCS[:2]  # only the new query's documents
    assert many[0] == mixed[::-1] and many[1] == []
    stats = reranker.stats()
    assert stats.cache_hits == 3 + len(DOCS) and stats.cache_misses == 3 + 3 + 2


def test_async_calls_use_the_cache(
    make: Callable[..., Qwen3Reranker], scored: list[str], reference: list[float]
) -> None:
    reranker = make("memory")

    async def calls() -> tuple[list[float], list[float]]:
        await reranker.ascore(QUERY, DOCS[:2])
        scored.clear()
        results = await reranker.arerank(QUERY, DOCS)
        ordered = [0.0] * len(DOCS)
        for r in results:
            ordered[r.index] = r.score
        return ordered, await reranker.ascore(QUERY, DOCS)

    mixed, cached = asyncio.run(calls())
    assert scored == DOCS[2:]
    assert close_enough(mixed, reference)
    assert bits(cached) == bits(mixed)


# ------------------------------------------------------------------------ keys
def key_of(config: RerankConfig, instruction: str = "i", query: str = "q", doc: str = "d") -> str:
    cache = ScoreCache(MemoryStore(1), "test", functools.partial(model_identity, config))
    return cache.keys([(query, [doc])], instruction)[0][0]


def test_the_key_covers_every_input_of_a_score(model: str, tmp_path: Path) -> None:
    base = RerankConfig(model=model, device="cpu", dtype="float32")
    key = key_of(base)
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 64
    assert key == key_of(RerankConfig(model=model, device="cpu", dtype="float32"))
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(Path(model) / "config.json", copy / "config.json")
    variants = {
        "instruction": key_of(base, instruction="j"),
        "query": key_of(base, query="q2"),
        "document": key_of(base, doc="d2"),
        "max_length": key_of(base.replace(max_length=512)),
        "dtype": key_of(base.replace(dtype="bfloat16")),
        "model": key_of(base.replace(model=str(copy))),
        "backend": key_of(base.replace(backend="vllm")),
    }
    assert key not in variants.values()
    assert len(set(variants.values())) == len(variants)
    # the pieces are length-prefixed: moving text between them changes the key
    assert key_of(base, query="ab", doc="c") != key_of(base, query="a", doc="bc")
    # a changed checkpoint file is another model
    before = key_of(base.replace(model=str(copy)))
    (copy / "config.json").write_text(
        (copy / "config.json").read_text(encoding="utf-8").replace("}", ', "x": 1}', 1)
    )
    assert key_of(base.replace(model=str(copy))) != before


def test_remote_keys_name_the_server_never_the_api_key() -> None:
    secret = "sk-VERY-SECRET-123"
    remote = RerankConfig(
        model="qwen3-reranker", backend="remote", base_url="http://a:8000", api_key=secret
    )
    identity, final = model_identity(remote)
    assert final and secret not in identity and "server" in identity
    key = key_of(remote)
    assert secret not in key
    assert key == key_of(remote.replace(api_key="another"))
    assert key == key_of(remote.replace(api_key=None))
    assert key != key_of(remote.replace(base_url="http://b:8000"))
    assert key != key_of(remote.replace(model="other-name"))
    assert key != key_of(remote.replace(prompt_format="server"))


def test_a_fully_cached_call_loads_no_model_and_is_fast(
    make: Callable[..., Qwen3Reranker], tiny_reranker: Qwen3Reranker, tmp_path: Path
) -> None:
    docs = [f"{i}: " + DOCS[i % len(DOCS)] * 3 for i in range(24)]
    path = tmp_path / "scores.sqlite"
    expected = make(path).score(QUERY, docs)

    def best(call: Callable[[], object], n: int = 3) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return min(times)

    uncached = best(lambda: tiny_reranker.score(QUERY, docs))
    fresh = make(path)
    assert bits(fresh.score(QUERY, docs)) == bits(expected)
    assert fresh._backend is None
    cached = best(lambda: fresh.score(QUERY, docs), n=5)
    assert fresh._backend is None
    assert cached * 50 <= uncached, (cached, uncached)


# ---------------------------------------------------------- sharing by processes
READER = """
import json, sys
from qwen3_rerank_core import Qwen3Reranker
reranker = Qwen3Reranker(model=sys.argv[1], device="cpu", dtype="float32", cache=sys.argv[2])
scores = reranker.score(sys.argv[3], json.loads(sys.argv[4]))
print(json.dumps({"scores": scores, "loaded": reranker._backend is not None,
                  "hits": reranker.stats().cache_hits}))
"""


def test_a_sqlite_cache_written_by_one_process_is_read_by_another(
    make: Callable[..., Qwen3Reranker], model: str, tmp_path: Path
) -> None:
    path = tmp_path / "shared.sqlite"
    written = make(str(path)).score(QUERY, DOCS)
    out = subprocess.run(
        [sys.executable, "-c", READER, model, str(path), QUERY, json.dumps(DOCS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    read = json.loads(out.stdout.strip().splitlines()[-1])
    assert read == {"scores": written, "loaded": False, "hits": len(DOCS)}


WRITER = """
import sys
from qwen3_rerank_core._cache import SQLiteStore
store = SQLiteStore(sys.argv[1])
name = sys.argv[2]
for batch in range(40):
    store.mset([(f"{name}-{batch}-{i}", bytes([batch, i])) for i in range(25)])
store.close()
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"proc{n}"]) for n in range(2)
    ]
    store = SQLiteStore(path)

    def write(name: str) -> None:
        for batch in range(40):
            store.mset([(f"{name}-{batch}-{i}", bytes([batch, i])) for i in range(25)])

    threads = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=120) == 0
    names = [f"proc{n}" for n in range(2)] + [f"thread{n}" for n in range(4)]
    keys = [f"{name}-{b}-{i}" for name in names for b in range(40) for i in range(25)]
    values = store.mget(keys)
    assert values == [bytes([b, i]) for _ in names for b in range(40) for i in range(25)]
    store.close()


# -------------------------------------------------------------- broken caches
def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("score cache")
    ]


def test_a_file_that_is_not_sqlite_is_a_warning_and_scores_go_on(
    make: Callable[..., Qwen3Reranker],
    reference: list[float],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not a database, just bytes\n" * 200)
    reranker = make(path)
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        first = reranker.score(QUERY, DOCS)
        second = reranker.score(QUERY, DOCS)
    assert close_enough(first, reference) and close_enough(second, reference)
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1, warnings  # once per cause, not per call or document
    assert str(path) in warnings[0] and "not a database" in warnings[0]
    assert reranker.stats().cache_misses == 2 * len(DOCS)


def test_an_unopenable_path_is_a_warning(
    make: Callable[..., Qwen3Reranker],
    reference: list[float],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        assert close_enough(make(folder).score(QUERY, DOCS), reference)
    assert len(cache_warnings(caplog)) == 1
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
            assert close_enough(make(locked / "c.sqlite").score(QUERY, DOCS), reference)
        assert len(cache_warnings(caplog)) == 1


def test_invalid_cached_values_are_dropped_and_rescored(
    make: Callable[..., Qwen3Reranker],
    scored: list[str],
    reference: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore(100)
    reranker = make(store)
    assert reranker._cache is not None
    keys = reranker._cache.keys([(QUERY, DOCS)], reranker.default_instruction)[0]
    bad = [b"short", struct.pack("<d", 1.5), struct.pack("<d", math.nan), struct.pack("<d", -0.1)]
    good = struct.pack("<d", reference[4])
    store.mset([*zip(keys, bad, strict=False), (keys[4], good)])
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        scores = reranker.score(QUERY, DOCS)
    assert bits(scores[4:5]) == [good]
    assert close_enough(scores, reference)
    assert scored == [d for i, d in enumerate(DOCS) if i != 4]
    (warning,) = cache_warnings(caplog)
    assert "4 invalid value(s)" in warning
    scored.clear()
    assert bits(reranker.score(QUERY, DOCS)) == bits(scores)  # rewritten with valid values
    assert scored == []


class BrokenStore:
    """A store whose backend is down."""

    def __init__(self) -> None:
        self.calls = 0

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls += 1
        raise ConnectionError("redis is down")

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        self.calls += 1
        raise PermissionError("read-only replica")


class WrongLengthStore:
    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [struct.pack("<d", 0.5)]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        pass


def test_a_raising_store_is_a_warning_per_cause(
    make: Callable[..., Qwen3Reranker], reference: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore()
    reranker = make(store)
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        for _ in range(3):
            assert close_enough(reranker.score(QUERY, DOCS), reference)
    assert store.calls == 6
    warnings = cache_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "BrokenStore" in warnings[0] and "reading failed" in warnings[0]
    assert "redis is down" in warnings[0]
    assert "writing failed" in warnings[1] and "read-only replica" in warnings[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        assert close_enough(make(WrongLengthStore()).score(QUERY, DOCS), reference)
    assert "1 values for 6 keys" in cache_warnings(caplog)[0]


# ------------------------------------------------------------------ eval --cache
def test_eval_with_a_cache_scores_nothing_the_second_time(
    model: str, scored: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ir_measures")
    pytest.importorskip("bm25s")
    from qwen3_rerank_core._cli import main

    path = tmp_path / "eval-cache.sqlite"
    argv = ["eval", str(REPO / "examples" / "data"), "-m", model, "--depth", "5"]
    argv += ["--max-queries", "3", "--cache", str(path), "--format", "json", "-v"]
    assert main(argv) == 0
    first, err = capsys.readouterr()
    n = len(scored)
    assert n > 5
    assert f"stats: 1 call(s), {n} document(s)" in err
    scored.clear()
    assert main(argv) == 0
    second, err = capsys.readouterr()
    assert scored == []  # the second run re-scores nothing
    assert f"cache {n} hit(s) / 0 miss(es)" in err and "0 forward pass(es)" in err
    assert json.loads(first)["rows"] == json.loads(second)["rows"]


def test_a_hub_id_is_keyed_by_its_cached_commit(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    snapshots: dict[str, str] = {}
    for commit in ("1111aaaa", "2222bbbb"):
        folder = tmp_path / "snapshots" / commit
        folder.mkdir(parents=True)
        shutil.copy(Path(model) / "config.json", folder / "config.json")
        snapshots[commit] = str(folder / "config.json")
    current: dict[str, str | None] = {"commit": None}

    def cached(repo_id: str, filename: str, **kwargs: Any) -> str | None:
        assert (repo_id, filename) == ("Qwen/Qwen3-Reranker-0.6B", "config.json")
        commit = current["commit"]
        return None if commit is None else snapshots[commit]

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cached)
    hub = RerankConfig(model="Qwen/Qwen3-Reranker-0.6B", device="cpu", dtype="float32")
    identity, final = model_identity(hub)
    assert not final  # not downloaded yet: computed again on the next call
    current["commit"] = "1111aaaa"
    identity, final = model_identity(hub)
    assert final and "1111aaaa" in identity and "causal-lm" in identity
    first = key_of(hub)
    current["commit"] = "2222bbbb"
    assert key_of(hub) != first  # a new revision of the model is a new key space
