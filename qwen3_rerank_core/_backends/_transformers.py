"""Local backend on Hugging Face transformers (CUDA bf16, CPU fp32 fallback).

Only what the score needs is computed: the decoder runs without the language
model head, and the last position's hidden state is multiplied by the two rows
("no", "yes") of the output embedding. Prompts are sorted by length and packed
into batches under a token budget, so padding stays small; the caller's order
is restored at the end.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from .._config import RerankConfig
from .._errors import MissingDependencyError, ModelLoadError
from .._prompt import PromptEncoder, p_yes
from ._base import Backend, Group

__all__ = ["TransformersBackend", "plan_batches"]

logger = logging.getLogger("qwen3_rerank_core")

_INSTALL_HINT = 'pip install "qwen3-rerank-core[transformers]"'


def _import_torch_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"the 'transformers' backend needs torch and transformers ({exc}); "
            f"install them with: {_INSTALL_HINT}"
        ) from exc
    return torch, transformers


def plan_batches(
    lengths: Sequence[int], *, max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Group indices into batches, longest first, each within the token budget.

    A batch's cost is ``len(batch) * longest_prompt_in_batch`` (the padded size).
    A prompt longer than the budget forms a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        if current and (
            len(current) >= max_batch_size or (len(current) + 1) * width > max_batch_tokens
        ):
            batches.append(current)
            current = []
        if not current:
            width = lengths[i]
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _looks_like_path(model: str) -> bool:
    """Hub ids look like ``org/name``; anything else with a slash is a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


class TransformersBackend(Backend):
    """Scores prompts with ``AutoModelForCausalLM`` in this process."""

    def __init__(self, config: RerankConfig) -> None:
        torch, transformers = _import_torch_transformers()
        self._torch = torch
        self._config = config
        self.device = torch.device(
            config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        if config.dtype == "auto":
            dtype: Any = "auto"
        elif config.dtype is not None:
            dtype = getattr(torch, config.dtype)
        else:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        attn = config.attn_implementation or self._pick_attention()

        model_id = os.path.expanduser(config.model)
        tokenizer, model = self._load(transformers, model_id, dtype, attn)
        model.eval()
        model.to(self.device)
        self._tokenizer = tokenizer
        self._decoder = model.get_decoder()
        self.encoder = PromptEncoder.from_hf_tokenizer(tokenizer, max_length=config.max_length)
        pad = tokenizer.pad_token_id
        self._pad_id: int = pad if pad is not None else tokenizer.eos_token_id
        head = model.get_output_embeddings()
        rows = torch.tensor([self.encoder.no_id, self.encoder.yes_id], device=self.device)
        self._head_weight = head.weight.detach().index_select(0, rows).clone()
        bias = getattr(head, "bias", None)
        self._head_bias = None if bias is None else bias.detach().index_select(0, rows).clone()
        self.dtype = next(model.parameters()).dtype
        self._lock = threading.Lock()
        logger.info(
            "loaded %s on %s (%s, attention=%s)", config.model, self.device, self.dtype, attn
        )

    def _pick_attention(self) -> str:
        if self.device.type == "cuda":
            try:
                import flash_attn  # noqa: F401
            except ImportError:
                return "sdpa"
            return "flash_attention_2"
        return "sdpa"

    def _load(self, transformers: Any, model_id: str, dtype: Any, attn: str) -> tuple[Any, Any]:
        cfg = self._config
        if _looks_like_path(model_id) and not os.path.isdir(model_id):
            raise ModelLoadError(
                f"model folder {cfg.model!r} does not exist; model= takes a local folder "
                "with config.json, the weights and the tokenizer files, or a hub id such as "
                "'Qwen/Qwen3-Reranker-0.6B'"
            )
        major = int(transformers.__version__.split(".")[0])
        dtype_kw = "dtype" if major >= 5 else "torch_dtype"
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                model_id, padding_side="left", local_files_only=cfg.local_files_only
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(
                model_id,
                local_files_only=cfg.local_files_only,
                attn_implementation=attn,
                **{dtype_kw: dtype},
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load the model {cfg.model!r}: {exc}\n"
                "If the model hub cannot be reached (offline, firewall), download the model "
                "where it can be and pass model= a local folder that holds config.json, the "
                "weights and the tokenizer files (local_files_only=True uses only the local "
                "Hugging Face cache). No other model is used instead."
            ) from exc
        return tokenizer, model

    # ---------------------------------------------------------------- scoring
    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        with self._lock:
            prompts: list[list[int]] = []
            for query, documents in groups:
                prompts.extend(self.encoder.encode_prompts(instruction, query, documents))
            flat = self._score_prompts(prompts, show_progress=show_progress)
        out: list[list[float]] = []
        start = 0
        for _, documents in groups:
            out.append(flat[start : start + len(documents)])
            start += len(documents)
        return out

    def _score_prompts(self, prompts: list[list[int]], *, show_progress: bool) -> list[float]:
        """Scores in input order; identical prompts are computed once (and so score equal)."""
        cfg = self._config
        slot: dict[tuple[int, ...], int] = {}
        unique: list[list[int]] = []
        where = []
        for p in prompts:
            key = tuple(p)
            if key not in slot:
                slot[key] = len(unique)
                unique.append(p)
            where.append(slot[key])
        batches = plan_batches(
            [len(p) for p in unique],
            max_batch_tokens=cfg.max_batch_tokens,
            max_batch_size=cfg.max_batch_size,
        )
        scores = [0.0] * len(unique)
        for batch in self._progress(batches, len(unique), show_progress):
            logits = self._last_logits([unique[i] for i in batch])
            for i, (logit_no, logit_yes) in zip(batch, logits, strict=True):
                scores[i] = p_yes(logit_no, logit_yes)
        return [scores[k] for k in where]

    def _progress(
        self, batches: list[list[int]], total: int, show_progress: bool
    ) -> Iterator[list[int]]:
        if not show_progress:
            yield from batches
            return
        from tqdm.auto import tqdm

        with tqdm(total=total, desc="Reranking", unit="doc") as bar:
            for batch in batches:
                yield batch
                bar.update(len(batch))

    def _last_logits(self, prompts: list[list[int]]) -> list[tuple[float, float]]:
        """(logit_no, logit_yes) at the last position of each prompt (left-padded batch)."""
        torch = self._torch
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
        # Positions count real tokens only, so a padded prompt is computed as if alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self._decoder(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=False,
            )
            hidden = out.last_hidden_state[:, -1, :]
            logits = hidden @ self._head_weight.T
            if self._head_bias is not None:
                logits = logits + self._head_bias
            values: list[list[float]] = logits.float().cpu().tolist()
        return [(row[0], row[1]) for row in values]

    def close(self) -> None:
        for name in ("_decoder", "_head_weight", "_head_bias"):
            if hasattr(self, name):
                delattr(self, name)
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
