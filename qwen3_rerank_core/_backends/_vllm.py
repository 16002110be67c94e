"""The ``vllm`` backend: an in-process ``vllm.LLM`` scoring our own token-id prompts.

The checkpoint is loaded as vLLM's ``Qwen3ForSequenceClassification`` with the
official Qwen3-Reranker overrides, so the engine's single classifier logit is
``logit("yes") - logit("no")`` and its sigmoid is our p(yes). Prompts are built,
cut and tokenized by :class:`~qwen3_rerank_core._prompt.PromptEncoder` (with the
engine's own tokenizer) and handed over as token ids, so vLLM applies no
template or truncation of its own: scores equal the transformers backend's.

``vllm.LLM`` starts worker processes: scripts that build this backend need an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import MissingDependencyError, ModelLoadError
from .._prompt import PromptEncoder
from ._base import Backend, Group

if TYPE_CHECKING:
    from .._config import RerankConfig

__all__ = ["HF_OVERRIDES", "VLLMBackend"]

logger = logging.getLogger("qwen3_rerank_core.vllm")

#: ``--hf-overrides`` that make vLLM score a Qwen3-Reranker (CausalLM) checkpoint.
HF_OVERRIDES: dict[str, Any] = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}

_INSTALL = 'pip install "qwen3-rerank-core[vllm]"'


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            f"backend='vllm' needs vLLM, which is not installed: {_INSTALL} ({exc})"
        ) from exc
    return vllm


def _default_dtype() -> str:
    try:
        import torch

        return "bfloat16" if torch.cuda.is_available() else "float32"
    except ImportError:  # pragma: no cover - vllm depends on torch
        return "float32"


class VLLMBackend(Backend):
    """Scores with ``vllm.LLM(runner="pooling")`` in this process.

    ``llm`` uses an already built engine (it must have been created with
    :data:`HF_OVERRIDES`); extra keyword arguments go to ``vllm.LLM`` (e.g.
    ``gpu_memory_utilization``, ``tensor_parallel_size``, ``enforce_eager``).
    """

    def __init__(self, config: RerankConfig, *, llm: Any = None, **llm_kwargs: Any) -> None:
        vllm = _import_vllm()
        self.config = config
        self._lock = threading.Lock()
        if llm is None:
            if config.device not in (None, "cpu", "cuda"):
                logger.warning(
                    "device=%r is not used by vLLM, which picks its devices itself "
                    "(set CUDA_VISIBLE_DEVICES to choose GPUs)",
                    config.device,
                )
            kwargs: dict[str, Any] = {
                "model": config.model,
                "runner": "pooling",
                "dtype": config.dtype or _default_dtype(),
                "max_model_len": config.max_length,
                "hf_overrides": HF_OVERRIDES,
            }
            kwargs.update(llm_kwargs)
            logger.info("starting vllm.LLM(model=%r, dtype=%r)", config.model, kwargs["dtype"])
            try:
                llm = vllm.LLM(**kwargs)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(
                    f"vLLM could not load {config.model!r}: {type(exc).__name__}: {exc}"
                ) from exc
        self._llm: Any = llm
        self._tokens_prompt = vllm.TokensPrompt
        self._encoder = PromptEncoder.from_hf_tokenizer(
            llm.get_tokenizer(), max_length=config.max_length
        )

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.config.model!r})"

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        if self._llm is None:
            raise RuntimeError("this VLLMBackend is closed")
        prompts: list[Any] = []
        sizes: list[int] = []
        for query, documents in groups:
            sizes.append(len(documents))
            if documents:
                prompts.extend(
                    self._tokens_prompt(prompt_token_ids=ids)
                    for ids in self._encoder.encode_prompts(instruction, query, documents)
                )
        scores: list[float] = []
        if prompts:
            with self._lock:  # vllm.LLM is not thread-safe
                outputs = self._llm.classify(
                    prompts, use_tqdm=show_progress or self.config.show_progress
                )
            scores = [self._score(output) for output in outputs]
            if len(scores) != len(prompts):  # pragma: no cover - vLLM contract
                raise RuntimeError(f"vLLM returned {len(scores)} results for {len(prompts)}")
        result: list[list[float]] = []
        start = 0
        for size in sizes:
            result.append(scores[start : start + size])
            start += size
        return result

    @staticmethod
    def _score(output: Any) -> float:
        probs = list(output.outputs.probs)
        if len(probs) != 1 or not math.isfinite(probs[0]):
            raise RuntimeError(
                f"vLLM returned {probs!r} for one prompt instead of one probability; "
                "was the engine built with VLLMBackend.HF_OVERRIDES?"
            )
        return float(probs[0])

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # pragma: no cover - best effort on teardown
                logger.debug("vLLM engine shutdown failed", exc_info=True)
