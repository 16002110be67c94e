"""``QwenRerank``: a LlamaIndex node postprocessor backed by ``qwen3_rerank_core``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from typing import Any, Literal

from llama_index.core.bridge.pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
)
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from qwen3_rerank_core import Qwen3Reranker, RerankConfig, RerankResult
from qwen3_rerank_core.adapters import (
    ENGINE_FIELDS,
    build_reranker,
    check_items,
    check_optional_instruction,
    check_query,
    settings_with_reranker,
)

dispatcher = get_dispatcher(__name__)

_DEFAULTS = RerankConfig()


class QwenRerank(BaseNodePostprocessor):
    """Reorder nodes by Qwen3-Reranker relevance; each ``score`` becomes p(yes) in [0, 1].

    Pass model settings, or ``reranker=`` an existing ``Qwen3Reranker`` (not both) so
    several pipelines share one loaded model. The input nodes are never modified.
    """

    model: str = Field(
        default=_DEFAULTS.model,
        description="Hub id or local folder of a Qwen3-Reranker checkpoint; "
        "for backend='remote' the served model name.",
    )
    backend: Literal["transformers", "vllm", "remote"] = Field(
        default=_DEFAULTS.backend, description="'transformers', 'vllm' or 'remote' (vLLM server)."
    )
    instruction: str | None = Field(
        default=None, description="Task instruction; None uses the reranker's default."
    )
    top_n: int | None = Field(
        default=None, ge=1, description="How many nodes to return, best first; None: all."
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop nodes scoring below this; None: keep."
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the incoming score as metadata['retrieval_score']."
    )
    max_length: int = Field(default=_DEFAULTS.max_length, description="Most tokens per prompt.")
    device: str | None = Field(default=None, description="'cpu', 'cuda', ...; None picks.")
    dtype: str | None = Field(default=None, description="'float32', 'bfloat16', ...; None picks.")
    max_batch_tokens: int | None = Field(
        default=_DEFAULTS.max_batch_tokens,
        description="Token budget of one forward pass; None: chosen for the device and model.",
    )
    max_batch_size: int = Field(
        default=_DEFAULTS.max_batch_size, description="Most documents in one forward pass."
    )
    show_progress: bool = Field(default=False, description="Show a progress bar over batches.")
    base_url: str | list[str] | None = Field(
        default=None, description="vLLM server URL, or a list of replicas (backend='remote')."
    )
    api_key: SecretStr | None = Field(
        default=None, exclude=True, description="Bearer token for the server; never serialized."
    )
    reranker_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other RerankConfig settings, e.g. local_files_only, timeout, max_retries.",
    )

    model_config = ConfigDict(extra="forbid")
    _reranker: Qwen3Reranker = PrivateAttr()

    def __init__(self, *, reranker: Qwen3Reranker | None = None, **data: Any) -> None:
        super().__init__(**settings_with_reranker(reranker, data))
        self._reranker = (
            reranker
            if reranker is not None
            else build_reranker(
                {name: getattr(self, name) for name in ENGINE_FIELDS},
                self.reranker_kwargs,
                owner="QwenRerank",
            )
        )

    _check_instruction = field_validator("instruction")(check_optional_instruction)

    @property
    def reranker(self) -> Qwen3Reranker:
        """The engine; pass it as ``reranker=`` to share the loaded model."""
        return self._reranker

    @classmethod
    def class_name(cls) -> str:
        return "QwenRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        bundle = _checked(query_bundle)
        nodes = check_items(nodes, NodeWithScore, name="nodes", kinds="NodeWithScore")
        if not nodes:
            return []
        with self._observe(nodes, bundle) as out:
            results = self._reranker.rerank(bundle.query_str, _texts(nodes), **self._options())
            out.extend(self._wrap(nodes, results))
        return out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        bundle = _checked(query_bundle)
        nodes = check_items(nodes, NodeWithScore, name="nodes", kinds="NodeWithScore")
        if not nodes:
            return []
        with self._observe(nodes, bundle) as out:
            results = await self._reranker.arerank(
                bundle.query_str, _texts(nodes), **self._options()
            )
            out.extend(self._wrap(nodes, results))
        return out

    def _options(self) -> dict[str, Any]:
        return {"top_n": self.top_n, "min_score": self.min_score, "instruction": self.instruction}

    @contextmanager
    def _observe(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[list[NodeWithScore]]:
        """Send the instrumentation and callback events around one rerank."""
        top_n = self.top_n or len(nodes)
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model)
        )
        payload: dict[str, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        out: list[NodeWithScore] = []
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            yield out
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))

    def _wrap(
        self, nodes: list[NodeWithScore], results: Sequence[RerankResult]
    ) -> list[NodeWithScore]:
        """New nodes (same ids, deep-copied metadata) carrying the rerank scores."""
        out = []
        for result in results:
            source = nodes[result.index]
            node = source.node.model_copy(update={"metadata": deepcopy(source.node.metadata)})
            if self.keep_retrieval_score:
                node.metadata["retrieval_score"] = source.score
            out.append(NodeWithScore(node=node, score=result.score))
        return out


def _checked(query_bundle: QueryBundle | None) -> QueryBundle:
    if query_bundle is None:
        raise ValueError("QwenRerank needs a non-empty query (query_bundle or query_str)")
    if not isinstance(query_bundle, QueryBundle):
        raise TypeError(
            f"query_bundle must be a QueryBundle, got {type(query_bundle).__name__}: "
            f"{query_bundle!r:.80}"
        )
    check_query(query_bundle.query_str)
    return query_bundle


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
