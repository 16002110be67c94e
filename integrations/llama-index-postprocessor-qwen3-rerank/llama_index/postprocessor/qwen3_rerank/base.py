"""``QwenRerank``: a LlamaIndex node postprocessor backed by ``qwen3_rerank_core``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from qwen3_rerank_core import RerankResult
from qwen3_rerank_core.adapters import AdapterSettings, ItemReader, check_items, check_query

dispatcher = get_dispatcher(__name__)
logger = logging.getLogger(__name__)
#: The ``ReRankEndEvent`` tag holding ``reranker.stats().as_dict()`` after the rerank.
STATS_TAG = "qwen3_rerank_stats"


_NODES: ItemReader[NodeWithScore] = ItemReader("nodes", lambda n: n.node.metadata)


class QwenRerank(AdapterSettings, BaseNodePostprocessor):
    """Reorder nodes by Qwen3-Reranker relevance; each ``score`` becomes p(yes) in [0, 1].

    Pass model settings, or ``reranker=`` an existing ``Qwen3Reranker`` (not both) so
    several pipelines share one loaded model. The input nodes are never modified.
    The engine settings (``model``, ``backend``, ``max_length``, ``device``, ...)
    are fields declared with ``RerankConfig``'s types, defaults and descriptions
    (``qwen3_rerank_core.adapters.AdapterSettings``), so type checkers see them.

    Hybrid ranking (docs/hybrid.md): with ``fusion=``, each ``score`` becomes the fused
    score, p(yes) goes to ``metadata["relevance_score"]``, the incoming scores are the
    first-stage scores (the input order is the rank when a node has none) and
    ``signals`` come from metadata keys or callables on each ``NodeWithScore``.
    """

    keep_retrieval_score: bool = Field(
        default=False, description="Keep the incoming score as metadata['retrieval_score']."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Which metadata node.get_content() puts in the scored text.",
    )

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def class_name(cls) -> str:
        return "QwenRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        with self._observe(nodes, query_bundle) as call:
            call.finish(self.reranker.rerank(call.query, call.texts, **call.options))
        return call.out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        with self._observe(nodes, query_bundle) as call:
            call.finish(await self.reranker.arerank(call.query, call.texts, **call.options))
        return call.out

    def _options(self, nodes: list[NodeWithScore]) -> dict[str, Any]:
        """The core's keywords for one call (fusion inputs read from ``nodes``)."""
        scores = [n.score for n in nodes]
        fusion = _NODES.fusion_options(self.fusion, self.signals, nodes, scores)
        return {
            "top_n": self.top_n,
            "min_score": self.min_score,
            "instruction": self.instruction,
            **fusion,
        }

    @contextmanager
    def _observe(self, nodes: object, query_bundle: QueryBundle | None) -> Iterator[_Call]:
        """Check the inputs, then send the instrumentation and callback events around
        one rerank (none when there are no nodes)."""
        bundle = _valid_query_bundle(query_bundle)
        checked = check_items(nodes, NodeWithScore, name="nodes", kinds="NodeWithScore")
        call = _Call(checked, bundle.query_str, self._wrap, self.metadata_mode)
        if not checked:
            yield call
            return
        call.options = self._options(checked)  # before any event: bad input sends none
        top_n = self.top_n or len(checked)
        dispatcher.event(
            ReRankStartEvent(query=bundle, nodes=checked, top_n=top_n, model_name=self.model)
        )
        payload: dict[str, Any] = {
            EventPayload.NODES: checked,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            yield call
            event.on_end(payload={EventPayload.NODES: call.out})
        # The reranker's statistics (cumulative, RerankStats) ride in the event's tags.
        stats = self.reranker.stats()
        logger.debug("qwen3-rerank stats: %s", stats.summary())
        dispatcher.event(ReRankEndEvent(nodes=call.out, tags={STATS_TAG: stats.as_dict()}))

    def _wrap(
        self, nodes: list[NodeWithScore], results: Sequence[RerankResult]
    ) -> list[NodeWithScore]:
        """New nodes (same ids, deep-copied metadata) carrying the rerank scores
        (with fusion: the fused score, and p(yes) as metadata["relevance_score"]).

        The metadata keys added here are excluded from the copies' LLM and embedding
        text (``get_content(MetadataMode.LLM/EMBED)``), so scores never reach a prompt.
        """
        out = []
        for result in results:
            source = nodes[result.index]
            added: dict[str, Any] = {}
            if self.keep_retrieval_score:
                added["retrieval_score"] = source.score
            if result.fusion is not None:
                added["relevance_score"] = result.score
            out.append(NodeWithScore(node=_copy(source.node, added), score=result.fused_score))
        return out


@dataclass
class _Call:
    """One rerank: the checked nodes, their query and texts, and the output nodes."""

    nodes: list[NodeWithScore]
    query: str
    wrap: Callable[[list[NodeWithScore], Sequence[RerankResult]], list[NodeWithScore]]
    metadata_mode: MetadataMode = MetadataMode.EMBED
    options: dict[str, Any] = field(default_factory=dict)
    out: list[NodeWithScore] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [n.node.get_content(metadata_mode=self.metadata_mode) for n in self.nodes]

    def finish(self, results: Sequence[RerankResult]) -> None:
        self.out.extend(self.wrap(self.nodes, results))


def _valid_query_bundle(query_bundle: QueryBundle | None) -> QueryBundle:
    if query_bundle is None:
        raise ValueError("QwenRerank needs a non-empty query (query_bundle or query_str)")
    if not isinstance(query_bundle, QueryBundle):
        raise TypeError(
            f"query_bundle must be a QueryBundle, got {type(query_bundle).__name__}: "
            f"{query_bundle!r:.80}"
        )
    check_query(query_bundle.query_str)
    return query_bundle


def _copy(node: BaseNode, added: Mapping[str, Any]) -> BaseNode:
    """A copy of ``node`` with deep-copied metadata plus ``added``, whose keys are
    also excluded from its LLM and embedding text (the caller's node is untouched)."""
    metadata = deepcopy(node.metadata)
    metadata.update(added)
    update: dict[str, Any] = {"metadata": metadata}
    for excluded in ("excluded_llm_metadata_keys", "excluded_embed_metadata_keys"):
        keys = list(getattr(node, excluded))
        update[excluded] = keys + [k for k in added if k not in keys]
    return node.model_copy(update=update)
