"""Hybrid ranking in QwenRerank (LangChain): ``fusion``, ``signals``, ``first_stage_key``,
``document_template`` and ``metadata_keys``.

The fused order and scores are checked against the formula of docs/hybrid.md worked
out here, independently of the library, with p(yes) from ``Qwen3Reranker.score`` on
the same texts; no score is hard-coded.
"""

from __future__ import annotations

import asyncio
import copy
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_qwen3_rerank import QwenRerank

from qwen3_rerank_core import Fusion, Qwen3Reranker
from qwen3_rerank_core.pytest_plugin import expected_fused, hypothesis_settings

QUERY = "How do plants make their food?"
ROWS = [  # text, source, date, retriever score
    ("Photosynthesis turns light, water and CO2 into sugar inside leaves.", "Botany 101", "2024-03", 0.82),
    ("The Eiffel Tower was finished in 1889 for the World's Fair.", "Travel blog", "2026-11", 0.79),
    ("Chlorophyll absorbs red and blue light {and reflects green}.", "Encyclopedia", "2025-01", 0.74),
    ("Roots take up water and minerals that the plant moves to its leaves.", "Forum", "2026-10", 0.71),
    ("Stomata let carbon dioxide in and oxygen out.", "Botany 101", "2023-05", 0.69),
    ("Glucose made in the leaves is stored as starch in roots.", "Encyclopedia", "2026-09", 0.66),
]  # fmt: skip
WEIGHTS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, -0.5, 20.0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _documents() -> list[Document]:
    return [
        Document(
            page_content=text,
            id=f"doc-{i}",
            metadata={"source": src, "date": date, "score": score, "new": i % 2 == 0},
        )
        for i, (text, src, date, score) in enumerate(ROWS)
    ]


def _is_binding(doc: Document) -> bool:
    return doc.metadata["source"] in {"Botany 101", "Encyclopedia"}


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, len(ROWS)))
    rows = draw(st.lists(st.sampled_from(ROWS), min_size=n, max_size=n))
    score = st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1))
    docs = [
        Document(
            page_content=text,
            id=f"d{i}",
            metadata={"source": src, "score": draw(score), "new": draw(st.booleans())},
        )
        for i, (text, src, _, _) in enumerate(rows)
    ]
    fusion = Fusion(
        relevance=draw(WEIGHTS),
        first_stage=draw(WEIGHTS),
        signals={"new": draw(WEIGHTS), "binding": draw(WEIGHTS)},
        mode=draw(st.sampled_from(["auto", "rank", "score"])),
        rrf_k=draw(st.sampled_from([0.0, 1.5, 60.0])),
    )
    key = draw(st.sampled_from([None, "score"]))
    if key is None and fusion.mode == "score":
        key = "score"  # mode "score" needs scores; without a key the input order is the rank
    return {
        "docs": docs,
        "fusion": fusion,
        "key": key,
        "top_n": draw(st.one_of(st.none(), st.integers(1, n))),
        "min_score": draw(st.one_of(st.none(), st.floats(0, 0.3))),
        "template": draw(st.sampled_from([None, "[{source}] {page_content}"])),
    }


@hypothesis_settings(25)
@given(case=cases())
def test_fused_order_is_the_formula(tiny_reranker: Qwen3Reranker, case: dict[str, Any]) -> None:
    docs, fusion = case["docs"], case["fusion"]
    before = [d.model_dump() for d in docs]
    compressor = QwenRerank(
        reranker=tiny_reranker,
        fusion=fusion,
        signals={"new": "new", "binding": _is_binding},
        first_stage_key=case["key"],
        document_template=case["template"],
        top_n=case["top_n"],
        min_score=case["min_score"],
    )
    out = compressor.compress_documents(docs, QUERY)

    texts = [
        d.page_content if case["template"] is None else f"[{d.metadata['source']}] {d.page_content}"
        for d in docs
    ]
    p_yes = tiny_reranker.score(QUERY, texts)
    scores = None if case["key"] is None else [d.metadata["score"] for d in docs]
    signals = {"new": [float(d.metadata["new"]) for d in docs]}
    signals["binding"] = [float(_is_binding(d)) for d in docs]
    fused = expected_fused(fusion, p_yes, scores, signals)
    order = sorted(range(len(docs)), key=lambda i: (-fused[i], i))
    if case["min_score"] is not None:
        order = [i for i in order if p_yes[i] >= case["min_score"]]
    order = order[: case["top_n"]]

    assert [d.id for d in out] == [docs[i].id for i in order]
    assert [d.page_content for d in out] == [docs[i].page_content for i in order]
    relevance = [d.metadata["relevance_score"] for d in out]
    assert relevance == pytest.approx([fused[i] for i in order], abs=1e-12)
    assert [d.metadata["rerank_score"] for d in out] == [p_yes[i] for i in order]
    assert [d.model_dump() for d in docs] == before
    again = asyncio.run(compressor.acompress_documents(docs, QUERY))
    assert [d.model_dump() for d in again] == [d.model_dump() for d in out]
    dicts = compressor.rerank(docs, QUERY)
    assert [(r["index"], r["relevance_score"], r["rerank_score"]) for r in dicts] == [
        (i, d.metadata["relevance_score"], d.metadata["rerank_score"])
        for i, d in zip(order, out, strict=True)
    ]


FLOW = Fusion(relevance=0.7, first_stage=0.2, signals={"binding": 0.1})


@pytest.fixture(scope="module")
def base_retriever() -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(_documents())
    return store.as_retriever(search_kwargs={"k": 5})


def _compression(base_retriever: Any, tiny_reranker: Qwen3Reranker, key: str | None) -> Any:
    compressor = QwenRerank(
        reranker=tiny_reranker,
        fusion=FLOW.spec,
        signals={"binding": _is_binding},
        first_stage_key=key,
        document_template="[{source} {date}] {page_content}",
        top_n=3,
    )
    # langchain-classic needs langchain-core>=1.0: absent from the oldest-dependencies run,
    # where only these flow tests are skipped (the rest of this module still runs there).
    retrievers = pytest.importorskip("langchain_classic.retrievers")
    return retrievers.ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=base_retriever
    )


def _expected_flow(
    tiny_reranker: Qwen3Reranker, retrieved: list[Document], key: str | None
) -> list[tuple[str | None, float, float]]:
    texts = [f"[{d.metadata['source']} {d.metadata['date']}] {d.page_content}" for d in retrieved]
    p_yes = tiny_reranker.score(QUERY, texts)
    scores = None if key is None else [d.metadata[key] for d in retrieved]
    fused = expected_fused(
        FLOW, p_yes, scores, {"binding": [float(_is_binding(d)) for d in retrieved]}
    )
    order = sorted(range(len(retrieved)), key=lambda i: (-fused[i], i))[:3]
    return [(retrieved[i].id, fused[i], p_yes[i]) for i in order]


@pytest.mark.parametrize("key", [None, "score"])
def test_contextual_compression_with_fusion(
    base_retriever: Any, tiny_reranker: Qwen3Reranker, key: str | None
) -> None:
    retrieved = base_retriever.invoke(QUERY)
    out = _compression(base_retriever, tiny_reranker, key).invoke(QUERY)
    got = [(d.id, d.metadata["relevance_score"], d.metadata["rerank_score"]) for d in out]
    expected = _expected_flow(tiny_reranker, retrieved, key)
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-12)
    assert [g[2] for g in got] == [e[2] for e in expected]


async def test_contextual_compression_with_fusion_async(
    base_retriever: Any, tiny_reranker: Qwen3Reranker
) -> None:
    retrieved = await base_retriever.ainvoke(QUERY)
    out = await _compression(base_retriever, tiny_reranker, "score").ainvoke(QUERY)
    got = [(d.id, d.metadata["relevance_score"]) for d in out]
    expected = _expected_flow(tiny_reranker, retrieved, "score")
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-12)


def test_rerank_score_equals_score_exactly(tiny_reranker: Qwen3Reranker) -> None:
    docs = _documents()
    out = QwenRerank(reranker=tiny_reranker, fusion=Fusion()).compress_documents(docs, QUERY)
    p_yes = tiny_reranker.score(QUERY, [d.page_content for d in docs])
    by_id = {d.id: i for i, d in enumerate(docs)}
    for doc in out:
        assert doc.metadata["rerank_score"] == p_yes[by_id[doc.id]]
        assert doc.metadata["relevance_score"] == doc.metadata["rerank_score"]  # Fusion()


def test_without_fusion_nothing_changes(tiny_reranker: Qwen3Reranker) -> None:
    docs = _documents()
    out = QwenRerank(reranker=tiny_reranker).compress_documents(docs, QUERY)
    expected = tiny_reranker.rerank(QUERY, [d.page_content for d in docs])
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [
        (docs[r.index].id, r.score) for r in expected
    ]
    assert all("rerank_score" not in d.metadata for d in out)
    assert QwenRerank(reranker=tiny_reranker).rerank(docs, QUERY) == [
        {"index": r.index, "relevance_score": r.score} for r in expected
    ]


def test_document_template_and_metadata_keys(tiny_reranker: Qwen3Reranker) -> None:
    """The template is formatted, not the content: braces in text and values stay."""
    docs = _documents()
    docs[1].metadata["source"] = "Blog {weird}"
    templated = QwenRerank(
        reranker=tiny_reranker, document_template="[{source} {date}] {page_content}"
    )
    texts = [f"[{d.metadata['source']} {d.metadata['date']}] {d.page_content}" for d in docs]
    assert "{and reflects green}" in texts[2] and "Blog {weird}" in texts[1]
    expected = tiny_reranker.rerank(QUERY, texts)
    assert templated.rerank(docs, QUERY) == [
        {"index": r.index, "relevance_score": r.score} for r in expected
    ]
    keyed = QwenRerank(reranker=tiny_reranker, metadata_keys=["source", "date"])
    lines = [
        f"source: {d.metadata['source']}\ndate: {d.metadata['date']}\n{d.page_content}"
        for d in docs
    ]
    expected = tiny_reranker.rerank(QUERY, lines)
    assert keyed.rerank(docs, QUERY) == [
        {"index": r.index, "relevance_score": r.score} for r in expected
    ]
    out = keyed.compress_documents(docs, QUERY)
    assert {d.page_content for d in out} == {d.page_content for d in docs}  # content unchanged


def _str_docs(docs: list[Document]) -> list[Any]:
    return [d.page_content for d in docs]


def _bad_value(docs: list[Document]) -> list[Document]:
    docs[3].metadata["new"] = "yes"
    return docs


def _no_signal_key(docs: list[Document]) -> list[Document]:
    del docs[2].metadata["new"]
    return docs


def _no_score_key(docs: list[Document]) -> list[Document]:
    del docs[4].metadata["score"]
    return docs


def _nan_score(docs: list[Document]) -> list[Document]:
    docs[1].metadata["score"] = math.nan
    return docs


def _no_template_field(docs: list[Document]) -> list[Document]:
    del docs[5].metadata["date"]
    return docs


@pytest.mark.parametrize(
    ("spoil", "error", "needle"),
    [
        (_bad_value, TypeError, r"signal 'new': documents\[3\]\.metadata\['new'\] must be a number, got str: 'yes'"),
        (_no_signal_key, ValueError, r"signal 'new': documents\[2\] has no metadata key 'new'"),
        (_no_score_key, ValueError, r"first_stage_key: documents\[4\] has no metadata key 'score'"),
        (_nan_score, ValueError, r"documents\[1\]\.metadata\['score'\] must be finite, got nan"),
        (_no_template_field, ValueError, r"document_template field 'date' is not in the metadata of documents\[5\]"),
        (_str_docs, ValueError, r"field 'source' is not in the metadata of documents\[0\] \(its fields: 'page_content'\)"),
    ],
)  # fmt: skip
def test_bad_document_inputs_name_the_value(
    tiny_reranker: Qwen3Reranker, spoil: Any, error: type[Exception], needle: str
) -> None:
    docs = spoil(_documents())
    before = copy.deepcopy(docs)
    compressor = QwenRerank(
        reranker=tiny_reranker,
        fusion="first_stage=1,signal.new=0.1",
        signals={"new": "new"},
        first_stage_key="score",
        document_template="[{source} {date}] {page_content}",
    )
    with pytest.raises(error, match=needle):
        compressor.rerank(docs, QUERY)
    if spoil is not _str_docs:
        with pytest.raises(error, match=needle):
            compressor.compress_documents(docs, QUERY)
        with pytest.raises(error, match=needle):
            asyncio.run(compressor.acompress_documents(docs, QUERY))
    assert docs == before


@pytest.mark.parametrize(
    ("settings_", "error", "needle"),
    [
        ({"fusion": 3}, TypeError, "fusion must be a Fusion, a fusion spec str or None, got int: 3"),
        ({"fusion": "mode=fast"}, ValueError, "mode must be one of auto, score, rank"),
        ({"first_stage_key": "score"}, ValueError, "fusion= .* is needed for first_stage_key"),
        ({"signals": {"new": "new"}}, ValueError, "fusion= .* is needed for signals"),
        ({"fusion": "signal.new=1"}, ValueError, r"fusion weighs signals \['new'\] but signals="),
        ({"fusion": "relevance=1", "signals": {"x": "x"}}, ValueError, r"signals \['x'\] have no weight"),
        ({"fusion": "signal.new=1", "signals": {"new": 1.5}}, TypeError, r"signals\['new'\] must be a metadata key \(str\) or a callable, got float: 1.5"),
        ({"fusion": "relevance=1", "first_stage_key": ""}, ValueError, "first_stage_key must be a non-empty"),
        ({"document_template": "[{source}]"}, ValueError, r"'\[\{source\}\]' must contain \{page_content\}"),
        ({"document_template": "{page_content} {"}, ValueError, "is not a format string"),
        ({"document_template": "{0} {page_content}"}, ValueError, r"fields must be names, e.g. \{source\}; got \{0\}"),
        ({"document_template": 5}, TypeError, "document_template must be a str or None, got int: 5"),
        ({"metadata_keys": "source"}, TypeError, "metadata_keys must be a list of str, got str: 'source'"),
        ({"metadata_keys": ["source", ""]}, ValueError, r"metadata_keys\[1\] must be a non-empty key"),
        ({"metadata_keys": ["a", "a"]}, ValueError, r"metadata_keys names \['a'\] more than once"),
        ({"metadata_keys": ["a"], "document_template": "{page_content}"}, ValueError, "document_template or metadata_keys, not both"),
    ],
)  # fmt: skip
def test_bad_fusion_settings_name_the_value(
    tiny_reranker: Qwen3Reranker, settings_: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        QwenRerank(reranker=tiny_reranker, **settings_)


def test_fusion_settings_serialize(tiny_reranker: Qwen3Reranker) -> None:
    compressor = QwenRerank(
        reranker=tiny_reranker,
        fusion=FLOW,
        signals={"binding": _is_binding},
        first_stage_key="score",
    )
    dumped = compressor.model_dump()
    assert dumped["fusion"] == FLOW.spec and compressor.fusion == FLOW
    assert dumped["signals"] == {"binding": "<callable _is_binding>"}
    assert '"first_stage_key":"score"' in compressor.model_dump_json()
