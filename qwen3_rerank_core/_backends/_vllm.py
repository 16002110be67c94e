"""The ``vllm`` backend: an in-process ``vllm.LLM`` scoring our own token-id prompts.

The checkpoint is scored as vLLM's ``Qwen3ForSequenceClassification``: an
original (``Qwen3ForCausalLM``) checkpoint with the official Qwen3-Reranker
overrides (:data:`HF_OVERRIDES`), a converted one-label ``*-seq-cls`` checkpoint
as it is (vLLM loads it natively). Either way the engine's single classifier
logit is ``logit("yes") - logit("no")`` and its sigmoid is our p(yes). The
flavour is read from the checkpoint's ``config.json``; a local folder whose
safetensors lack a weight the flavour needs is refused before the engine
starts (see :mod:`qwen3_rerank_core._checkpoint`). Prompts are built,
cut and tokenized by :class:`~qwen3_rerank_core._prompt.PromptEncoder` (with the
engine's own tokenizer) and handed over as token ids, so vLLM applies no
template or truncation of its own: scores equal the transformers backend's.

``vllm.LLM`` starts worker processes: scripts that build this backend need an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._checkpoint import (
    HF_OVERRIDES,
    Flavour,
    check_max_length,
    check_tokenizer,
    checkpoint_weights,
    expected_weights,
    flavour_from_config,
    looks_like_path,
    missing_weights,
    read_local_config,
    refuse_missing,
    vllm_engine_args,
)
from .._errors import MissingDependencyError, ModelLoadError
from .._precision import planned_dtype
from .._prompt import PromptEncoder
from .._stats import counters_of
from ._base import Backend, Group

if TYPE_CHECKING:
    from .._config import RerankConfig

__all__ = ["HF_OVERRIDES", "VLLMBackend", "checkpoint_flavour", "local_flavour"]

logger = logging.getLogger("qwen3_rerank_core.vllm")

_INSTALL = 'pip install "qwen3-rerank-core[vllm]"'


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            f"backend='vllm' needs vLLM, which is not installed: {_INSTALL} ({exc})"
        ) from exc
    return vllm


def _hub_config(model: str, *, local_files_only: bool) -> dict[str, Any]:
    """``config.json`` of a hub id (downloaded, or from the local cache)."""
    import huggingface_hub

    try:
        path = huggingface_hub.hf_hub_download(
            model, "config.json", local_files_only=local_files_only
        )
    except Exception as exc:  # hub errors have no common base below Exception
        raise ModelLoadError(
            f"could not read the config.json of {model!r}: {type(exc).__name__}: {exc}. "
            "Offline? Pass model= a local checkpoint folder."
        ) from exc
    return read_local_config(os.path.dirname(path))


def checkpoint_flavour(model: str, *, local_files_only: bool = False) -> Flavour:
    """The flavour of a folder (:func:`local_flavour`) or of a hub id (its config.json)."""
    flavour = local_flavour(model)
    if flavour is None:
        config = _hub_config(model, local_files_only=local_files_only)
        flavour = flavour_from_config(config, model=model)
    return flavour


def local_flavour(model: str) -> Flavour | None:
    """The flavour of a local folder, whose tokenizer and weights are checked too, so that a
    bad checkpoint is refused before vLLM starts; ``None`` for a hub id.

    Raises :class:`~qwen3_rerank_core.ModelLoadError` for a missing folder, an
    unsupported checkpoint, a tokenizer that cannot build the prompts, or
    safetensors that lack a weight the flavour needs.
    """
    folder = os.path.expanduser(model)
    if not os.path.isdir(folder):
        if looks_like_path(model):
            raise ModelLoadError(
                f"model folder {model!r} does not exist; model= takes a local folder with "
                "config.json, the weights and the tokenizer files, or a hub id"
            )
        return None
    flavour = flavour_from_config(read_local_config(folder), model=model)
    from transformers import AutoTokenizer  # a dependency of vLLM

    check_tokenizer(AutoTokenizer.from_pretrained(folder), model=model)
    present = checkpoint_weights(folder)
    if present is None:
        logger.debug("%s has no safetensors files; vLLM checks its weights itself", model)
        return flavour
    missing = missing_weights(expected_weights(folder, flavour), present)
    refuse_missing(model, flavour, missing, present)
    return flavour


def _planned_dtype(config: RerankConfig) -> str:
    """``config.dtype``, or the precision policy's choice for ``dtype=None``
    (:mod:`qwen3_rerank_core._precision`, the same as the transformers backend's)."""
    if config.dtype is not None:
        return config.dtype
    choice = planned_dtype(
        None, config.device, config.model, local_files_only=config.local_files_only
    )
    logger.info("vLLM dtype %s: %s", choice.name, choice.reason)
    return choice.name


class VLLMBackend(Backend):
    """Scores with ``vllm.LLM(runner="pooling")`` in this process.

    ``llm`` uses an already built engine (an original checkpoint's must have
    been created with :data:`HF_OVERRIDES`, a seq-cls checkpoint's without);
    extra keyword arguments go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``,
    ``tensor_parallel_size``, ``enforce_eager``).
    """

    def __init__(self, config: RerankConfig, *, llm: Any = None, **llm_kwargs: Any) -> None:
        self.config = config
        self._lock = threading.Lock()
        # A bad local checkpoint is refused before vLLM is even imported.
        flavour = local_flavour(config.model) if llm is None else None
        if flavour is not None:  # a local folder: its config.json is at hand
            local = read_local_config(os.path.expanduser(config.model))
            check_max_length(config.max_length, local, model=config.model)
        vllm = _import_vllm()
        if llm is None:
            if flavour is None:
                flavour = checkpoint_flavour(config.model, local_files_only=config.local_files_only)
            llm = self._start(vllm, flavour, llm_kwargs)
        self._llm: Any = llm
        self._tokens_prompt = vllm.TokensPrompt
        tokenizer = llm.get_tokenizer()
        try:
            check_tokenizer(tokenizer, model=config.model)
        except ModelLoadError:
            self.close()
            raise
        self._encoder = PromptEncoder.from_hf_tokenizer(tokenizer, max_length=config.max_length)

    def _start(self, vllm: Any, flavour: Flavour, llm_kwargs: dict[str, Any]) -> Any:
        """A ``vllm.LLM`` with the engine arguments of ``flavour``."""
        config = self.config
        if config.device not in (None, "cpu", "cuda"):
            logger.warning(
                "device=%r is not used by vLLM, which picks its devices itself "
                "(set CUDA_VISIBLE_DEVICES to choose GPUs)",
                config.device,
            )
        kwargs: dict[str, Any] = {
            "model": config.model,
            "runner": "pooling",
            "dtype": _planned_dtype(config),
            "max_model_len": config.max_length,
            **vllm_engine_args(flavour),
        }
        kwargs.update(llm_kwargs)
        logger.info(
            "starting vllm.LLM(model=%r, dtype=%r) for a %s checkpoint",
            config.model,
            kwargs["dtype"],
            flavour.architecture,
        )
        try:
            return vllm.LLM(**kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"vLLM could not load {config.model!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.config.model!r})"

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        if self._llm is None:
            raise RuntimeError("this VLLMBackend is closed")
        prompts: list[Any] = []
        sizes: list[int] = []
        lengths: list[int] = []
        for query, documents in groups:
            sizes.append(len(documents))
            if documents:
                encoded = self._encoder.encode_prompts(instruction, query, documents)
                lengths.extend(map(len, encoded))
                prompts.extend(self._tokens_prompt(prompt_token_ids=ids) for ids in encoded)
        counters_of(self).add_prompts(lengths, self._encoder.max_length)
        scores: list[float] = []
        if prompts:
            counters_of(self).add(forward_passes=1)  # one LLM.classify call
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
                "an original Qwen3ForCausalLM checkpoint needs an engine built with "
                "hf_overrides=qwen3_rerank_core._backends._vllm.HF_OVERRIDES (a one-label "
                "seq-cls checkpoint needs none)"
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
