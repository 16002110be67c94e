"""Checkpoints of every flavour for the tests, good and bad, built offline from the tiny fixture.

Good ones (cached under ``<repo>/.cache/fixtures``): the original ``Qwen3ForCausalLM``
with tied and untied embeddings, and their ``Qwen3ForSequenceClassification``
conversions built the way the public conversion scripts build them
(:func:`qwen3_rerank_core.testing.build_seq_cls_checkpoint`).

Bad ones (built into a test's temporary folder by :func:`build_bad`): each is a
checkpoint a user may plausibly hold that cannot give Qwen3-Reranker's scores.

Import from tests as ``import checkpoint_kit`` (``conftest.py`` puts this folder
on ``sys.path``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwen3_rerank_core.testing import (
    TINY_CONFIG,
    cached_checkpoint,
    cached_seq_cls_checkpoint,
)

UNTIED = {"tie_word_embeddings": False}
_SMALL = {  # a tiny shape shared by the foreign architectures
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def good(kind: str, tied: bool, cache: Path) -> Path:
    """``kind`` "causal-lm" or "seq-cls", tied or untied embeddings, fp32."""
    overrides: Any = "tiny" if tied else UNTIED
    if kind == "causal-lm":
        return cached_checkpoint(overrides, cache_dir=cache)
    return cached_seq_cls_checkpoint(overrides, cache_dir=cache)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("qwen3_rerank_fixture.json"))
    return dst


def _edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config, indent=2))


def _drop_weights(folder: Path, *names: str) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    for name in names:
        assert name in tensors, (name, sorted(tensors))
        del tensors[name]
    save_file(tensors, str(path), metadata={"format": "pt"})


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in _TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def _foreign_decoder(arch: str, cache: Path, out: Path) -> Path:
    """A tiny Qwen2 or Llama causal LM with the Qwen3 tokenizer."""
    import torch
    import transformers

    config_cls = {"Qwen2ForCausalLM": "Qwen2Config", "LlamaForCausalLM": "LlamaConfig"}[arch]
    config = getattr(transformers, config_cls)(
        vocab_size=TINY_CONFIG["vocab_size"], tie_word_embeddings=True, **_SMALL
    )
    config.architectures = [arch]
    torch.manual_seed(0)
    getattr(transformers, arch)(config).save_pretrained(str(out))
    _copy_tokenizer(good("causal-lm", True, cache), out)
    return out


def _bert_cross_encoder(out: Path) -> Path:
    """A tiny BERT-style cross-encoder (``BertForSequenceClassification``, one label)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "yes", "no", "the", "capital"]
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt")).save_pretrained(str(out))
    config = BertConfig(
        vocab_size=len(words), num_labels=1, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(out))
    return out


def _word_tokenizer(causal: Path, out: Path) -> Path:
    """Qwen3 weights with a word-level tokenizer that has neither "yes" nor "no"."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    _copy(causal, out)
    for name in _TOKENIZER_FILES:
        (out / name).unlink(missing_ok=True)
    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "the": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(str(out))
    return out


def _no_chat_markers(causal: Path, out: Path) -> Path:
    """Qwen3 weights with the base BPE tokenizer only: no added (chat marker) tokens."""
    _copy(causal, out)
    tok = json.loads((out / "tokenizer.json").read_text())
    tok["added_tokens"] = []
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("added_tokens_decoder", None)
    for key in ("pad_token", "eos_token", "bos_token", "unk_token"):
        cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg))
    (out / "special_tokens_map.json").unlink(missing_ok=True)
    return out


def _multi_label(cache: Path, out: Path) -> Path:
    """A two-label seq-cls conversion (rows "no" and "yes"): not the one-label flavour."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3ForSequenceClassification

    causal_dir = good("causal-lm", False, cache)
    causal = AutoModelForCausalLM.from_pretrained(str(causal_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(causal_dir))
    config = causal.config
    config.architectures = ["Qwen3ForSequenceClassification"]
    config.num_labels = 2
    config.pad_token_id = tokenizer.pad_token_id
    model = Qwen3ForSequenceClassification(config)
    model.model.load_state_dict(causal.model.state_dict())
    rows = causal.get_output_embeddings().weight.detach()
    with torch.no_grad():
        model.score.weight.copy_(rows[[2152, 9693]])
    model.save_pretrained(str(out))
    _copy_tokenizer(causal_dir, out)
    return out


def _causal_without_head(cache: Path, out: Path) -> Path:
    _drop_weights(_copy(good("causal-lm", False, cache), out), "lm_head.weight")
    return out


def _seq_cls_without_score(cache: Path, out: Path) -> Path:
    _drop_weights(_copy(good("seq-cls", False, cache), out), "score.weight")
    return out


def _seq_cls_labelled_causal(cache: Path, out: Path) -> Path:
    """An untied seq-cls conversion whose config.json still says Qwen3ForCausalLM."""
    _copy(good("seq-cls", False, cache), out)
    _edit_config(out, architectures=["Qwen3ForCausalLM"])
    return out


def _missing_layer_weight(cache: Path, out: Path) -> Path:
    _copy(good("seq-cls", True, cache), out)
    _drop_weights(out, "model.layers.1.mlp.down_proj.weight")
    return out


#: name -> (builder(cache, out), words the refusal must contain)
BAD: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "causal-untied-without-lm-head": (_causal_without_head, ("lm_head.weight", "random")),
    "seq-cls-without-score": (_seq_cls_without_score, ("score.weight", "random")),
    "seq-cls-labelled-causal-lm": (
        _seq_cls_labelled_causal,
        ("lm_head.weight", "Qwen3ForSequenceClassification", "architectures"),
    ),
    "seq-cls-missing-layer-weight": (
        _missing_layer_weight,
        ("model.layers.1.mlp.down_proj.weight", "random"),
    ),
    "bert-cross-encoder": (
        lambda cache, out: _bert_cross_encoder(out),
        ("BertForSequenceClassification", "Qwen3ForCausalLM", "Qwen3ForSequenceClassification"),
    ),
    "qwen2": (
        lambda cache, out: _foreign_decoder("Qwen2ForCausalLM", cache, out),
        ("Qwen2ForCausalLM", "supported"),
    ),
    "llama": (
        lambda cache, out: _foreign_decoder("LlamaForCausalLM", cache, out),
        ("LlamaForCausalLM", "supported"),
    ),
    "multi-label": (_multi_label, ("2 labels", "one-label")),
    "tokenizer-without-yes-no": (
        lambda cache, out: _word_tokenizer(good("causal-lm", True, cache), out),
        ("'yes' and 'no'", "single tokens", "tokenizer"),
    ),
    "tokenizer-without-chat-markers": (
        lambda cache, out: _no_chat_markers(good("causal-lm", True, cache), out),
        ("<|im_start|>", "chat markers", "tokenizer"),
    ),
}


def build_bad(name: str, cache: Path, out: Path) -> Path:
    """Build the bad checkpoint ``name`` (a key of :data:`BAD`) into ``out``."""
    builder, _ = BAD[name]
    return builder(cache, out)
