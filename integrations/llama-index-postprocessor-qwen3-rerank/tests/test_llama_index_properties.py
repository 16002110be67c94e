"""Property tests of QwenRerank (LlamaIndex) on random nodes (hypothesis).

For random node lists (duplicate texts, empty strings, NUL bytes, RTL text, emoji
sequences, combining marks, long texts, nested metadata, missing retrieval scores):
the output node ids are the ranking that ``Qwen3Reranker.score`` gives the same texts
(score descending, lower input index first on ties), cut by ``min_score`` then
``top_n``; each output score is that text's score; sync and async agree; the input
nodes (texts, metadata, scores) are unchanged and the outputs are copies.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.qwen3_rerank import QwenRerank

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core import pytest_plugin as kit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

texts = kit.text_strategy(["Photosynthesis turns light into sugar.", "word " * 1_500], max_size=30)
SETTINGS = kit.hypothesis_settings(max_examples=30)


@st.composite
def node_lists(draw: st.DrawFn) -> list[NodeWithScore]:
    # repeated (text, metadata) pairs: equal content, distinct nodes
    entries = st.tuples(texts, kit.json_metadata(min_key_size=1))
    items = kit.insert_repeats(draw, draw(st.lists(entries, max_size=7)), max_repeats=2)
    retrieval = st.one_of(st.none(), st.floats(-10, 10))
    scores = draw(st.lists(retrieval, min_size=len(items), max_size=len(items)))
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata=copy.deepcopy(m)), score=s)
        for i, ((t, m), s) in enumerate(zip(items, scores, strict=True))
    ]


@pytest.fixture(scope="module")
def rr(tiny_model_dir: Path) -> Qwen3Reranker:
    return kit.load_tiny_reranker(tiny_model_dir, max_length=160, max_batch_size=8)


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


@SETTINGS
@given(
    query=st.sampled_from(kit.EDGE_QUERIES),
    nodes=node_lists(),
    **kit.cut_strategies(),
    keep=st.booleans(),
)
def test_postprocess_matches_core_score(
    rr: Qwen3Reranker,
    query: str,
    nodes: list[NodeWithScore],
    top_n: int | None,
    min_score: float | None,
    keep: bool,
) -> None:
    before = copy.deepcopy(nodes)
    given_list = list(nodes)
    scores = rr.score(query, _texts(nodes))
    rerank = QwenRerank(reranker=rr, top_n=top_n, min_score=min_score, keep_retrieval_score=keep)

    out = rerank.postprocess_nodes(nodes, query_str=query)
    aout = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=query))

    expected = kit.expected_order(scores, top_n, min_score)
    for result in (out, aout):
        assert [n.node.node_id for n in result] == [f"n{i}" for i in expected]
        assert [n.score for n in result] == [scores[i] for i in expected]
        for n, i in zip(result, expected, strict=True):
            source = nodes[i]
            assert n is not source and n.node is not source.node
            assert n.node.get_content() == source.node.get_content()
            extra = {"retrieval_score": source.score} if keep else {}
            assert n.node.metadata == {**source.node.metadata, **extra}
    if top_n is None and min_score is None:
        assert sorted(n.node.node_id for n in out) == sorted(n.node.node_id for n in nodes)
    # the caller's list and nodes are unchanged, and changing an output leaves them alone
    for n in out:
        n.node.metadata["added"] = [1]
    assert nodes == given_list and all(a is b for a, b in zip(nodes, given_list, strict=True))
    assert [x.model_dump() for x in nodes] == [x.model_dump() for x in before]
