"""Local backend on Hugging Face transformers (CUDA bf16, Apple MPS and CPU fp32).

Only what the score needs is computed: the decoder runs without the language
model head, and the last position's hidden state is multiplied by the scoring
head (:class:`ScoringHead`): the two rows ("no", "yes") of the output embedding
of an original ``Qwen3ForCausalLM`` checkpoint, or the one row of a converted
``Qwen3ForSequenceClassification`` (see :mod:`qwen3_rerank_core._checkpoint`).
Both flavours share every path below. Prompts are sorted by length and packed
into batches under a token budget, so padding stays small; the caller's order
is restored at the end.

Where flash-attention is installed on CUDA (``attn_implementation=
"flash_attention_2"``), batches are *packed* instead: the prompts of a batch
are concatenated into one row with position ids restarting at 0 for each
prompt, which transformers turns into variable-length (varlen) attention, so
no padding is computed at all (:func:`plan_packs`). Elsewhere (SDPA, eager)
the query prefix is reused (see ``_score_with_prefix``); on SDPA, batches run on
:class:`LeanForward` (right-padded) where it covers the model, otherwise through
the transformers forward, left-padded.

Documents are tokenized and scored in chunks (:data:`CHUNK_DOCS` documents or
:data:`CHUNK_CHARS` characters at a time), so memory does not grow with the
number of documents beyond the caller's input and the returned scores: 10,000
documents of 1,000 tokens are never 10 million token ids in memory at once.
The length sort and batching work within a chunk.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .._checkpoint import (
    Flavour,
    check_max_length,
    check_tokenizer,
    flavour_from_config,
    looks_like_path,
    refuse_missing,
)
from .._config import RerankConfig
from .._errors import MissingDependencyError, ModelLoadError
from .._precision import DtypeChoice, checkpoint_dtype, choose_dtype, hardware_of
from .._prompt import EncodedGroup, PromptEncoder, p_yes
from .._stats import counters_of
from ._base import Backend, Group, progress_bar
from ._lean import LeanForward, Prefix, lean_unsupported
from ._lean_ops import missing_cpp_compiler
from ._vml import resolve_vml_dispatch

__all__ = [
    "CHUNK_CHARS",
    "CHUNK_DOCS",
    "PACKED_ATTENTION",
    "ScoringHead",
    "TransformersBackend",
    "default_batch_tokens",
    "default_device",
    "default_dtype",
    "plan_batches",
    "plan_packs",
]

#: Attention kernels that run packed rows as variable-length attention.
PACKED_ATTENTION = ("flash_attention_2", "flash_attention_3")

logger = logging.getLogger("qwen3_rerank_core")

_INSTALL_HINT = 'pip install "qwen3-rerank-core[transformers]"'

#: Most documents tokenized and scored at a time.
CHUNK_DOCS = 4096
#: Most characters of documents tokenized at a time (about 1M tokens of prose).
CHUNK_CHARS = 4_000_000

#: Part of a call: ``(group index, indices of distinct documents in that group)``.
_Piece = tuple[int, list[int]]


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


def plan_packs(
    lengths: Sequence[int], *, max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Group indices into packed rows, longest first: a row's cost is the *sum* of
    its prompts' lengths (no padding), kept within the budget. A prompt longer
    than the budget forms a row of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    packs: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        if current and (len(current) >= max_batch_size or total + lengths[i] > max_batch_tokens):
            packs.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        packs.append(current)
    return packs


def _decoder_of(model: Any) -> Any:
    """The base model under the LM head. transformers 4.56's generic ``get_decoder`` returns
    None for Qwen3ForCausalLM (it asks the inner Qwen3Model for a decoder of its own); the
    inner ``model`` is the decoder there."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return decoder if decoder is not None else getattr(model, model.base_model_prefix)


def _cache_argument(decoder: Any) -> str:
    """Name of the KV-cache argument of ``decoder.forward``: ``cache`` in current
    transformers (5.24 warns on ``past_key_values``, to be removed in 5.40), else the
    ``past_key_values`` of older releases (4.51)."""
    parameters = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _output_cache(out: Any) -> Any:
    """The KV cache of a decoder's output: ``out.cache`` (current transformers), else
    ``out.past_key_values`` (older; reading it on current ones logs a deprecation)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


#: ``max_batch_tokens`` on CUDA when it is ``None`` (not yet measured on a GPU).
CUDA_BATCH_TOKENS = 16384
#: Bounds of the automatic CPU budget.
CPU_BATCH_TOKENS_RANGE = (512, 16384)
#: Cache size assumed when the CPU's cannot be read (bytes).
FALLBACK_CACHE_BYTES = 16 * 2**20
#: Most of a cache size read from sysfs that the budget rule uses (bytes): in a virtual
#: machine sysfs reports the host's whole last-level cache (480 MiB measured on a 2-core
#: VM), far more than the cores given to the guest can use. Measured on that VM, 8x512 saved
#: in bf16 (2026-12-05): a 16384-token budget (uncapped) took 1.9x the time of 2048.
MEASURED_CACHE_CAP = 32 * 2**20
_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


def cpu_cache_bytes(cache_dir: str = _CACHE_DIR) -> int:
    """Size of the CPU's last-level cache (Linux sysfs), else :data:`FALLBACK_CACHE_BYTES`."""
    sizes = []
    try:
        for entry in os.listdir(cache_dir):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(cache_dir, entry, "type"), encoding="ascii") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(cache_dir, entry, "size"), encoding="ascii") as f:
                text = f.read().strip().upper()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        return FALLBACK_CACHE_BYTES
    return max(sizes, default=FALLBACK_CACHE_BYTES)


def default_batch_tokens(
    device_type: str, model_config: Any, *, dtype_bytes: int = 4, cache_bytes: int | None = None
) -> int:
    """Token budget of one forward pass when ``max_batch_tokens`` is ``None``.

    On CPU, a batch is fastest while one layer's activations stay in the last-level
    cache: the MLP's gate and up projections (``2 x intermediate_size`` values a
    token) and the hidden state in and out (``2 x hidden_size``). The budget is the
    largest power of two whose activations fit the cache, within
    :data:`CPU_BATCH_TOKENS_RANGE` (measured: ``docs/benchmarks.md``). On CUDA it
    is :data:`CUDA_BATCH_TOKENS`.

    >>> from types import SimpleNamespace
    >>> shape = SimpleNamespace(hidden_size=1024, intermediate_size=3072)
    >>> default_batch_tokens("cpu", shape, cache_bytes=32 * 2**20)
    1024
    >>> default_batch_tokens("cuda", shape)
    16384
    """
    if device_type != "cpu":
        budget = CUDA_BATCH_TOKENS
    else:
        cache = min(cpu_cache_bytes(), MEASURED_CACHE_CAP) if cache_bytes is None else cache_bytes
        hidden = int(getattr(model_config, "hidden_size", 1024))
        inner = int(getattr(model_config, "intermediate_size", None) or 3 * hidden)
        per_token = dtype_bytes * 2 * (inner + hidden)
        low, high = CPU_BATCH_TOKENS_RANGE
        budget = low
        while budget * 2 <= high and budget * 2 * per_token <= cache:
            budget *= 2
    logger.debug("max_batch_tokens=None: %d tokens a batch on %s", budget, device_type)
    return budget


def _cache_tensors(cache: Any) -> list[tuple[Any, Any]]:
    """Per-layer (key, value) tensors of a transformers KV cache (4.x and 5.x layouts)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers 4.x


def _make_cache(cache_cls: Any, tensors: list[tuple[Any, Any]]) -> Any:
    """A fresh ``DynamicCache`` holding ``tensors`` (it is extended in place by a forward)."""
    try:
        return cache_cls(tensors)
    except TypeError:  # transformers 4.x
        return cache_cls.from_legacy_cache(tuple(tensors))


@contextmanager
def _load_errors(model: str) -> Iterator[None]:
    """Turn the hub's and transformers' load failures into ``ModelLoadError``."""
    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"could not load the model {model!r}: {exc}\n"
            "If the model hub cannot be reached (offline, firewall), download the model "
            "where it can be and pass model= a local folder that holds config.json, the "
            "weights and the tokenizer files (local_files_only=True uses only the local "
            "Hugging Face cache). No other model is used instead."
        ) from exc


def default_device(torch: Any) -> str:
    """The device ``device=None`` picks: CUDA, else Apple MPS (where torch reports it
    available), else CPU."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def default_dtype(torch: Any, device: Any, saved: str | None = None) -> Any:
    """The dtype ``dtype=None`` picks for ``device`` and a checkpoint saved in ``saved``:
    the precision policy of :mod:`qwen3_rerank_core._precision` (bfloat16 on CUDA where
    the GPU supports it; on CPU the checkpoint's bf16 where the CPU computes bf16
    natively; float32 otherwise)."""
    choice = choose_dtype(None, hardware_of(torch, device.type), saved=saved)
    return getattr(torch, choice.name)


def keep_final_norm_in_float32(decoder: Any) -> None:
    """Make the decoder's final RMSNorm return float32 (normalised and scaled in float32),
    so that in bf16/fp16 the score is computed from a float32 hidden state (Qwen3's own
    norm casts back to the weights' dtype). Float32 models compute the same as before."""
    norm = getattr(decoder, "norm", None)
    eps = getattr(norm, "variance_epsilon", None)
    if norm is None or eps is None:
        return
    import torch

    def forward(hidden: Any) -> Any:
        x = hidden.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return norm.weight.float() * x

    norm.forward = forward


@dataclass(frozen=True)
class ScoringHead:
    """The scoring head as data: rows applied to the last position's hidden state.

    Two rows ``[W["no"], W["yes"]]`` (an original ``Qwen3ForCausalLM``): the
    logit pair is (no, yes) and p(yes) = softmax(pair)[1]. One row (a seq-cls
    conversion's ``score.weight`` = W["yes"] - W["no"]): its logit ``s`` is
    ``logit_yes - logit_no``, so the pair is (0, s) and p(yes) = sigmoid(s).
    """

    weight: Any
    """``(2, hidden)`` or ``(1, hidden)`` float32 tensor."""
    bias: Any | None = None
    """``(rows,)`` float32 tensor or ``None``."""

    @classmethod
    def from_model(cls, model: Any, flavour: Flavour, encoder: PromptEncoder) -> ScoringHead:
        """The head of a loaded model: its yes/no output rows, or its one-label score."""
        if flavour.kind == "seq-cls":
            layer = model.score
            weight, bias = layer.weight.detach().float(), getattr(layer, "bias", None)
            return cls(weight.clone(), None if bias is None else bias.detach().float().clone())
        import torch

        layer = model.get_output_embeddings()
        rows = torch.tensor([encoder.no_id, encoder.yes_id], device=layer.weight.device)
        weight = layer.weight.detach().index_select(0, rows).float()
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias = bias.detach().index_select(0, rows).float()
        return cls(weight, bias)

    def pairs(self, hidden: Any) -> list[tuple[float, float]]:
        """(logit_no, logit_yes) of each row of last-position hidden states, computed in
        float32 whatever the model's dtype."""
        logits = hidden.float() @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        values: list[list[float]] = logits.float().cpu().tolist()
        if self.weight.shape[0] == 1:
            return [(0.0, row[0]) for row in values]
        return [(row[0], row[1]) for row in values]


class TransformersBackend(Backend):
    """Scores prompts in this process with either checkpoint flavour (see :class:`ScoringHead`)."""

    dtype_choice: DtypeChoice
    """The dtype the model runs in and why (the precision policy, :mod:`.._precision`)."""

    def __init__(
        self, config: RerankConfig, *, packed: bool | None = None, lean: bool | None = None
    ) -> None:
        """``packed``: pack batches into one row (varlen attention); ``None`` packs
        when the attention kernel is flash-attention (:data:`PACKED_ATTENTION`).
        Packing with SDPA or eager attention gives the same scores but computes a
        block-diagonal mask over the whole row (for tests, not for speed).

        ``lean``: score batches with :class:`LeanForward` (right-padded rows, the last layer
        on the last positions only); ``None`` uses it wherever it supports the model
        (:func:`lean_unsupported`), ``False`` runs the transformers forward (for tests).
        """
        torch, transformers = _import_torch_transformers()
        # Before anything runs threaded: the first forward's rotary table (cos, sin) is
        # otherwise at risk of a low-accuracy chunk (see ``_vml``).
        resolve_vml_dispatch()
        self._torch = torch
        self._config = config
        self.device = torch.device(config.device or default_device(torch))
        attn = config.attn_implementation or self._pick_attention()

        model_id = os.path.expanduser(config.model)
        tokenizer, model, self.flavour = self._load(transformers, model_id, attn)
        model.eval()
        model.to(self.device)
        self._tokenizer = tokenizer
        self._decoder = _decoder_of(model)
        keep_final_norm_in_float32(self._decoder)
        self._cache_arg = _cache_argument(self._decoder)
        self.encoder = PromptEncoder.from_hf_tokenizer(tokenizer, max_length=config.max_length)
        pad = tokenizer.pad_token_id
        self._pad_id: int = pad if pad is not None else tokenizer.eos_token_id
        self._head = ScoringHead.from_model(model, self.flavour, self.encoder)
        self.dtype = next(model.parameters()).dtype
        self._cache_cls = transformers.DynamicCache
        # Prefix reuse relies on the mask handling of SDPA/eager attention (a gap of
        # padding between the cached prefix and each document).
        self._packed = attn in PACKED_ATTENTION if packed is None else bool(packed)
        self._reuse_prefix = config.reuse_prefix and attn in ("sdpa", "eager") and not self._packed
        self._lean = self._lean_forward(attn, lean)
        self._lock = threading.Lock()
        self._chunk_docs = CHUNK_DOCS
        self._chunk_chars = CHUNK_CHARS
        # The lean forward keeps its residual stream and norms in float32 whatever the
        # weights' dtype: the activations that must stay in cache are float32-sized.
        self._max_batch_tokens = config.max_batch_tokens or default_batch_tokens(
            self.device.type, model.config, dtype_bytes=4
        )
        logger.info(
            "loaded %s (%s) on %s (%s: %s; attention=%s, %s)",
            config.model,
            self.flavour.architecture,
            self.device,
            self.dtype_choice.name,
            self.dtype_choice.reason,
            attn,
            self._forward_name(),
        )

    def _forward_name(self) -> str:
        """How batches are run, for the load log."""
        if self._packed:
            return "packed rows"
        if self._lean is None:
            return "left-padded batches"
        weights = "oneDNN packed weights" if self._lean.packed else "dense weights"
        if self._lean.cpu_products:
            weights = "bf16 products on our CPU kernel (float32 results)"
        compiled = ", compiled (torch.compile, at the first calls)" if self._lean.compiled else ""
        kernel = ", attention on our CPU kernel" if self._lean.cpu_kernel else ""
        steps = ", element-wise steps in C" if self._lean.cpu_steps else ""
        return f"lean forward, {weights}{kernel}{steps}{compiled}"

    def _lean_forward(self, attn: str, wanted: bool | None) -> LeanForward | None:
        """The lean forward where it is wanted and supports the model, else ``None`` (and
        a warning where ``compile=True`` is thereby dropped: it compiles the lean forward)."""
        reason: str | None
        if self._packed:
            reason = f"batches run as packed rows (attention {attn!r})"
        elif wanted is False:
            reason = "lean=False"
        else:
            reason = lean_unsupported(self._decoder, attn)
            if reason is None:
                return LeanForward(self._decoder, compile=self._compile_wanted())
            if wanted:
                raise ValueError(f"lean=True, but the lean forward cannot run this model: {reason}")
        logger.info("transformers forward, not the lean one: %s", reason)
        if self._config.compile:
            logger.warning("compile=True is not applied: it compiles the lean forward (%s)", reason)
        return None

    def _compile_wanted(self) -> bool:
        """``config.compile``, unless this CPU has no C++ compiler for TorchInductor (then
        a warning, and the layers run eagerly)."""
        if not self._config.compile or self.device.type != "cpu":
            return self._config.compile
        missing = missing_cpp_compiler()
        if missing:
            logger.warning("compile=True is not applied: %s", missing)
        return not missing

    def _pick_attention(self) -> str:
        if self.device.type == "cuda":
            try:
                import flash_attn  # noqa: F401
            except ImportError:
                return "sdpa"
            return "flash_attention_2"
        return "sdpa"

    def _load(self, transformers: Any, model_id: str, attn: str) -> tuple[Any, Any, Flavour]:
        """Config, tokenizer and weights, each checked before the next is read."""
        cfg = self._config
        if looks_like_path(model_id) and not os.path.isdir(model_id):
            raise ModelLoadError(
                f"model folder {cfg.model!r} does not exist; model= takes a local folder "
                "with config.json, the weights and the tokenizer files, or a hub id such as "
                "'Qwen/Qwen3-Reranker-0.6B'"
            )
        hub = {"local_files_only": cfg.local_files_only}
        with _load_errors(cfg.model):
            config = transformers.AutoConfig.from_pretrained(model_id, **hub)
            flavour = flavour_from_config(config.to_dict(), model=cfg.model)
            check_max_length(cfg.max_length, config.to_dict(), model=cfg.model)
            self.dtype_choice = choose_dtype(
                cfg.dtype,
                hardware_of(self._torch, self.device.type),
                saved=checkpoint_dtype(config.to_dict()),
            )
            dtype = getattr(self._torch, self.dtype_choice.name)
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                model_id, padding_side="left", **hub
            )
            check_tokenizer(tokenizer, model=cfg.model)
            model = self._load_weights(transformers, model_id, flavour, dtype, attn)
        return tokenizer, model, flavour

    def _load_weights(
        self, transformers: Any, model_id: str, flavour: Flavour, dtype: Any, attn: str
    ) -> Any:
        """The model of ``flavour``; refused when the load had to initialise any weight."""
        auto = (
            transformers.AutoModelForCausalLM
            if flavour.kind == "causal-lm"
            else transformers.AutoModelForSequenceClassification
        )
        model, info = auto.from_pretrained(
            model_id,
            local_files_only=self._config.local_files_only,
            attn_implementation=attn,
            output_loading_info=True,
            dtype=dtype,  # ``torch_dtype`` is deprecated since transformers 4.56, our oldest
        )
        missing = set(info.get("missing_keys") or ())
        missing.update(str(k[0]) for k in info.get("mismatched_keys") or ())
        refuse_missing(self._config.model, flavour, missing, info.get("unexpected_keys") or ())
        if info.get("unexpected_keys"):
            logger.warning(
                "%s: weights in the checkpoint that a %s does not use: %s",
                self._config.model,
                flavour.architecture,
                ", ".join(sorted(info["unexpected_keys"])),
            )
        return model

    # ---------------------------------------------------------------- scoring
    def caller_setup(self) -> Callable[[], None]:
        """The calling thread's torch thread count, to set in the thread that scores.

        torch keeps the count per thread (a thread takes the process's count when it
        first runs a parallel op, and keeps it): without this, an async call, run on a
        worker thread, would keep the count of that thread's first op and not follow a
        later ``torch.set_num_threads`` by the caller.
        """
        torch = self._torch
        threads = int(torch.get_num_threads())

        def set_threads() -> None:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

        return set_threads

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        out: list[list[float]] = [[0.0] * len(docs) for _, docs in groups]
        # Each distinct document of a group is scored once, so identical documents
        # score equal even when they would fall into different chunks.
        firsts: list[dict[str, int]] = []
        for _, docs in groups:
            first: dict[str, int] = {}
            for i, doc in enumerate(docs):
                first.setdefault(doc, i)
            firsts.append(first)
        with (
            self._lock,
            progress_bar(sum(map(len, out)), show_progress, desc="Reranking") as advance,
        ):
            for chunk in self._chunks(groups, firsts):
                encoded = [
                    self.encoder.encode_group(
                        instruction, groups[gi][0], [groups[gi][1][i] for i in idx]
                    )
                    for gi, idx in chunk
                ]
                counters_of(self).add_prompts(
                    [len(g.shared) + len(t) for g in encoded for t in g.tails],
                    self.encoder.max_length,
                )
                scores = self._score_encoded(encoded, advance)
                del encoded
                for (gi, idx), values in zip(chunk, scores, strict=True):
                    row = out[gi]
                    for i, value in zip(idx, values, strict=True):
                        row[i] = value
            copies = 0
            for (_, docs), first, row in zip(groups, firsts, out, strict=True):
                if len(first) < len(docs):
                    for i, doc in enumerate(docs):
                        j = first[doc]
                        if j != i:
                            row[i] = row[j]
                            copies += 1
            advance(copies)
        return out

    def _chunks(
        self, groups: Sequence[Group], firsts: list[dict[str, int]]
    ) -> Iterator[list[_Piece]]:
        """The distinct documents of every group, cut into chunks of bounded size.

        A chunk holds at most ``CHUNK_DOCS`` documents and, unless one document
        alone is longer, ``CHUNK_CHARS`` characters; a group may span chunks.
        """
        max_docs, max_chars = self._chunk_docs, self._chunk_chars
        chunk: list[_Piece] = []
        n_docs = n_chars = 0
        for gi, first in enumerate(firsts):
            docs = groups[gi][1]
            idx: list[int] = []
            for i in first.values():
                size = len(docs[i])
                if n_docs and (n_docs >= max_docs or n_chars + size > max_chars):
                    if idx:
                        chunk.append((gi, idx))
                    yield chunk
                    chunk, idx, n_docs, n_chars = [], [], 0, 0
                idx.append(i)
                n_docs += 1
                n_chars += size
            if idx:
                chunk.append((gi, idx))
        if chunk:
            yield chunk

    def _score_encoded(
        self, groups: list[EncodedGroup], advance: Callable[[int], object]
    ) -> list[list[float]]:
        """Scores per group. Identical prompts are computed once (and so score equal).

        A group with several distinct documents runs its shared prefix (system
        prompt, instruction, query) once and reuses its key/value cache for every
        document; the other prompts are batched together across groups.
        """
        out: list[list[float]] = []
        flat: list[list[int]] = []  # full prompts scored without prefix reuse
        flat_slot: dict[tuple[int, ...], int] = {}
        pending: list[tuple[int, list[int]]] = []  # (group index, slots in flat)
        for gi, group in enumerate(groups):
            slot: dict[tuple[int, ...], int] = {}
            unique: list[list[int]] = []
            where = []
            for tail in group.tails:
                key = tuple(tail)
                if key not in slot:
                    slot[key] = len(unique)
                    unique.append(tail)
                where.append(slot[key])
            if self._reuse_prefix and len(unique) > 1:
                scores = self._score_with_prefix(group.shared, unique, advance)
                out.append([scores[k] for k in where])
                continue
            slots = []
            for tail in unique:
                full = group.shared + tail
                key = tuple(full)
                if key not in flat_slot:
                    flat_slot[key] = len(flat)
                    flat.append(full)
                slots.append(flat_slot[key])
            out.append([])
            pending.append((gi, [slots[k] for k in where]))
        if flat:
            flat_scores = self._score_prompts(flat, advance)
            for gi, slots in pending:
                out[gi] = [flat_scores[k] for k in slots]
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        return plan_batches(
            lengths,
            max_batch_tokens=self._max_batch_tokens,
            max_batch_size=self._config.max_batch_size,
        )

    def _score_prompts(
        self, prompts: list[list[int]], advance: Callable[[int], object]
    ) -> list[float]:
        """Scores of full prompts, in input order."""
        lengths = [len(p) for p in prompts]
        if self._packed:
            plan = plan_packs(
                lengths,
                max_batch_tokens=self._max_batch_tokens,
                max_batch_size=self._config.max_batch_size,
            )
        else:
            plan = self._batches(lengths)
        counters_of(self).add(forward_passes=len(plan))
        score_batch = (
            self._packed_last_logits
            if self._packed
            else self._lean_last_logits
            if self._lean is not None
            else self._last_logits
        )
        return self._scores_of(plan, prompts, score_batch, advance)

    @staticmethod
    def _scores_of(
        plan: list[list[int]],
        rows: list[list[int]],
        score_batch: Callable[[list[list[int]]], list[tuple[float, float]]],
        advance: Callable[[int], object],
    ) -> list[float]:
        """p(yes) of each of ``rows``, in their order: the batches of ``plan`` (lists of
        row indices) scored by ``score_batch``."""
        scores = [0.0] * len(rows)
        for batch in plan:
            logits = score_batch([rows[i] for i in batch])
            for i, (logit_no, logit_yes) in zip(batch, logits, strict=True):
                scores[i] = p_yes(logit_no, logit_yes)
            advance(len(batch))
        return scores

    def _score_with_prefix(
        self, shared: list[int], tails: list[list[int]], advance: Callable[[int], object]
    ) -> list[float]:
        """Scores of ``shared + tail`` for each tail, computing ``shared`` once."""
        # The budget counts the prefix too: each row attends over prefix + tail.
        plan = self._batches([len(shared) + len(t) for t in tails])
        counters_of(self).add(forward_passes=len(plan) + 1)  # the batches and the prefix run
        return self._scores_of(plan, tails, self._prefixed(shared), advance)

    def _prefixed(
        self, shared: list[int]
    ) -> Callable[[list[list[int]]], list[tuple[float, float]]]:
        """Run ``shared`` once; the returned function scores rows that continue it."""
        if self._lean is not None:
            prefix = self._lean.prefix(shared)
            return lambda rows: self._lean_last_logits(rows, prefix)
        torch = self._torch
        with torch.inference_mode():
            out = self._decoder(
                input_ids=torch.tensor([shared], dtype=torch.long, device=self.device),
                use_cache=True,
            )
            prefix_kv = _cache_tensors(_output_cache(out))

        def score_rows(rows: list[list[int]]) -> list[tuple[float, float]]:
            cache = _make_cache(
                self._cache_cls,
                [
                    (k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1))
                    for k, v in prefix_kv
                ],
            )
            return self._last_logits(rows, past=(len(shared), cache))

        return score_rows

    def _last_logits(
        self, prompts: list[list[int]], past: tuple[int, Any] | None = None
    ) -> list[tuple[float, float]]:
        """(logit_no, logit_yes) at the last position of each prompt (left-padded batch).

        With ``past=(n, cache)``, the prompts continue a cached prefix of ``n`` tokens.
        """
        torch = self._torch
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
        # Positions count real tokens only, so a padded prompt is computed as if alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {"use_cache": False}
        if past is not None:
            n_past, cache = past
            positions = positions + n_past
            mask = torch.cat([torch.ones((len(prompts), n_past), dtype=torch.long), mask], dim=1)
            kwargs = {"use_cache": True, self._cache_arg: cache}
        with torch.inference_mode():
            out = self._decoder(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                **kwargs,
            )
            return self._yes_no(out.last_hidden_state[:, -1, :])

    def _lean_last_logits(
        self, rows: list[list[int]], prefix: Prefix | None = None
    ) -> list[tuple[float, float]]:
        """(logit_no, logit_yes) at the end of each row, on :class:`LeanForward`; with
        ``prefix``, the rows continue it."""
        if self._lean is None:
            raise AssertionError("the lean forward is not loaded")
        return self._yes_no(self._lean.last_hidden(rows, prefix, pad_id=self._pad_id))

    def _packed_last_logits(self, prompts: list[list[int]]) -> list[tuple[float, float]]:
        """(logit_no, logit_yes) at the end of each prompt, all packed into one row.

        Position ids restart at 0 for each prompt and there is no attention mask:
        transformers reads that as packed sequences (varlen flash-attention; a
        block-diagonal causal mask for SDPA/eager), so each prompt is computed
        as if alone.
        """
        torch = self._torch
        ids = torch.tensor([[t for p in prompts for t in p]], dtype=torch.long)
        positions = torch.cat([torch.arange(len(p), dtype=torch.long) for p in prompts])[None]
        ends = torch.tensor([len(p) for p in prompts], dtype=torch.long).cumsum(0) - 1
        with torch.inference_mode():
            out = self._decoder(
                input_ids=ids.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=False,
            )
            return self._yes_no(out.last_hidden_state[0].index_select(0, ends.to(self.device)))

    def _yes_no(self, hidden: Any) -> list[tuple[float, float]]:
        """(logit_no, logit_yes) of each row of last-position hidden states."""
        return self._head.pairs(hidden)

    def close(self) -> None:
        for name in ("_decoder", "_head", "_lean"):
            if hasattr(self, name):
                delattr(self, name)
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
