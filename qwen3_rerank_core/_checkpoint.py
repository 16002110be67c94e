"""Checkpoint flavours: what a folder's ``config.json`` says the model is, and what is refused.

Two flavours of a Qwen3-Reranker checkpoint are scored, both exactly:

- ``Qwen3ForCausalLM``, the original: p(yes) = softmax([logit("no"), logit("yes")])[1]
  from the two rows "no" and "yes" of the output head at the last position;
- ``Qwen3ForSequenceClassification`` with one label, the converted ``*-seq-cls``
  checkpoints (``score.weight`` = W["yes"] - W["no"]): p(yes) = sigmoid(logit).

Anything else is refused with :class:`~qwen3_rerank_core.ModelLoadError` before
any scoring: another architecture, a classifier with several labels, weights
missing from the checkpoint (they would be initialised at random), a tokenizer
without single-token "yes"/"no" or without Qwen's chat markers.

Everything here reads JSON and safetensors headers only; torch and transformers
are imported by the one function that needs them (:func:`expected_weights`).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from ._errors import ModelLoadError
from ._prompt import MARKERS, NO_TOKEN, PREFIX, SUFFIX, YES_TOKEN

__all__ = [
    "CAUSAL_LM",
    "HF_OVERRIDES",
    "SEQ_CLS",
    "TEMPLATE_MARKERS",
    "Flavour",
    "check_tokenizer",
    "checkpoint_weights",
    "expected_weights",
    "flavour_from_config",
    "looks_like_path",
    "missing_weights",
    "read_local_config",
    "refuse_missing",
    "vllm_engine_args",
]

CAUSAL_LM = "Qwen3ForCausalLM"
SEQ_CLS = "Qwen3ForSequenceClassification"
#: The chat markers of the prompt template; each must be one token of the tokenizer.
TEMPLATE_MARKERS: tuple[str, ...] = tuple(m for m in MARKERS if m in PREFIX + SUFFIX)

#: ``--hf-overrides`` that make vLLM score an original (CausalLM) checkpoint: it is
#: loaded as a one-label classifier whose row is ``W[yes] - W[no]``, built from the
#: output head's rows of ``classifier_from_token`` = [no, yes].
HF_OVERRIDES: dict[str, Any] = {
    "architectures": [SEQ_CLS],
    "classifier_from_token": [NO_TOKEN, YES_TOKEN],
    "is_original_qwen3_reranker": True,
}

_SUPPORTED = (
    f"supported: {CAUSAL_LM!r} (the original Qwen3-Reranker) and {SEQ_CLS!r} with "
    "one label (a converted *-seq-cls checkpoint)"
)


@dataclass(frozen=True)
class Flavour:
    """The kind of checkpoint a ``config.json`` describes.

    Example::

        >>> f = flavour_from_config({"architectures": ["Qwen3ForSequenceClassification"],
        ...                          "id2label": {"0": "LABEL_0"}})
        >>> f.kind, f.head_weight
        ('seq-cls', 'score.weight')
    """

    kind: Literal["causal-lm", "seq-cls"]
    """``"causal-lm"`` (yes/no rows of the output head) or ``"seq-cls"`` (sigmoid of one logit)."""
    tied: bool
    """Whether the output embeddings are the input embeddings (``tie_word_embeddings``)."""

    @property
    def architecture(self) -> str:
        """The transformers class that loads it."""
        return CAUSAL_LM if self.kind == "causal-lm" else SEQ_CLS

    @property
    def head_weight(self) -> str:
        """Name of the scoring head's weight in the checkpoint."""
        return "lm_head.weight" if self.kind == "causal-lm" else "score.weight"


def _num_labels(config: Mapping[str, Any]) -> int:
    """Labels as transformers counts them: ``id2label``, else ``num_labels``, else 2."""
    id2label = config.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        return len(id2label)
    value = config.get("num_labels")
    return value if isinstance(value, int) else 2


def flavour_from_config(config: Mapping[str, Any], *, model: str = "the model") -> Flavour:
    """The :class:`Flavour` of a checkpoint's config (a ``config.json`` as a dict).

    Raises :class:`~qwen3_rerank_core.ModelLoadError` for an architecture that
    is neither flavour and for a classifier with more than one label.
    """
    archs = config.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    if not archs and config.get("model_type") == "qwen3":
        archs = [CAUSAL_LM]  # what AutoModelForCausalLM loads it as
    tied = bool(config.get("tie_word_embeddings", True))
    if CAUSAL_LM in archs:
        return Flavour("causal-lm", tied)
    if SEQ_CLS in archs:
        labels = _num_labels(config)
        if labels == 1:
            return Flavour("seq-cls", tied)
        raise ModelLoadError(
            f"{model!r} is a {SEQ_CLS} with {labels} labels; only a one-label conversion "
            "(score.weight = W['yes'] - W['no'], score = sigmoid(logit)) gives Qwen3-Reranker's "
            f"p(yes). Use the original checkpoint or a one-label conversion ({_SUPPORTED})."
        )
    named = ", ".join(map(repr, archs)) or f"none (model_type {config.get('model_type')!r})"
    raise ModelLoadError(
        f"{model!r} is not a Qwen3-Reranker checkpoint: its config.json names the "
        f"architecture {named}; {_SUPPORTED}. Cross-encoders of other families (BERT, ...) "
        "and other decoders (Qwen2, Llama, ...) score differently and are not supported."
    )


def check_max_length(max_length: int, config: Mapping[str, Any], *, model: str) -> None:
    """Refuse a ``max_length`` beyond the positions the checkpoint's config allows.

    The limit is ``max_position_embeddings``; a RoPE scaling with a ``factor``
    (YaRN, ...) multiplies its original length (``original_max_position_embeddings``,
    else ``max_position_embeddings``), as vLLM does. A config without the key is
    not checked. Raises :class:`~qwen3_rerank_core.ModelLoadError` naming both numbers.

    Example::

        >>> check_max_length(50000, {"max_position_embeddings": 40960}, model="m")
        Traceback (most recent call last):
        ...
        qwen3_rerank_core._errors.ModelLoadError: max_length=50000 is more than 'm' can take: \
its config has max_position_embeddings=40960. Pass max_length <= 40960 (longer documents \
are cut at their end to fit).
    """
    positions = config.get("max_position_embeddings")
    if not _is_int(positions) or positions <= 0:
        return
    limit, what = positions, f"max_position_embeddings={positions}"
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    factor = rope.get("factor") if isinstance(rope, Mapping) else None
    if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 1:
        original = rope.get("original_max_position_embeddings", positions)
        if _is_int(original) and int(original * factor) > limit:
            limit = int(original * factor)
            what = f"{limit} positions ({original} with the RoPE scaling factor {factor:g})"
    if max_length > limit:
        raise ModelLoadError(
            f"max_length={max_length} is more than {model!r} can take: its config has "
            f"{what}. Pass max_length <= {limit} (longer documents are cut at their end to fit)."
        )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def read_local_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of a local checkpoint folder (``ModelLoadError`` if missing or bad)."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            f"{str(folder)!r} has no config.json; pass a checkpoint folder that holds "
            "config.json, the weights and the tokenizer files"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def looks_like_path(model: str) -> bool:
    """Hub ids look like ``org/name``; anything else with a slash is a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def vllm_engine_args(flavour: Flavour) -> dict[str, Any]:
    """Engine arguments a flavour needs beyond the model: ``hf_overrides`` for the original."""
    return {"hf_overrides": HF_OVERRIDES} if flavour.kind == "causal-lm" else {}


# ----------------------------------------------------------------- tokenizer
def _single_token(tokenizer: Any, text: str) -> bool:
    tid = tokenizer.convert_tokens_to_ids(text)
    if not isinstance(tid, int) or tid < 0 or tid == getattr(tokenizer, "unk_token_id", None):
        return False
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids) == [tid]


def check_tokenizer(tokenizer: Any, *, model: str = "the model") -> None:
    """Refuse a tokenizer that cannot build Qwen3-Reranker prompts.

    "yes" and "no" must be single tokens (the score reads their logits) and
    each chat marker of the template (:data:`TEMPLATE_MARKERS`) must be one token.
    """
    bad = [t for t in (YES_TOKEN, NO_TOKEN) if not _single_token(tokenizer, t)]
    markers = [m for m in TEMPLATE_MARKERS if not _single_token(tokenizer, m)]
    if not bad and not markers:
        return
    problems = []
    if bad:
        problems.append(f"{' and '.join(map(repr, bad))} not single tokens")
    if markers:
        problems.append(f"Qwen's chat markers {', '.join(markers)} not tokens")
    raise ModelLoadError(
        f"the tokenizer of {model!r} cannot build Qwen3-Reranker prompts: "
        f"{'; '.join(problems)}. Keep the tokenizer files of the Qwen3-Reranker checkpoint "
        "the model was made from (tokenizer.json, tokenizer_config.json) in its folder."
    )


# ------------------------------------------------------------------- weights
def checkpoint_weights(folder: str | os.PathLike[str]) -> set[str] | None:
    """Tensor names in a folder's safetensors files (headers only); ``None`` without any."""
    root = Path(folder)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return set(weight_map)
    files = sorted(root.glob("*.safetensors"))
    if not files:
        return None
    names: set[str] = set()
    for file in files:
        with file.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        names.update(k for k in header if k != "__metadata__")
    return names


def expected_weights(folder: str | os.PathLike[str], flavour: Flavour) -> set[str]:
    """Parameter names the flavour's transformers class has (built on the meta device)."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(folder))
    cls = getattr(transformers, flavour.architecture)
    with torch.device("meta"):
        model = cls(config)
    # Tied weights are one parameter: named_parameters() lists it once.
    return {name for name, _ in model.named_parameters()}


def missing_weights(
    expected: Iterable[str], present: Iterable[str], *, prefix: str = "model."
) -> list[str]:
    """Names in ``expected`` absent from ``present`` (also accepted without ``prefix``)."""
    have = set(present)
    return sorted(k for k in expected if k not in have and k.removeprefix(prefix) not in have)


def refuse_missing(
    model: str, flavour: Flavour, missing: Iterable[str], present: Iterable[str] = ()
) -> None:
    """Raise ``ModelLoadError`` naming the weights a load would initialise at random."""
    names = sorted(missing)
    if not names:
        return
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    hint = "Re-download or re-convert the checkpoint."
    if flavour.kind == "causal-lm" and "lm_head.weight" in names and "score.weight" in present:
        hint = (
            "Its weights hold score.weight, the head of a seq-cls conversion: its config.json "
            f'should name architectures ["{SEQ_CLS}"] with one label (id2label {{"0": "LABEL_0"}}).'
        )
    raise ModelLoadError(
        f"{model!r} lacks weights that a {flavour.architecture} needs: {shown}. Loading it "
        f"would initialise them at random and the scores would be wrong, so it is refused. {hint}"
    )
