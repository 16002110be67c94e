"""Hybrid ranking in QwenRerank (LlamaIndex): ``fusion``, ``signals``, ``metadata_mode``.

The fused order and scores are checked against the formula of docs/hybrid.md worked
out here, independently of the library, with p(yes) from ``Qwen3Reranker.score`` on
the same texts; no score is hard-coded.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.qwen3_rerank import QwenRerank

from qwen3_rerank_core import Fusion, Qwen3Reranker
from qwen3_rerank_core.pytest_plugin import expected_fused, hypothesis_settings

QUERY = "How do plants make their food?"
TEXTS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar inside leaves.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Chlorophyll absorbs red and blue light and reflects green light {not a field}.",
    "Roots take up water and minerals that the plant moves to its leaves.",
    "The stock market closed higher on Tuesday after a volatile session.",
    "Stomata on the underside of leaves let carbon dioxide in and oxygen out.",
    "Glucose made in the leaves is stored as starch in roots and seeds.",
    "",
]
WEIGHTS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, -0.5, 20.0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _node(i: int, text: str, score: float | None, pop: float, new: bool) -> NodeWithScore:
    meta = {"pop": pop, "new": new, "tags": ["t", i]}
    return NodeWithScore(node=TextNode(text=text, id_=f"n{i}", metadata=meta), score=score)


def _nodes(scores: Sequence[float | None] | None = None) -> list[NodeWithScore]:
    scores = scores if scores is not None else [1.0 - i / 10 for i in range(len(TEXTS))]
    return [
        _node(i, t, s, pop=float(i % 3), new=i % 2 == 0)
        for i, (t, s) in enumerate(zip(TEXTS, scores, strict=True))
    ]


def _p_yes(
    tiny_reranker: Qwen3Reranker, nodes: list[NodeWithScore], mode: MetadataMode
) -> list[float]:
    return tiny_reranker.score(QUERY, [n.node.get_content(metadata_mode=mode) for n in nodes])


def _is_new(node: NodeWithScore) -> bool:
    return bool(node.node.metadata["new"])


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, len(TEXTS)))
    texts = draw(st.lists(st.sampled_from(TEXTS), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["all", "none", "mixed"]))
    score = st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1))
    scores: list[float | None] = draw(st.lists(score, min_size=n, max_size=n))
    if kind == "none":
        scores = [None] * n
    elif kind == "mixed":
        scores[draw(st.integers(0, n - 1))] = None
    nodes = [
        _node(i, t, s, draw(st.sampled_from([0.0, 0.5, 1.0])), draw(st.booleans()))
        for i, (t, s) in enumerate(zip(texts, scores, strict=True))
    ]
    fusion = Fusion(
        relevance=draw(WEIGHTS),
        first_stage=draw(WEIGHTS),
        signals={"pop": draw(WEIGHTS), "new": draw(WEIGHTS)},
        mode=draw(st.sampled_from(["auto", "rank", "score"])),
        rrf_k=draw(st.sampled_from([0.0, 1.5, 60.0])),
    )
    top_n = draw(st.one_of(st.none(), st.integers(1, n)))
    min_score = draw(st.one_of(st.none(), st.floats(0, 0.3)))
    return {"nodes": nodes, "fusion": fusion, "top_n": top_n, "min_score": min_score}


@hypothesis_settings(25)
@given(case=cases())
def test_fused_order_is_the_formula(tiny_reranker: Qwen3Reranker, case: dict[str, Any]) -> None:
    nodes, fusion = case["nodes"], case["fusion"]
    before = [n.model_dump() for n in nodes]
    rerank = QwenRerank(
        reranker=tiny_reranker,
        fusion=fusion,
        signals={"pop": "pop", "new": _is_new},
        top_n=case["top_n"],
        min_score=case["min_score"],
        keep_retrieval_score=True,
    )
    scores = [n.score for n in nodes]
    if None in scores and fusion.mode == "score":
        with pytest.raises(ValueError, match=r"nodes\[\d+\] has none"):
            rerank.postprocess_nodes(nodes, query_str=QUERY)
        return
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)

    p_yes = _p_yes(tiny_reranker, nodes, MetadataMode.EMBED)
    first_stage = None if None in scores else scores
    signals = {"pop": [n.node.metadata["pop"] for n in nodes]}
    signals["new"] = [float(n.node.metadata["new"]) for n in nodes]
    fused = expected_fused(fusion, p_yes, first_stage, signals)
    order = sorted(range(len(nodes)), key=lambda i: (-fused[i], i))
    if case["min_score"] is not None:
        order = [i for i in order if p_yes[i] >= case["min_score"]]
    order = order[: case["top_n"]]

    assert [n.node.node_id for n in out] == [nodes[i].node.node_id for i in order]
    assert [n.score for n in out] == pytest.approx([fused[i] for i in order], abs=1e-12)
    assert [n.node.metadata["relevance_score"] for n in out] == [p_yes[i] for i in order]
    assert [n.node.metadata["retrieval_score"] for n in out] == [scores[i] for i in order]
    assert [n.model_dump() for n in nodes] == before
    again = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert [(n.node.node_id, n.score) for n in again] == [(n.node.node_id, n.score) for n in out]


class _HashEmbedding(BaseEmbedding):
    """A deterministic embedding whose similarities differ from text to text."""

    def _vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        return [b / 255 + 0.01 for b in digest[:16]]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    docs = [
        Document(text=t, id_=f"doc-{i}", metadata={"pop": i % 3, "new": i % 2 == 0})
        for i, t in enumerate(TEXTS)
        if t
    ]
    return VectorStoreIndex.from_documents(docs, embed_model=_HashEmbedding())


FLOW = Fusion(relevance=0.6, first_stage=0.3, signals={"pop": 0.05, "new": 0.1})


def _expected_flow(
    tiny_reranker: Qwen3Reranker, index: VectorStoreIndex, top_n: int
) -> list[tuple[str, float]]:
    retrieved = index.as_retriever(similarity_top_k=5).retrieve(QUERY)
    scores = [n.score for n in retrieved]
    assert len(set(scores)) > 1  # the min-max term is not flat
    p_yes = _p_yes(tiny_reranker, retrieved, MetadataMode.EMBED)
    signals = {"pop": [float(n.node.metadata["pop"]) for n in retrieved]}
    signals["new"] = [float(n.node.metadata["new"]) for n in retrieved]
    fused = expected_fused(FLOW, p_yes, scores, signals)
    order = sorted(range(len(retrieved)), key=lambda i: (-fused[i], i))[:top_n]
    return [(retrieved[i].node.node_id, fused[i]) for i in order]


def _flow_engine(index: VectorStoreIndex, tiny_reranker: Qwen3Reranker) -> Any:
    rerank = QwenRerank(
        reranker=tiny_reranker, fusion=FLOW.spec, signals={"pop": "pop", "new": _is_new}, top_n=3
    )
    return index.as_query_engine(similarity_top_k=5, node_postprocessors=[rerank], llm=MockLLM())


def test_query_engine_with_fusion(index: VectorStoreIndex, tiny_reranker: Qwen3Reranker) -> None:
    response = _flow_engine(index, tiny_reranker).query(QUERY)
    got = [(n.node.node_id, n.score) for n in response.source_nodes]
    expected = _expected_flow(tiny_reranker, index, top_n=3)
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-12)


async def test_query_engine_with_fusion_async(
    index: VectorStoreIndex, tiny_reranker: Qwen3Reranker
) -> None:
    response = await _flow_engine(index, tiny_reranker).aquery(QUERY)
    got = [(n.node.node_id, n.score) for n in response.source_nodes]
    expected = _expected_flow(tiny_reranker, index, top_n=3)
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-12)


def test_relevance_score_equals_score_exactly(tiny_reranker: Qwen3Reranker) -> None:
    nodes = _nodes()
    out = QwenRerank(reranker=tiny_reranker, fusion=Fusion()).postprocess_nodes(
        nodes, query_str=QUERY
    )
    p_yes = _p_yes(tiny_reranker, nodes, MetadataMode.EMBED)
    by_id = {n.node.node_id: i for i, n in enumerate(nodes)}
    for node in out:
        assert node.node.metadata["relevance_score"] == p_yes[by_id[node.node.node_id]]
        assert node.score == node.node.metadata["relevance_score"]  # Fusion(): fused == p(yes)
    assert all("relevance_score" not in n.node.metadata for n in nodes)


def test_without_fusion_nothing_changes(tiny_reranker: Qwen3Reranker) -> None:
    nodes = _nodes()
    out = QwenRerank(reranker=tiny_reranker).postprocess_nodes(nodes, query_str=QUERY)
    expected = tiny_reranker.rerank(
        QUERY, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    )
    assert [(n.node.node_id, n.score) for n in out] == [
        (nodes[r.index].node.node_id, r.score) for r in expected
    ]
    assert all("relevance_score" not in n.node.metadata for n in out)


@pytest.mark.parametrize("mode", [MetadataMode.EMBED, MetadataMode.NONE, MetadataMode.ALL])
def test_metadata_mode_chooses_the_scored_text(
    tiny_reranker: Qwen3Reranker, mode: MetadataMode
) -> None:
    nodes = _nodes()
    out = QwenRerank(reranker=tiny_reranker, metadata_mode=mode).postprocess_nodes(
        nodes, query_str=QUERY
    )
    p_yes = _p_yes(tiny_reranker, nodes, mode)
    by_id = {n.node.node_id: i for i, n in enumerate(nodes)}
    assert [n.score for n in out] == [p_yes[by_id[n.node.node_id]] for n in out]
    assert QwenRerank(reranker=tiny_reranker, metadata_mode=mode.value).metadata_mode == mode


def test_missing_scores_rank_by_input_order(
    tiny_reranker: Qwen3Reranker, caplog: pytest.LogCaptureFixture
) -> None:
    """Some nodes without a score: the input order is the first-stage rank of all."""
    fusion = Fusion(relevance=1.0, first_stage=20.0)
    mixed = _nodes([0.1, None, *[0.5] * (len(TEXTS) - 2)])
    none = _nodes([None] * len(TEXTS))
    with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
        got = QwenRerank(reranker=tiny_reranker, fusion=fusion).postprocess_nodes(
            mixed, query_str=QUERY
        )
    assert "1 of 8 nodes have no first-stage score" in caplog.text
    p_yes = _p_yes(tiny_reranker, mixed, MetadataMode.EMBED)
    fused = expected_fused(fusion, p_yes, None, {})
    assert [n.score for n in got] == pytest.approx(sorted(fused, reverse=True), abs=1e-12)
    plain = QwenRerank(reranker=tiny_reranker, fusion=fusion).postprocess_nodes(
        none, query_str=QUERY
    )
    assert [n.node.node_id for n in plain] == [n.node.node_id for n in got]


class _Starts(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, ReRankStartEvent):
            self.events.append(event)


@pytest.fixture
def starts() -> Iterator[_Starts]:
    root = get_dispatcher()
    handler = _Starts()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def _bad_value(nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    nodes[3].node.metadata["pop"] = "many"
    return nodes


def _no_key(nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    del nodes[2].node.metadata["pop"]
    return nodes


def _nan_score(nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    nodes[1].score = math.nan
    return nodes


def _none_score(nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    nodes[4].score = None
    return nodes


SIGNALS = {"pop": "pop", "new": _is_new}
FUSION = "relevance=1,first_stage=0.5,signal.pop=0.1,signal.new=0.1,mode=score"


@pytest.mark.parametrize(
    ("spoil", "error", "needle"),
    [
        (_bad_value, TypeError, r"signal 'pop': nodes\[3\]\.metadata\['pop'\] must be a number, got str: 'many'"),
        (_no_key, ValueError, r"signal 'pop': nodes\[2\] has no metadata key 'pop'"),
        (_nan_score, ValueError, r"first-stage score of nodes\[1\] must be finite, got nan"),
        (_none_score, ValueError, r'mode "score" needs a first-stage score .* nodes\[4\] has none'),
    ],
)  # fmt: skip
def test_bad_node_inputs_name_the_value_before_any_event(
    tiny_reranker: Qwen3Reranker, starts: _Starts, spoil: Any, error: type[Exception], needle: str
) -> None:
    nodes = spoil(_nodes())
    before = copy.deepcopy([n.model_dump() for n in nodes])
    rerank = QwenRerank(reranker=tiny_reranker, fusion=FUSION, signals=SIGNALS)
    with pytest.raises(error, match=needle):
        rerank.postprocess_nodes(nodes, query_str=QUERY)
    with pytest.raises(error, match=needle):
        asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert starts.events == []
    assert [n.model_dump() for n in nodes] == before


def _raises(node: NodeWithScore) -> float:
    raise LookupError(f"no popularity for {node.node.node_id}")


def test_a_failing_signal_callable_propagates(
    tiny_reranker: Qwen3Reranker, starts: _Starts
) -> None:
    rerank = QwenRerank(reranker=tiny_reranker, fusion="signal.pop=1", signals={"pop": _raises})
    with pytest.raises(LookupError, match="no popularity for n0"):
        rerank.postprocess_nodes(_nodes(), query_str=QUERY)
    assert starts.events == []


@pytest.mark.parametrize(
    ("settings_", "error", "needle"),
    [
        ({"fusion": 3}, TypeError, "fusion must be a Fusion, a fusion spec str or None, got int: 3"),
        ({"fusion": "relevance=high"}, ValueError, "relevance='high' is not a number"),
        ({"fusion": "weight=1"}, ValueError, "unknown key 'weight'"),
        ({"signals": {"pop": "pop"}}, ValueError, "fusion= .* is needed for signals"),
        ({"fusion": "signal.pop=1"}, ValueError, r"fusion weighs signals \['pop'\] but signals="),
        ({"fusion": "relevance=1", "signals": {"pop": "pop"}}, ValueError, r"signals \['pop'\] have no weight"),
        ({"fusion": "signal.pop=1", "signals": {"pop": 3}}, TypeError, r"signals\['pop'\] must be a metadata key \(str\) or a callable, got int: 3"),
        ({"fusion": "signal.pop=1", "signals": {"pop": ""}}, ValueError, "non-empty metadata key"),
        ({"fusion": "signal.pop=1", "signals": ["pop"]}, TypeError, "signals must be a mapping"),
        ({"metadata_mode": "everything"}, ValueError, "everything"),
    ],
)  # fmt: skip
def test_bad_fusion_settings_name_the_value(
    tiny_reranker: Qwen3Reranker, settings_: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        QwenRerank(reranker=tiny_reranker, **settings_)


def test_fusion_settings_serialize(tiny_reranker: Qwen3Reranker) -> None:
    rerank = QwenRerank(reranker=tiny_reranker, fusion=FLOW, signals={"pop": "pop", "new": _is_new})
    assert rerank.fusion == FLOW
    dumped = rerank.to_dict()
    assert dumped["fusion"] == FLOW.spec
    assert dumped["signals"] == {"pop": "pop", "new": "<callable _is_new>"}
    assert '"fusion": "relevance=0.6' in rerank.to_json()


# ------------------------------------------------- score keys stay out of node text
ADDED_KEYS = ("retrieval_score", "relevance_score")  # in the order they are added


@pytest.mark.parametrize("aquery", [False, True], ids=["query", "aquery"])
async def test_score_keys_never_reach_the_llm_prompt(
    index: VectorStoreIndex, tiny_reranker: Qwen3Reranker, aquery: bool
) -> None:
    """Through a real query engine: the prompt holds the reranked nodes' texts and their
    own metadata, but none of the keys this package adds to the copies."""
    rerank = QwenRerank(
        reranker=tiny_reranker,
        fusion=FLOW.spec,
        signals={"pop": "pop", "new": _is_new},
        keep_retrieval_score=True,
    )
    # MockLLM answers with its prompt
    engine = index.as_query_engine(similarity_top_k=3, node_postprocessors=[rerank], llm=MockLLM())
    response = await engine.aquery(QUERY) if aquery else engine.query(QUERY)
    prompt = str(response)
    assert len(response.source_nodes) == 3
    for node in response.source_nodes:
        assert node.node.get_content() in prompt
        assert set(ADDED_KEYS) <= set(node.node.metadata)  # kept on the node, for code
    assert "pop: " in prompt and "new: " in prompt  # the documents' own metadata is shown
    for key in ADDED_KEYS:
        assert key not in prompt


def test_added_keys_are_excluded_on_the_copies_only(tiny_reranker: Qwen3Reranker) -> None:
    nodes = _nodes()
    nodes[0].node.excluded_llm_metadata_keys = ["tags"]
    before = copy.deepcopy([n.model_dump() for n in nodes])
    rerank = QwenRerank(reranker=tiny_reranker, fusion=Fusion(), keep_retrieval_score=True)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.model_dump() for n in nodes] == before
    for node in out:
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            text = node.node.get_content(metadata_mode=mode)
            assert "pop: " in text and all(key not in text for key in ADDED_KEYS)
        assert "relevance_score" in node.node.get_content(metadata_mode=MetadataMode.ALL)
    first = next(n for n in out if n.node.node_id == "n0")
    assert first.node.excluded_llm_metadata_keys == ["tags", *ADDED_KEYS]
    assert first.node.excluded_embed_metadata_keys == list(ADDED_KEYS)
    # without fusion or keep_retrieval_score nothing is added, so nothing is excluded
    plain = QwenRerank(reranker=tiny_reranker).postprocess_nodes(nodes, query_str=QUERY)
    assert all(n.node.excluded_embed_metadata_keys == [] for n in plain)
