"""QwenRerank in real LangChain flows, on the tiny offline checkpoint.

Expected values always come from ``Qwen3Reranker.rerank`` on the same texts;
no score is hard-coded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import langchain_qwen3_rerank as package
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_qwen3_rerank import QwenRerank

from qwen3_rerank_core import Qwen3Reranker, RerankResult
from qwen3_rerank_core import pytest_plugin as kit

REPO = Path(__file__).resolve().parents[3]
QUERY = kit.SAMPLE_QUERY
TEXTS = list(kit.SAMPLE_TEXTS)


def _documents() -> list[Document]:
    return [
        Document(page_content=t, id=f"doc-{i}", metadata={"source": f"s{i}", "tags": ["t", i]})
        for i, t in enumerate(TEXTS)
    ]


@pytest.fixture(scope="module")
def base_retriever() -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(_documents())
    return store.as_retriever(search_kwargs={"k": 10})


def _assert_matches(
    out: list[Document], docs: list[Document], expected: list[RerankResult]
) -> None:
    assert [d.id for d in out] == [docs[r.index].id for r in expected]
    assert [d.page_content for d in out] == [r.document for r in expected]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [r.score for r in expected], abs=1e-9
    )


class TestAdapterContract(kit.AdapterContract):
    adapter = QwenRerank
    engine_setting: ClassVar[dict[str, Any]] = {"device": "cpu"}
    bad_min_score = -0.1

    def dump(self, adapter: Any) -> str:
        return f"{adapter.model_dump_json()} {adapter.model_dump()!r}"


def test_public_api() -> None:
    assert package.__all__ == ["QwenRerank"]
    assert issubclass(QwenRerank, BaseDocumentCompressor)


def test_contextual_compression_invoke(base_retriever: Any, tiny_reranker: Qwen3Reranker) -> None:
    retrieved = base_retriever.invoke(QUERY)
    assert len(retrieved) == 10
    expected = tiny_reranker.rerank(QUERY, [d.page_content for d in retrieved], top_n=3)
    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(reranker=tiny_reranker, top_n=3), base_retriever=base_retriever
    )

    out = retriever.invoke(QUERY)

    assert len(out) == 3
    _assert_matches(out, retrieved, expected)
    for doc in out:
        source = next(d for d in retrieved if d.id == doc.id)
        assert {k: v for k, v in doc.metadata.items() if k != "relevance_score"} == source.metadata


async def test_contextual_compression_ainvoke(
    base_retriever: Any, tiny_reranker: Qwen3Reranker
) -> None:
    retrieved = await base_retriever.ainvoke(QUERY)
    expected = await tiny_reranker.arerank(QUERY, [d.page_content for d in retrieved], top_n=3)
    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(reranker=tiny_reranker, top_n=3), base_retriever=base_retriever
    )

    out = await retriever.ainvoke(QUERY)

    _assert_matches(out, retrieved, expected)


async def test_async_uses_core_arerank(
    tiny_reranker: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = kit.record_async_calls(tiny_reranker, monkeypatch)
    out = await QwenRerank(reranker=tiny_reranker).acompress_documents(_documents(), QUERY)
    assert calls == ["arerank"] and len(out) == len(TEXTS)


def test_inputs_are_not_mutated_and_outputs_are_copies(tiny_reranker: Qwen3Reranker) -> None:
    docs = _documents()
    before = copy.deepcopy(docs)
    out = QwenRerank(reranker=tiny_reranker).compress_documents(docs, QUERY)
    assert docs == before
    assert all("relevance_score" not in d.metadata for d in docs)
    _assert_matches(list(out), docs, tiny_reranker.rerank(QUERY, TEXTS))
    by_id = {d.id: d for d in docs}
    for doc in out:
        source = by_id[doc.id]
        assert doc is not source and doc.metadata is not source.metadata
        doc.metadata["tags"].append("changed")
        assert source.metadata["tags"] == before[docs.index(source)].metadata["tags"]


def test_top_n_none_returns_all_sorted(tiny_reranker: Qwen3Reranker) -> None:
    out = QwenRerank(reranker=tiny_reranker).compress_documents(_documents(), QUERY)
    scores = [d.metadata["relevance_score"] for d in out]
    assert len(out) == len(TEXTS) and scores == sorted(scores, reverse=True)


def test_top_n_and_min_score(tiny_reranker: Qwen3Reranker) -> None:
    docs = _documents()
    threshold = sorted(tiny_reranker.score(QUERY, TEXTS))[len(TEXTS) // 2]
    out = QwenRerank(reranker=tiny_reranker, min_score=threshold).compress_documents(docs, QUERY)
    _assert_matches(list(out), docs, tiny_reranker.rerank(QUERY, TEXTS, min_score=threshold))
    assert 0 < len(out) < len(docs)
    assert all(d.metadata["relevance_score"] >= threshold for d in out)
    top2 = QwenRerank(reranker=tiny_reranker, top_n=2, min_score=0.0).compress_documents(
        docs, QUERY
    )
    _assert_matches(list(top2), docs, tiny_reranker.rerank(QUERY, TEXTS, top_n=2))


def test_rerank_returns_cohere_style_dicts(tiny_reranker: Qwen3Reranker) -> None:
    rerank = QwenRerank(reranker=tiny_reranker, top_n=2)
    expected = [
        {"index": r.index, "relevance_score": r.score} for r in tiny_reranker.rerank(QUERY, TEXTS)
    ]
    assert rerank.rerank(TEXTS, QUERY) == expected[:2]
    assert rerank.rerank(_documents(), QUERY, top_n=None) == expected
    assert rerank.rerank(TEXTS, QUERY, top_n=5) == expected[:5]
    threshold = expected[3]["relevance_score"]
    assert rerank.rerank(TEXTS, QUERY, top_n=None, min_score=threshold) == expected[:4]


async def test_arerank_matches_rerank(tiny_reranker: Qwen3Reranker) -> None:
    rerank = QwenRerank(reranker=tiny_reranker)
    assert await rerank.arerank(TEXTS, QUERY, top_n=4) == rerank.rerank(TEXTS, QUERY, top_n=4)


def test_instruction(tiny_reranker: Qwen3Reranker) -> None:
    instruction = "Given a question about biology, judge whether the passage answers it"
    expected = tiny_reranker.rerank(QUERY, TEXTS, instruction=instruction)
    out = QwenRerank(reranker=tiny_reranker, instruction=instruction).compress_documents(
        _documents(), QUERY
    )
    _assert_matches(list(out), _documents(), expected)
    per_call = QwenRerank(reranker=tiny_reranker).rerank(TEXTS, QUERY, instruction=instruction)
    assert per_call == [{"index": r.index, "relevance_score": r.score} for r in expected]


def test_own_reranker_from_settings(tiny_model_dir: Path, tiny_reranker: Qwen3Reranker) -> None:
    rerank = kit.adapter_with_own_reranker(QwenRerank, tiny_model_dir, max_batch_tokens=256)
    out = rerank.rerank(TEXTS, QUERY)
    rerank.reranker.close()
    expected = tiny_reranker.rerank(QUERY, TEXTS)
    assert [d["index"] for d in out] == [r.index for r in expected]
    assert [d["relevance_score"] for d in out] == pytest.approx(
        [r.score for r in expected], abs=1e-5
    )
    with pytest.raises(ValueError, match="reranker_kwargs"):
        QwenRerank(model=str(tiny_model_dir), reranker_kwargs={"instruction": "x"})


async def test_empty_input_loads_nothing() -> None:
    rerank = QwenRerank(model="/nonexistent/qwen3-reranker", top_n=3)
    assert rerank.compress_documents([], QUERY) == []
    assert await rerank.acompress_documents([], QUERY) == []
    assert rerank.rerank([], QUERY) == []
    assert await rerank.arerank([], QUERY) == []


@pytest.mark.parametrize("query", ["", "   "])
async def test_empty_query(tiny_reranker: Qwen3Reranker, query: str) -> None:
    rerank = QwenRerank(reranker=tiny_reranker)
    for docs in (_documents(), []):
        with pytest.raises(ValueError, match="query"):
            rerank.compress_documents(docs, query)
        with pytest.raises(ValueError, match="query"):
            await rerank.acompress_documents(docs, query)
        with pytest.raises(ValueError, match="query"):
            rerank.rerank(docs, query)


def _assert_ranked(docs: list[Document], count: int) -> None:
    scores = [d.metadata["relevance_score"] for d in docs]
    assert len(docs) == count and scores == sorted(scores, reverse=True)


def test_readme_example_runs(tiny_model_dir: Path) -> None:
    namespace = kit.run_markdown_examples(
        Path(package.__file__).parents[1] / "README.md", tiny_model_dir
    )
    _assert_ranked(namespace["retriever"].invoke("How do plants make their food?"), 2)


def test_docs_example_runs(tiny_model_dir: Path) -> None:
    namespace = kit.run_markdown_examples(REPO / "docs" / "langchain.md", tiny_model_dir)
    _assert_ranked(namespace["docs"], 3)
    _assert_ranked(list(namespace["best"]), 3)
    assert [r["index"] for r in namespace["ranking"]] != [] and len(namespace["ranking"]) == 5
