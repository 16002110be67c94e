"""Load: the transformers backend streams any number of documents in bounded memory.

Documents are tokenized and scored in chunks (``CHUNK_DOCS`` / ``CHUNK_CHARS`` in
``_backends/_transformers.py``). The tests make the chunks small so that a few
hundred documents span many of them, then check that

* chunking does not change any score (and identical documents still score equal);
* the peak of Python allocations during a call does not grow with the number of
  documents beyond the scores returned, while the same call in a single chunk
  (the old behaviour: every document tokenized up front) grows by the documents'
  token ids, which shows the measurement would catch a regression.

The full-size case (10,000 documents of ~1,000 tokens, peak RSS) is
``benchmarks/stream_memory.py``; its figures are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core._backends._transformers import TransformersBackend

QUERY = "Which report describes the river water quality?"
#: Small enough that every ~1,000-token document is cut, so the model's work is
#: tiny and the memory of a call is dominated by tokenizing the documents.
MAX_LENGTH = 96
_TEXT = (
    "the system data model search result query document user time year city water energy "
    "market policy health research report study group company service network river "
    "mountain history language music science school price value rate level growth change "
    "Stadt Wasser Bericht Forschung ville rapport recherche santé agua informe investigación"
)
WORDS = _TEXT.split(" ")


def make_docs(n: int, *, words: int, seed: int = 0) -> list[str]:
    """``n`` distinct documents of about ``words`` tokens (one word is about one token)."""
    rng = random.Random(seed)
    return [f"{k}: " + " ".join(rng.choices(WORDS, k=words)) for k in range(n)]


@pytest.fixture(scope="module")
def rr(tiny_model_dir: Path) -> Iterator[Qwen3Reranker]:
    reranker = Qwen3Reranker(
        model=str(tiny_model_dir), device="cpu", max_length=MAX_LENGTH, max_batch_size=16
    ).load()
    yield reranker
    reranker.close()


def backend_of(rr: Qwen3Reranker) -> TransformersBackend:
    backend = rr._get_backend()
    assert isinstance(backend, TransformersBackend)
    return backend


def set_chunks(rr: Qwen3Reranker, docs: int, chars: int = 10**12) -> None:
    backend = backend_of(rr)
    backend._chunk_docs = docs
    backend._chunk_chars = chars


@pytest.fixture
def chunks(rr: Qwen3Reranker) -> Iterator[None]:
    backend = backend_of(rr)
    saved = backend._chunk_docs, backend._chunk_chars
    yield
    backend._chunk_docs, backend._chunk_chars = saved


def test_chunks_bounded_and_cover_everything_once(rr: Qwen3Reranker, chunks: None) -> None:
    backend = backend_of(rr)
    docs_a = ["a", "bb", "a", "ccc", "dddd", "bb", "e"]  # 5 distinct
    docs_b = ["x" * 10, "y", "z" * 3]
    groups = [("q1", docs_a), ("q2", docs_b), ("q3", ["only"])]
    firsts: list[dict[str, int]] = [{} for _ in groups]
    for first, (_, docs) in zip(firsts, groups, strict=True):
        for i, doc in enumerate(docs):
            first.setdefault(doc, i)
    set_chunks(rr, docs=3, chars=12)
    got = list(backend._chunks(groups, firsts))
    seen = [(gi, i) for chunk in got for gi, idx in chunk for i in idx]
    # Every distinct document exactly once, in input order, duplicates left out.
    assert seen == [(0, 0), (0, 1), (0, 3), (0, 4), (0, 6), (1, 0), (1, 1), (1, 2), (2, 0)]
    for chunk in got:
        sizes = [len(groups[gi][1][i]) for gi, idx in chunk for i in idx]
        assert 1 <= len(sizes) <= 3
        assert len(sizes) == 1 or sum(sizes) <= 12
        assert all(idx for _, idx in chunk)


@pytest.mark.parametrize(("docs", "chars"), [(1, 10**12), (3, 10**12), (1000, 2000)])
def test_chunking_does_not_change_scores(
    rr: Qwen3Reranker, chunks: None, docs: int, chars: int
) -> None:
    base = make_docs(9, words=60, seed=1)
    group_a = [base[0], base[1], base[0], base[2], "", base[3], base[1], base[4]]
    items = [
        (QUERY, group_a),
        ("second query", base[4:9]),
        ("third", [base[5]]),
        ("empty", []),
    ]
    set_chunks(rr, docs=10**9, chars=10**12)
    whole = rr.score_many(items)
    set_chunks(rr, docs=docs, chars=chars)
    chunked = rr.score_many(items)
    assert [len(s) for s in chunked] == [len(d) for _, d in items]
    for a, b in zip(whole, chunked, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    # Identical documents of one query score exactly equal, whatever chunk they fall in.
    scores = chunked[0]
    assert scores[0] == scores[2] and scores[1] == scores[6]
    assert rr.score(QUERY, group_a) == pytest.approx(scores, abs=1e-5)


def python_peak(rr: Qwen3Reranker, docs: list[str]) -> int:
    """Peak bytes of Python allocations during one ``score`` call (input excluded)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        scores = rr.score(QUERY, docs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(scores) == len(docs)
    return peak


def test_memory_does_not_grow_with_document_count(rr: Qwen3Reranker, chunks: None) -> None:
    n, words = 100, 500
    small, large = make_docs(n, words=words, seed=2), make_docs(4 * n, words=words, seed=3)
    rr.score(QUERY, small[:20])  # warm up (lazy imports, allocator pools)

    set_chunks(rr, docs=25)
    growth = python_peak(rr, large) - python_peak(rr, small)

    # The same calls in one chunk: every document tokenized before any is scored.
    set_chunks(rr, docs=10**9)
    growth_unchunked = python_peak(rr, large) - python_peak(rr, small)

    extra_docs = 3 * n
    # Each extra ~500-token document costs >= 8 bytes a token id when held whole
    # (measured: ~40 kB); the unchunked run shows it, so the measurement sees such growth ...
    assert growth_unchunked > extra_docs * words * 8
    # ... and in chunks an extra document costs only its score and bookkeeping
    # (measured: ~200 bytes).
    assert growth < extra_docs * 1024, (growth, growth_unchunked)
