"""QwenRerank in real LlamaIndex flows, on the tiny offline checkpoint.

Expected values always come from ``Qwen3Reranker.rerank`` on the same texts;
no score is hard-coded.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from qwen3_rerank_core.pytest_plugin import SAMPLE_QUERY, SAMPLE_TEXTS

REPO = Path(__file__).resolve().parents[3]
QUERY = SAMPLE_QUERY
TEXTS = list(SAMPLE_TEXTS)


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


def test_public_api() -> None:
    assert package.__all__ == ["QwenRerank"]
    assert issubclass(QwenRerank, BaseNodePostprocessor)
    assert QwenRerank.class_name() == "QwenRerank"


def test_query_engine_sync(
    index: VectorStoreIndex, tiny_reranker: Qwen3Reranker, recorder: _Recorder, debug: LlamaDebugHandler
) -> None:
    retrieved = _retrieved(index)
    expected = tiny_reranker.rerank(QUERY, _texts(retrieved), top_n=3)
    engine = _engine(index, QwenRerank(reranker=tiny_reranker, top_n=3))

    response = engine.query(QUERY)

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


async def test_query_engine_async(
    index: VectorStoreIndex, tiny_reranker: Qwen3Reranker, recorder: _Recorder, debug: LlamaDebugHandler
) -> None:
    retrieved = _retrieved(index)
    expected = await tiny_reranker.arerank(QUERY, _texts(retrieved), top_n=3)
    engine = _engine(index, QwenRerank(reranker=tiny_reranker, top_n=3))

    response = await engine.aquery(QUERY)

    _assert_matches(response.source_nodes, retrieved, expected)
    assert [type(e) for e in recorder.rerank_events()] == [ReRankStartEvent, ReRankEndEvent]
    ((_, cb_end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert cb_end.payload is not None
    assert cb_end.payload[EventPayload.NODES] == response.source_nodes


async def test_async_uses_core_arerank(
    tiny_reranker: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = tiny_reranker.arerank

    async def spy(*args: Any, **kwargs: Any) -> list[RerankResult]:
        calls.append("arerank")
        return await original(*args, **kwargs)

    monkeypatch.setattr(tiny_reranker, "arerank", spy)
    monkeypatch.setattr(tiny_reranker, "rerank", lambda *a, **k: pytest.fail("sync path used"))
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
    out = QwenRerank(reranker=tiny_reranker, min_score=threshold).postprocess_nodes(nodes, query_str=QUERY)
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


def test_shared_reranker(tiny_reranker: Qwen3Reranker) -> None:
    first, second = QwenRerank(reranker=tiny_reranker, top_n=1), QwenRerank(reranker=tiny_reranker, top_n=4)
    assert first.reranker is tiny_reranker and second.reranker is tiny_reranker
    assert (first.model, first.backend, first.max_length) == (
        tiny_reranker.config.model,
        tiny_reranker.config.backend,
        tiny_reranker.config.max_length,
    )
    with pytest.raises(ValueError, match="not both"):
        QwenRerank(reranker=tiny_reranker, model="other")


def test_own_reranker_from_settings(tiny_model_dir: Path, tiny_reranker: Qwen3Reranker) -> None:
    rerank = QwenRerank(
        model=str(tiny_model_dir),
        device="cpu",
        dtype="float32",
        max_batch_size=2,
        reranker_kwargs={"local_files_only": True},
    )
    config = rerank.reranker.config
    assert (config.model, config.max_batch_size, config.local_files_only) == (
        str(tiny_model_dir),
        2,
        True,
    )
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
async def test_empty_or_missing_query(tiny_reranker: Qwen3Reranker, recorder: _Recorder, query: str) -> None:
    rerank = QwenRerank(reranker=tiny_reranker)
    for nodes in (_nodes(), []):
        with pytest.raises(ValueError, match="query"):
            rerank.postprocess_nodes(nodes, query_str=query)
        with pytest.raises(ValueError, match="query"):
            await rerank.apostprocess_nodes(nodes, query_str=query)
        with pytest.raises(ValueError, match="query"):
            rerank.postprocess_nodes(nodes)
    assert recorder.rerank_events() == []


def test_api_key_is_never_shown() -> None:
    secret = "sk-do-not-print-1234"
    rerank = QwenRerank(
        model="served-name", backend="remote", base_url=["http://127.0.0.1:9"], api_key=secret
    )
    assert rerank.api_key is not None and rerank.api_key.get_secret_value() == secret
    assert rerank.reranker.config.api_key == secret
    assert rerank.reranker.config.base_url == ("http://127.0.0.1:9",)
    shared = QwenRerank(
        reranker=Qwen3Reranker(
            model="served-name",
            backend="remote",
            base_url=("http://127.0.0.1:9", "http://127.0.0.1:10"),
            api_key=secret,
        )
    )
    assert shared.base_url == ["http://127.0.0.1:9", "http://127.0.0.1:10"]
    assert shared.api_key is not None and shared.api_key.get_secret_value() == secret
    texts = (repr(rerank), str(rerank), rerank.to_json(), repr(rerank.reranker.config))
    for text in (*texts, repr(shared), shared.to_json()):
        assert secret not in text


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        QwenRerank(model="x", top_n=0)
    with pytest.raises(ValueError):
        QwenRerank(model="x", min_score=1.5)
    with pytest.raises(ValueError):
        QwenRerank(model="x", unknown_option=1)
    with pytest.raises(ValueError):
        QwenRerank(model="x", backend="remote")  # the core needs base_url


def _run_markdown(path: Path, model: Path) -> dict[str, Any]:
    """Execute every Python block of a Markdown file, on the tiny model instead of the hub's."""
    if not path.exists():
        pytest.skip(f"{path} is not part of this checkout")
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, f"no Python example in {path}"
    code = "\n".join(blocks).replace('"Qwen/Qwen3-Reranker-0.6B"', repr(str(model)))
    namespace: dict[str, Any] = {"__name__": "__example__"}
    exec(compile(code, str(path), "exec"), namespace)
    return namespace


def _assert_ranked(nodes: list[NodeWithScore], count: int) -> None:
    scores = [n.score for n in nodes]
    assert len(nodes) == count and scores == sorted(scores, reverse=True)  # type: ignore[type-var]


def test_readme_example_runs(tiny_model_dir: Path) -> None:
    namespace = _run_markdown(Path(package.__file__).parents[3] / "README.md", tiny_model_dir)
    _assert_ranked(namespace["response"].source_nodes, 2)


def test_docs_example_runs(tiny_model_dir: Path) -> None:
    namespace = _run_markdown(REPO / "docs" / "llama_index.md", tiny_model_dir)
    _assert_ranked(namespace["response"].source_nodes, 3)
    _assert_ranked(namespace["best"], 3)
    assert all("retrieval_score" in n.node.metadata for n in namespace["best"])
