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
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_qwen3_rerank import QwenRerank

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core import pytest_plugin as kit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

texts = kit.text_strategy(["Chlorophyll absorbs red and blue light.", "leaf " * 1_500], max_size=30)
SETTINGS = kit.hypothesis_settings(max_examples=30)


@st.composite
def document_lists(draw: st.DrawFn) -> list[Document]:
    # repeated entries: equal text and metadata, distinct documents
    entries = st.tuples(texts, kit.json_metadata(), st.booleans())
    items = kit.insert_repeats(draw, draw(st.lists(entries, max_size=7)), max_repeats=2)
    return [
        Document(page_content=t, metadata=copy.deepcopy(m), id=f"d{i}" if with_id else None)
        for i, (t, m, with_id) in enumerate(items)
    ]


@pytest.fixture(scope="module")
def rr(tiny_model_dir: Path) -> Qwen3Reranker:
    return kit.load_tiny_reranker(tiny_model_dir, max_length=160, max_batch_size=8)


@SETTINGS
@given(
    query=st.sampled_from(kit.EDGE_QUERIES),
    docs=document_lists(),
    **kit.cut_strategies(),
)
def test_compress_matches_core_score(
    rr: Qwen3Reranker,
    query: str,
    docs: list[Document],
    top_n: int | None,
    min_score: float | None,
) -> None:
    before = copy.deepcopy(docs)
    given_list = list(docs)
    scores = rr.score(query, [d.page_content for d in docs])
    rerank = QwenRerank(reranker=rr, top_n=top_n, min_score=min_score)

    out = list(rerank.compress_documents(docs, query))
    aout = list(asyncio.run(rerank.acompress_documents(docs, query)))

    expected = kit.expected_order(scores, top_n, min_score)
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
    assert [x.model_dump() for x in docs] == [x.model_dump() for x in before]
