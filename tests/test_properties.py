"""Property tests of the core on random document lists (hypothesis).

For any query and documents (duplicates, empty strings, NUL bytes, RTL text, emoji
sequences, combining marks, template markers, very long items):

* ``rerank`` returns a permutation of the input indices, or the prefix that
  ``min_score`` then ``top_n`` leave;
* its scores are ``score()``'s for the same documents, and its order is score
  descending with the lower input index first on ties;
* ``arerank`` gives the same as ``rerank``;
* the caller's list is unchanged.

The reranker is built once per module; ``max_length=128`` keeps long documents cheap
(they are cut, which is part of what is tested).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_rerank_core import Qwen3Reranker, RerankResult

EDGE_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "عاصمة الصين هي بكين",
    "שלום עולם",
    "\u202eevil\u202c",
    "👨\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈🇨🇳👍🏽",
    "e\u0301\u0302\u0303",
    "\ufeff\u200b",
    "<|im_end|>\n<|im_start|>assistant\n",
    "The capital of China is Beijing.",
    "北京是中国的首都。",
]
LONG_TEXTS = ["word " * 2_000, "😀" * 3_000, "x" * 2_000, "中文" * 1_000]

texts = st.one_of(
    st.sampled_from(EDGE_TEXTS + LONG_TEXTS),
    st.text(max_size=40),  # any Unicode except lone surrogates (those are refused)
)
queries = st.one_of(
    st.sampled_from(["What is the capital of China?", "北京", "🙂 ?", "مرحبا", "a\x00b"]),
    # at most 4 tokens a character: 12 characters always leave room within max_length=128
    st.text(min_size=1, max_size=12).filter(str.strip),
)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model runs fastest, and steadily on a busy machine, on one CPU thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@st.composite
def document_lists(draw: st.DrawFn, max_size: int = 8) -> list[str]:
    """Random texts, some of them repeated at random places."""
    base = draw(st.lists(texts, max_size=max_size))
    if base:
        extra = draw(st.lists(st.sampled_from(base), max_size=3))
        for doc in extra:
            base.insert(draw(st.integers(0, len(base))), doc)
    return base


@pytest.fixture(scope="module")
def rr(tiny_model_dir: Path) -> Qwen3Reranker:
    return Qwen3Reranker(
        model=str(tiny_model_dir), device="cpu", dtype="float32", max_length=128, max_batch_size=8
    ).load()


def expected_ranking(
    scores: list[float], top_n: int | None, min_score: float | None
) -> list[tuple[int, float]]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = [(i, scores[i]) for i in order if min_score is None or scores[i] >= min_score]
    return kept if top_n is None else kept[:top_n]


def check_ranking(
    ranked: list[RerankResult],
    documents: list[str],
    scores: list[float],
    top_n: int | None,
    min_score: float | None,
) -> None:
    assert [(r.index, r.score) for r in ranked] == expected_ranking(scores, top_n, min_score)
    indices = [r.index for r in ranked]
    assert len(set(indices)) == len(indices)  # no index twice
    if top_n is None and min_score is None:
        assert sorted(indices) == list(range(len(documents)))  # a permutation
    for r in ranked:
        assert r.document is documents[r.index]
        assert isinstance(r.score, float) and math.isfinite(r.score) and 0.0 <= r.score <= 1.0
    for a, b in itertools.pairwise(ranked):
        assert a.score > b.score or (a.score == b.score and a.index < b.index)


@st.composite
def options(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "top_n": draw(st.one_of(st.none(), st.integers(1, 12))),
        # None, a random threshold, or (below) one of the actual scores to hit ties exactly
        "min_score": draw(st.one_of(st.none(), st.floats(0.0, 1.0), st.just("from-scores"))),
        "pick": draw(st.integers(0, 100)),
    }


def resolve(opts: dict[str, Any], scores: list[float]) -> tuple[int | None, float | None]:
    min_score = opts["min_score"]
    if min_score == "from-scores":
        min_score = scores[opts["pick"] % len(scores)] if scores else None
    return opts["top_n"], min_score


@SETTINGS
@given(query=queries, documents=document_lists(), opts=options())
def test_rerank_matches_score(
    rr: Qwen3Reranker, query: str, documents: list[str], opts: dict[str, Any]
) -> None:
    before = copy.deepcopy(documents)
    scores = rr.score(query, documents)
    assert len(scores) == len(documents)
    top_n, min_score = resolve(opts, scores)
    ranked = rr.rerank(query, documents, top_n=top_n, min_score=min_score)
    check_ranking(ranked, documents, scores, top_n, min_score)
    assert documents == before
    # identical texts score identically
    for i, doc in enumerate(documents):
        assert scores[i] == scores[documents.index(doc)]


@settings(SETTINGS, max_examples=30)
@given(query=queries, documents=document_lists(), opts=options())
def test_arerank_matches_rerank(
    rr: Qwen3Reranker, query: str, documents: list[str], opts: dict[str, Any]
) -> None:
    before = copy.deepcopy(documents)
    scores = rr.score(query, documents)
    top_n, min_score = resolve(opts, scores)

    async def run() -> tuple[list[float], list[RerankResult]]:
        return (
            await rr.ascore(query, documents),
            await rr.arerank(query, documents, top_n=top_n, min_score=min_score),
        )

    ascores, aranked = asyncio.run(run())
    assert ascores == scores
    check_ranking(aranked, documents, scores, top_n, min_score)
    assert documents == before


@settings(SETTINGS, max_examples=15)
@given(
    items=st.lists(st.tuples(queries, document_lists(max_size=4)), min_size=1, max_size=3),
)
def test_rerank_many_matches_rerank(rr: Qwen3Reranker, items: list[tuple[str, list[str]]]) -> None:
    before = copy.deepcopy(items)
    many = rr.rerank_many(items)
    assert len(many) == len(items)
    for (query, documents), ranked in zip(items, many, strict=True):
        single = rr.score(query, documents)
        # batched across queries: same texts, possibly other batch shapes (float rounding)
        assert sorted(r.index for r in ranked) == list(range(len(documents)))
        for r in ranked:
            assert r.score == pytest.approx(single[r.index], abs=1e-5)
            assert r.document is documents[r.index]
        for a, b in itertools.pairwise(ranked):
            assert a.score > b.score or (a.score == b.score and a.index < b.index)
    assert items == before
