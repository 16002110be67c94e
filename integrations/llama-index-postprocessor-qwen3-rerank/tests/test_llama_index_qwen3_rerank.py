"""QwenRerank in real LlamaIndex flows, on the tiny offline checkpoint.

Expected values always come from ``Qwen3Reranker.rerank`` on the same texts;
no score is hard-coded.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import llama_index.postprocessor.qwen3_rerank as package
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.qwen3_rerank import QwenRerank

from qwen3_rerank_core import Qwen3Reranker, RerankResult
from qwen3_rerank_core import pytest_plugin as kit

REPO = Path(__file__).resolve().parents[3]
QUERY = kit.SAMPLE_QUERY
TEXTS = list(kit.SAMPLE_TEXTS)


class _Recorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def rerank_events(self) -> list[BaseEvent]:
        return [e for e in self.events if isinstance(e, ReRankStartEvent | ReRankEndEvent)]


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    root = get_dispatcher()
    handler = _Recorder()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


@pytest.fixture
def debug() -> Iterator[LlamaDebugHandler]:
    """A callback handler installed globally, as query engines take Settings.callback_manager."""
    handler = LlamaDebugHandler(print_trace_on_end=False)
    previous = Settings.callback_manager
    Settings.callback_manager = CallbackManager([handler])
    yield handler
    Settings.callback_manager = previous


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    docs = [
        Document(text=t, id_=f"doc-{i}", metadata={"source": f"s{i}", "tags": ["t", i]})
        for i, t in enumerate(TEXTS)
    ]
    return VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))


def _nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(text=t, id_=f"n{i}", metadata={"k": {"nested": [i]}}),
            score=1.0 - i / 100,
        )
        for i, t in enumerate(TEXTS[:6])
    ]


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


def _assert_matches(
    out: list[NodeWithScore], nodes: list[NodeWithScore], expected: list[RerankResult]
) -> None:
    assert [n.node.node_id for n in out] == [nodes[r.index].node.node_id for r in expected]
    assert [n.score for n in out] == pytest.approx([r.score for r in expected], abs=1e-9)


def _retrieved(index: VectorStoreIndex) -> list[NodeWithScore]:
    nodes = index.as_retriever(similarity_top_k=10).retrieve(QUERY)
    assert len(nodes) == 10
    return nodes


def _engine(index: VectorStoreIndex, rerank: QwenRerank) -> Any:
    return index.as_query_engine(similarity_top_k=10, node_postprocessors=[rerank], llm=MockLLM())


class TestAdapterContract(kit.AdapterContract):
    adapter = QwenRerank
    engine_setting: ClassVar[dict[str, Any]] = {"model": "other"}
    bad_min_score = 1.5

    def dump(self, adapter: Any) -> str:
        return str(adapter.to_json())


def test_public_api() -> None:
    assert package.__all__ == ["QwenRerank"]
    assert issubclass(QwenRerank, BaseNodePostprocessor)
    assert QwenRerank.class_name() == "QwenRerank"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_query_engine(
    mode: str,
    index: VectorStoreIndex,
    tiny_reranker: Qwen3Reranker,
    recorder: _Recorder,
    debug: LlamaDebugHandler,
) -> None:
    """query() and aquery() rank like the core and emit the rerank events and callbacks."""
    retrieved = _retrieved(index)
    texts = _texts(retrieved)
    engine = _engine(index, QwenRerank(reranker=tiny_reranker, top_n=3))
    if mode == "sync":
        expected = tiny_reranker.rerank(QUERY, texts, top_n=3)
        response = engine.query(QUERY)
    else:
        expected = asyncio.run(tiny_reranker.arerank(QUERY, texts, top_n=3))
        response = asyncio.run(engine.aquery(QUERY))

    assert len(response.source_nodes) == 3
    _assert_matches(response.source_nodes, retrieved, expected)
    start, end = recorder.rerank_events()
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert [n.node.node_id for n in start.nodes] == [n.node.node_id for n in retrieved]
    assert (start.top_n, start.model_name) == (3, tiny_reranker.config.model)
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in response.source_nodes]
    ((cb_start, cb_end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert cb_start.payload is not None and cb_end.payload is not None
    assert cb_start.payload[EventPayload.QUERY_STR] == QUERY
    assert cb_start.payload[EventPayload.MODEL_NAME] == tiny_reranker.config.model
    assert cb_start.payload[EventPayload.TOP_K] == 3
    assert len(cb_start.payload[EventPayload.NODES]) == 10
    assert cb_end.payload[EventPayload.NODES] == response.source_nodes


async def test_async_uses_core_arerank(
    tiny_reranker: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = kit.record_async_calls(tiny_reranker, monkeypatch)
    out = await QwenRerank(reranker=tiny_reranker).apostprocess_nodes(_nodes(), query_str=QUERY)
    assert calls == ["arerank"] and len(out) == 6


def test_inputs_are_not_mutated_and_outputs_are_copies(tiny_reranker: Qwen3Reranker) -> None:
    nodes = _nodes()
    before = copy.deepcopy(nodes)
    out = QwenRerank(reranker=tiny_reranker, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.model_dump() for n in nodes] == [n.model_dump() for n in before]
    by_id = {n.node.node_id: n for n in nodes}
    for result in out:
        source = by_id[result.node.node_id]
        assert result is not source and result.node is not source.node
        assert result.node.metadata["retrieval_score"] == source.score
        result.node.metadata["k"]["nested"].append("changed")
        assert (
            source.node.metadata["k"]["nested"]
            == before[nodes.index(source)].node.metadata["k"]["nested"]
        )
    _assert_matches(out, nodes, tiny_reranker.rerank(QUERY, _texts(nodes)))


def test_keep_retrieval_score_off_by_default(tiny_reranker: Qwen3Reranker) -> None:
    out = QwenRerank(reranker=tiny_reranker).postprocess_nodes(_nodes(), query_str=QUERY)
    assert len(out) == 6
    assert all("retrieval_score" not in n.node.metadata for n in out)


def test_top_n_and_min_score(tiny_reranker: Qwen3Reranker) -> None:
    nodes = _nodes()
    scores = sorted(tiny_reranker.score(QUERY, _texts(nodes)))
    threshold = scores[len(scores) // 2]
    out = QwenRerank(reranker=tiny_reranker, min_score=threshold).postprocess_nodes(
        nodes, query_str=QUERY
    )
    expected = tiny_reranker.rerank(QUERY, _texts(nodes), min_score=threshold)
    _assert_matches(out, nodes, expected)
    assert 0 < len(out) < len(nodes) and all(n.score >= threshold for n in out)  # type: ignore[operator]
    top2 = QwenRerank(reranker=tiny_reranker, top_n=2).postprocess_nodes(nodes, query_str=QUERY)
    _assert_matches(top2, nodes, tiny_reranker.rerank(QUERY, _texts(nodes), top_n=2))


def test_instruction_field_is_passed_per_call(tiny_reranker: Qwen3Reranker) -> None:
    nodes = _nodes()
    instruction = "Given a question about biology, judge whether the passage answers it"
    out = QwenRerank(reranker=tiny_reranker, instruction=instruction).postprocess_nodes(
        nodes, query_bundle=QueryBundle(QUERY)
    )
    _assert_matches(out, nodes, tiny_reranker.rerank(QUERY, _texts(nodes), instruction=instruction))


def test_own_reranker_from_settings(tiny_model_dir: Path, tiny_reranker: Qwen3Reranker) -> None:
    rerank = kit.adapter_with_own_reranker(QwenRerank, tiny_model_dir, max_batch_size=2)
    nodes = _nodes()
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    rerank.reranker.close()
    expected = tiny_reranker.rerank(QUERY, _texts(nodes))
    assert [n.node.node_id for n in out] == [nodes[r.index].node.node_id for r in expected]
    assert [n.score for n in out] == pytest.approx([r.score for r in expected], abs=1e-5)
    with pytest.raises(ValueError, match="reranker_kwargs"):
        QwenRerank(model=str(tiny_model_dir), reranker_kwargs={"device": "cpu"})


async def test_empty_input_loads_nothing(recorder: _Recorder) -> None:
    rerank = QwenRerank(model="/nonexistent/qwen3-reranker", top_n=3)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert await rerank.apostprocess_nodes([], query_str=QUERY) == []
    assert recorder.rerank_events() == []


@pytest.mark.parametrize("query", ["", "   "])
async def test_empty_or_missing_query(
    tiny_reranker: Qwen3Reranker, recorder: _Recorder, query: str
) -> None:
    rerank = QwenRerank(reranker=tiny_reranker)
    for nodes in (_nodes(), []):
        with pytest.raises(ValueError, match="query"):
            rerank.postprocess_nodes(nodes, query_str=query)
        with pytest.raises(ValueError, match="query"):
            await rerank.apostprocess_nodes(nodes, query_str=query)
        with pytest.raises(ValueError, match="query"):
            rerank.postprocess_nodes(nodes)
    assert recorder.rerank_events() == []


def _assert_ranked(nodes: list[NodeWithScore], count: int) -> None:
    scores = [n.score for n in nodes]
    assert len(nodes) == count and scores == sorted(scores, reverse=True)  # type: ignore[type-var]


def test_readme_example_runs(tiny_model_dir: Path) -> None:
    namespace = kit.run_markdown_examples(
        Path(package.__file__).parents[3] / "README.md", tiny_model_dir
    )
    _assert_ranked(namespace["response"].source_nodes, 2)


def test_docs_example_runs(tiny_model_dir: Path) -> None:
    namespace = kit.run_markdown_examples(REPO / "docs" / "llama_index.md", tiny_model_dir)
    _assert_ranked(namespace["response"].source_nodes, 3)
    _assert_ranked(namespace["best"], 3)
    assert all("retrieval_score" in n.node.metadata for n in namespace["best"])
