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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3_rerank_core import Qwen3Reranker, RerankResult
from qwen3_rerank_core.pytest_plugin import (
    expected_order,
    hypothesis_settings,
    insert_repeats,
    load_tiny_reranker,
    text_strategy,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ON_TOPIC = ["The capital of China is Beijing."]
LONG_TEXTS = ["word " * 2_000, "😀" * 3_000, "x" * 2_000, "中文" * 1_000]

# any Unicode except lone surrogates (those are refused)
texts = text_strategy(ON_TOPIC + LONG_TEXTS, max_size=40)
queries = st.one_of(
    st.sampled_from(["What is the capital of China?", "北京", "🙂 ?", "مرحبا", "a\x00b"]),
    # at most 4 tokens a character: 12 characters always leave room within max_length=128
    st.text(min_size=1, max_size=12).filter(str.strip),
)

SETTINGS = hypothesis_settings(max_examples=40)


@st.composite
def document_lists(draw: st.DrawFn, max_size: int = 8) -> list[str]:
    """Random texts, some of them repeated at random places."""
    return insert_repeats(draw, draw(st.lists(texts, max_size=max_size)), max_repeats=3)


@pytest.fixture(scope="module")
def rr(tiny_model_dir: Path) -> Qwen3Reranker:
    return load_tiny_reranker(tiny_model_dir, max_length=128, max_batch_size=8)


def expected_ranking(
    scores: list[float], top_n: int | None, min_score: float | None
) -> list[tuple[int, float]]:
    return [(i, scores[i]) for i in expected_order(scores, top_n, min_score)]


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


@dataclass(frozen=True)
class Scored:
    """A call's documents as given, their scores, and ``top_n`` / ``min_score`` to pass."""

    before: list[str]
    scores: list[float]
    top_n: int | None
    min_score: float | None


def scored(rr: Qwen3Reranker, query: str, documents: list[str], opts: dict[str, Any]) -> Scored:
    """Copy and score ``documents``; resolve ``opts`` ("from-scores" picks one of the scores)."""
    before = copy.deepcopy(documents)
    scores = rr.score(query, documents)
    min_score = opts["min_score"]
    if min_score == "from-scores":
        min_score = scores[opts["pick"] % len(scores)] if scores else None
    return Scored(before, scores, opts["top_n"], min_score)


@SETTINGS
@given(query=queries, documents=document_lists(), opts=options())
def test_rerank_matches_score(
    rr: Qwen3Reranker, query: str, documents: list[str], opts: dict[str, Any]
) -> None:
    case = scored(rr, query, documents, opts)
    assert len(case.scores) == len(documents)
    ranked = rr.rerank(query, documents, top_n=case.top_n, min_score=case.min_score)
    check_ranking(ranked, documents, case.scores, case.top_n, case.min_score)
    assert documents == case.before
    # identical texts score identically
    for i, doc in enumerate(documents):
        assert case.scores[i] == case.scores[documents.index(doc)]


@settings(SETTINGS, max_examples=30)
@given(query=queries, documents=document_lists(), opts=options())
def test_arerank_matches_rerank(
    rr: Qwen3Reranker, query: str, documents: list[str], opts: dict[str, Any]
) -> None:
    case = scored(rr, query, documents, opts)

    async def run() -> tuple[list[float], list[RerankResult]]:
        return (
            await rr.ascore(query, documents),
            await rr.arerank(query, documents, top_n=case.top_n, min_score=case.min_score),
        )

    ascores, aranked = asyncio.run(run())
    assert ascores == case.scores
    check_ranking(aranked, documents, case.scores, case.top_n, case.min_score)
    assert documents == case.before


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
