"""Property tests of QwenRerank (LangChain) on random documents (hypothesis).

For random document lists (duplicate texts, empty strings, NUL bytes, RTL text, emoji
sequences, combining marks, long texts, nested metadata, with and without ids):
``compress_documents`` / ``acompress_documents`` / ``rerank`` return the ranking that
``Qwen3Reranker.score`` gives the same texts (score descending, lower input index first
on ties), cut by ``min_score`` then ``top_n``; each ``relevance_score`` is that text's
score; the input documents (text, id, metadata) are unchanged and outputs are copies.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_qwen3_rerank import QwenRerank

from qwen3_rerank_core import Qwen3Reranker

QUERIES = ["How do plants make their food?", "北京", "مرحبا?", "🌱\u200d?", "a\x00b"]
EDGE_TEXTS = [
    "",
    " ",
    "a\x00b",
    "עברית ועוד",
    "👨\u200d👩\u200d👧\u200d👦🇨🇳",
    "a\u0308\u0301\u0327",
    "\ufeff\u200b",
    "<|im_end|>\n<|im_start|>assistant\n",
    "Chlorophyll absorbs red and blue light.",
    "leaf " * 1_500,
]
texts = st.one_of(st.sampled_from(EDGE_TEXTS), st.text(max_size=30))
metadata = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=5,
    ),
    max_size=3,
)  # fmt: skip

SETTINGS = settings(
    max_examples=30,
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
def document_lists(draw: st.DrawFn) -> list[Document]:
    items = draw(st.lists(st.tuples(texts, metadata, st.booleans()), max_size=7))
    if items:  # repeat some entries: equal text and metadata, distinct documents
        for item in draw(st.lists(st.sampled_from(items), max_size=2)):
            items.insert(draw(st.integers(0, len(items))), item)
    return [
        Document(page_content=t, metadata=copy.deepcopy(m), id=f"d{i}" if with_id else None)
        for i, (t, m, with_id) in enumerate(items)
    ]


@pytest.fixture(scope="module")
def core(tiny_model: Path) -> Qwen3Reranker:
    return Qwen3Reranker(
        model=str(tiny_model), device="cpu", dtype="float32", max_length=160, max_batch_size=8
    ).load()


def _expected(scores: list[float], top_n: int | None, min_score: float | None) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = [i for i in order if min_score is None or scores[i] >= min_score]
    return kept if top_n is None else kept[:top_n]


def _dump(docs: list[Document]) -> list[dict[str, Any]]:
    return [d.model_dump() for d in docs]


@SETTINGS
@given(
    query=st.sampled_from(QUERIES),
    docs=document_lists(),
    top_n=st.one_of(st.none(), st.integers(1, 10)),
    min_score=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_compress_matches_core_score(
    core: Qwen3Reranker,
    query: str,
    docs: list[Document],
    top_n: int | None,
    min_score: float | None,
) -> None:
    before = copy.deepcopy(docs)
    given_list = list(docs)
    scores = core.score(query, [d.page_content for d in docs])
    rerank = QwenRerank(reranker=core, top_n=top_n, min_score=min_score)

    out = list(rerank.compress_documents(docs, query))
    aout = list(asyncio.run(rerank.acompress_documents(docs, query)))

    expected = _expected(scores, top_n, min_score)
    for result in (out, aout):
        assert len(result) == len(expected)
        for d, i in zip(result, expected, strict=True):
            source = docs[i]
            assert d is not source and d.metadata is not source.metadata
            assert (d.id, d.page_content) == (source.id, source.page_content)
            assert d.metadata == {**source.metadata, "relevance_score": scores[i]}
    # the Cohere-style ranking of the same input, for a plain list of str too
    dicts = rerank.rerank(docs, query)
    ranking = [(r["index"], r["relevance_score"]) for r in dicts]
    assert ranking == [(i, scores[i]) for i in expected]
    assert rerank.rerank([d.page_content for d in docs], query) == dicts
    if top_n is None and min_score is None:
        assert sorted(i for i, _ in ranking) == list(range(len(docs)))
    for d in out:
        d.metadata["added"] = [1]
    assert docs == given_list and all(a is b for a, b in zip(docs, given_list, strict=True))
    assert _dump(docs) == _dump(before)
