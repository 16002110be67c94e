"""Qwen3Reranker on the local backend: input checks, rerank semantics, async, threads."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qwen3_rerank_core import DEFAULT_INSTRUCTION, ModelLoadError, Qwen3Reranker, RerankResult

QUERY = "What is the capital of China?"
DOCS = [
    "The capital of China is Beijing.",
    "北京是中国的首都。",
    "Gravity is a force.",
    "",
    "The capital of China is Beijing.",  # duplicate of 0: same score, tie broken by index
    "عاصمة الصين هي بكين",
]


@pytest.fixture(scope="module")
def rr(tiny_model_dir: Path) -> Qwen3Reranker:
    return Qwen3Reranker(model=str(tiny_model_dir), max_batch_size=4).load()


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("query", "exc", "needle"),
    [
        ("", ValueError, "query must not be empty"),
        ("   \n\t", ValueError, "query must not be empty"),
        (None, TypeError, "query must be a str, got NoneType"),
        (42, TypeError, "got int: 42"),
        (b"bytes", TypeError, "got bytes"),
        ("bad \ud800 surrogate", ValueError, "lone surrogate"),
    ],
)
def test_bad_query(rr: Qwen3Reranker, query: object, exc: type[Exception], needle: str) -> None:
    with pytest.raises(exc, match=needle):
        rr.score(query, ["doc"])  # type: ignore[arg-type]
    with pytest.raises(exc, match=needle):
        rr.rerank(query, ["doc"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("documents", "needle"),
    [
        ("a single string", "documents must be a sequence of str.*got str"),
        (b"bytes", "got bytes"),
        (None, "got NoneType"),
        (iter(["a"]), "got list_iterator"),
        ({"a": 1}, "got dict"),
        (["ok", None], r"documents\[1\] must be a str, got NoneType"),
        (["ok", "fine", b"raw"], r"documents\[2\] must be a str, got bytes"),
        ([{"text": "x"}], r"documents\[0\] must be a str, got dict"),
        (["a", 3.5], r"documents\[1\].*got float: 3.5"),
    ],
)
def test_bad_documents(rr: Qwen3Reranker, documents: object, needle: str) -> None:
    with pytest.raises(TypeError, match=needle):
        rr.score(QUERY, documents)  # type: ignore[arg-type]


def test_surrogate_document_names_index(rr: Qwen3Reranker) -> None:
    with pytest.raises(ValueError, match=r"documents\[1\].*surrogate"):
        rr.score(QUERY, ["ok", "x\udc80y"])


@pytest.mark.parametrize(
    ("kwargs", "exc", "needle"),
    [
        ({"top_n": 0}, ValueError, "top_n must be >= 1"),
        ({"top_n": -2}, ValueError, "-2"),
        ({"top_n": 1.5}, TypeError, "top_n"),
        ({"top_n": True}, TypeError, "top_n"),
        ({"min_score": 1.5}, ValueError, r"min_score must be in \[0, 1\]"),
        ({"min_score": float("nan")}, ValueError, "min_score"),
        ({"min_score": "0.5"}, TypeError, "min_score"),
        ({"instruction": ""}, ValueError, "instruction must not be empty"),
        ({"instruction": 7}, TypeError, "instruction"),
    ],
)
def test_bad_rerank_options(
    rr: Qwen3Reranker, kwargs: dict[str, object], exc: type[Exception], needle: str
) -> None:
    with pytest.raises(exc, match=needle):
        rr.rerank(QUERY, DOCS, **kwargs)  # type: ignore[arg-type]


def test_query_longer_than_max_length(tiny_model_dir: Path) -> None:
    small = Qwen3Reranker(model=str(tiny_model_dir), max_length=96)
    with pytest.raises(ValueError, match=r"instruction and query take \d+ tokens.*max_length=96"):
        small.score("word " * 200, ["doc"])


def test_max_length_below_template(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_length=20 is too small"):
        Qwen3Reranker(model=str(tiny_model_dir), max_length=20).score(QUERY, ["doc"])


# ------------------------------------------------------------ nothing dropped
def test_empty_list_returns_empty_without_loading() -> None:
    rr = Qwen3Reranker(model="/definitely/not/a/model/folder")
    assert rr.score(QUERY, []) == []
    assert rr.rerank(QUERY, ()) == []
    assert asyncio.run(rr.ascore(QUERY, [])) == []
    assert rr.score_many([(QUERY, []), ("q2", [])]) == [[], []]


def test_one_score_per_document(rr: Qwen3Reranker) -> None:
    scores = rr.score(QUERY, DOCS)
    assert len(scores) == len(DOCS)
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 and math.isfinite(s) for s in scores)
    assert scores[0] == scores[4]  # identical inputs, identical scores
    assert len(rr.score(QUERY, tuple(DOCS))) == len(DOCS)


def test_inputs_not_mutated(rr: Qwen3Reranker) -> None:
    docs = list(DOCS)
    rr.rerank(QUERY, docs, top_n=2)
    assert docs == DOCS


# ------------------------------------------------------------ rerank semantics
def test_rerank_sorted_with_index_tiebreak(rr: Qwen3Reranker) -> None:
    scores = rr.score(QUERY, DOCS)
    results = rr.rerank(QUERY, DOCS)
    assert [r.index for r in results] == sorted(range(len(DOCS)), key=lambda i: (-scores[i], i))
    assert all(isinstance(r, RerankResult) for r in results)
    for r in results:
        assert r.score == pytest.approx(scores[r.index], abs=1e-6)
        assert r.document is DOCS[r.index]
    # exact duplicates tie: the lower input index comes first
    pos = {r.index: k for k, r in enumerate(results)}
    assert pos[0] < pos[4]


def test_exact_ties_keep_input_order(rr: Qwen3Reranker) -> None:
    docs = ["same text"] * 5
    assert [r.index for r in rr.rerank(QUERY, docs)] == [0, 1, 2, 3, 4]


def test_top_n_and_min_score(rr: Qwen3Reranker) -> None:
    full = rr.rerank(QUERY, DOCS)
    assert rr.rerank(QUERY, DOCS, top_n=2) == full[:2]
    assert rr.rerank(QUERY, DOCS, top_n=100) == full
    threshold = full[2].score
    kept = rr.rerank(QUERY, DOCS, min_score=threshold)
    assert kept == [r for r in full if r.score >= threshold]
    assert rr.rerank(QUERY, DOCS, min_score=threshold, top_n=1) == full[:1]
    assert rr.rerank(QUERY, DOCS, min_score=1.0) == [r for r in full if r.score >= 1.0]


def test_instruction_config_and_per_call(tiny_model_dir: Path, rr: Qwen3Reranker) -> None:
    custom = "Given a question, find passages written in Chinese"
    configured = Qwen3Reranker(model=str(tiny_model_dir), instruction=custom)
    per_call = rr.score(QUERY, DOCS, instruction=custom)
    # ``rr`` batches 4 documents at most, ``configured`` all of them: float32 rounding
    # depends on the batch shape (~1e-6), so the same prompts agree within the parity
    # bound (1e-5), while a different instruction moves the scores by more than 1e-4.
    assert configured.score(QUERY, DOCS) == pytest.approx(per_call, abs=1e-5)
    assert rr.score(QUERY, DOCS, instruction=DEFAULT_INSTRUCTION) == pytest.approx(
        rr.score(QUERY, DOCS), abs=1e-6
    )
    assert max(abs(a - b) for a, b in zip(per_call, rr.score(QUERY, DOCS), strict=True)) > 1e-4
    # the per-call instruction beats the configured one
    assert configured.score(QUERY, DOCS, instruction=DEFAULT_INSTRUCTION) == pytest.approx(
        rr.score(QUERY, DOCS), abs=1e-5
    )


def test_score_many_equals_score(rr: Qwen3Reranker) -> None:
    items = [(QUERY, DOCS), ("Wie heißt die Hauptstadt?", DOCS[:3]), ("empty", [])]
    many = rr.score_many(items)
    assert [len(m) for m in many] == [len(DOCS), 3, 0]
    for (q, docs), scores in zip(items, many, strict=True):
        assert scores == pytest.approx(rr.score(q, docs), abs=1e-6)
    ranked = rr.rerank_many(items, top_n=2)
    assert ranked[0] == rr.rerank(QUERY, DOCS, top_n=2)
    with pytest.raises(TypeError, match=r"items\[0\]"):
        rr.score_many([QUERY])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"documents\[0\]"):
        rr.score_many([(QUERY, [None])])  # type: ignore[list-item]


# ------------------------------------------------------------ async, threads
def test_async_equals_sync(rr: Qwen3Reranker) -> None:
    async def run() -> tuple[list[float], list[RerankResult], list[list[float]]]:
        return (
            await rr.ascore(QUERY, DOCS),
            await rr.arerank(QUERY, DOCS, top_n=3),
            await rr.ascore_many([(QUERY, DOCS)]),
        )

    scores, ranked, many = asyncio.run(run())
    assert scores == pytest.approx(rr.score(QUERY, DOCS), abs=1e-6)
    assert [r.index for r in ranked] == [r.index for r in rr.rerank(QUERY, DOCS, top_n=3)]
    assert many[0] == pytest.approx(scores, abs=1e-6)


def test_async_does_not_block_event_loop(rr: Qwen3Reranker) -> None:
    async def run() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await rr.ascore(QUERY, [f"{d} {i}" for i in range(20) for d in DOCS])
        done.set()
        await task
        return ticks

    assert asyncio.run(run()) > 3


def test_threads_equal_serial(rr: Qwen3Reranker) -> None:
    queries = [QUERY, "capital?", "北京", "gravity", "Peking", "something else", "a", "b"]
    serial = [rr.score(q, DOCS) for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda q: rr.score(q, DOCS), queries))
    assert parallel == serial


def test_threads_share_one_lazy_reranker(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 threads released at once on one reranker that is not loaded yet: the model
    is loaded once, and every thread's results (score, rerank, score_many) equal the
    serial ones exactly."""
    import qwen3_rerank_core._reranker as reranker_module

    created = []
    real_create = reranker_module.create_backend

    def counting_create(*args: object, **kwargs: object) -> object:
        created.append(threading.get_ident())
        return real_create(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reranker_module, "create_backend", counting_create)
    rr = Qwen3Reranker(model=str(tiny_model_dir), max_batch_size=3)
    queries = [QUERY, "capital?", "北京", "gravity", "Peking", "something else", "a", "b"]
    start = threading.Barrier(len(queries))
    workers: set[int] = set()

    def work(k: int) -> tuple[list[float], list[int], list[list[float]]]:
        start.wait(timeout=60)
        workers.add(threading.get_ident())
        docs = DOCS[k % len(DOCS) :] + DOCS[: k % len(DOCS)]  # each thread its own order
        return (
            rr.score(queries[k], docs),
            [r.index for r in rr.rerank(queries[k], docs, top_n=4)],
            rr.score_many([(queries[k], docs), (QUERY, DOCS[:3])]),
        )

    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        parallel = list(pool.map(work, range(len(queries))))
    assert len(workers) == len(queries)  # really 8 threads, all in flight together
    assert len(created) == 1  # one backend, loaded once, shared by all
    serial = []
    for k in range(len(queries)):
        docs = DOCS[k % len(DOCS) :] + DOCS[: k % len(DOCS)]
        serial.append(
            (
                rr.score(queries[k], docs),
                [r.index for r in rr.rerank(queries[k], docs, top_n=4)],
                rr.score_many([(queries[k], docs), (QUERY, DOCS[:3])]),
            )
        )
    assert parallel == serial
    assert len(created) == 1
    rr.close()


def test_progress_bar(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rr = Qwen3Reranker(model=str(tiny_model_dir), show_progress=True, max_batch_size=2)
    rr.score(QUERY, DOCS)
    assert "Reranking" in capsys.readouterr().err


def test_context_manager_closes(tiny_model_dir: Path) -> None:
    with Qwen3Reranker(model=str(tiny_model_dir)) as rr:
        assert len(rr.score(QUERY, DOCS[:2])) == 2
    with pytest.raises(RuntimeError, match="closed"):
        rr.score(QUERY, DOCS[:2])
    rr.close()  # idempotent


# ------------------------------------------------------------ loading errors
def test_missing_folder_error_says_local_folder() -> None:
    with pytest.raises(ModelLoadError, match="does not exist; model= takes a local folder"):
        Qwen3Reranker(model="./no/such/folder").load()


def test_unreachable_hub_error_says_local_folder(caplog: pytest.LogCaptureFixture) -> None:
    rr = Qwen3Reranker(model="Qwen/Qwen3-Reranker-0.6B-not-cached", local_files_only=True)
    with pytest.raises(ModelLoadError, match="pass model= a local folder") as info:
        rr.load()
    assert "No other model is used instead" in str(info.value)
    assert isinstance(info.value, OSError)


def test_loading_is_logged(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="qwen3_rerank_core"):
        Qwen3Reranker(model=str(tiny_model_dir)).load()
    assert any("loaded" in rec.getMessage() for rec in caplog.records)
