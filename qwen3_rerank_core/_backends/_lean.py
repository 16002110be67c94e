"""The scoring forward pass of a Qwen3 decoder, computing only what a score needs.

A score reads one hidden state: the last position's, after the last layer. The
generic transformers forward computes every position of every layer and builds
a 4-D mask per batch. :class:`LeanForward` runs the same modules' weights with
the same arithmetic (RMSNorm in float32, rotary embedding from the model's own
``rotary_emb``, scaled-dot-product attention), but:

- **the last layer runs its attention query, output projection and MLP on the
  last position of each prompt only** (every position still gets its key and
  value): one layer in ``num_hidden_layers`` is nearly free;
- the shared prefix (system prompt, instruction, query) is run once and only its
  keys and values are kept (its last layer computes keys and values alone);
- prompts are right-padded, so every row of a batch shares its positions and one
  ``(tail, prefix + tail)`` causal mask, and padding never reaches a real token; on
  CPU, where the padding is at least ``RAGGED_MIN_PADDING`` of a batch, the products,
  norms and residual adds run on the real tokens alone (:class:`_Ragged`), and so does
  attention on our CPU kernel (SDPA runs on the padded layout);
- the query/key/value projections and the MLP's gate/up projections are fused into
  one matrix product each;
- with packed weights, the SiLU and the gated product run in the MLP products'
  epilogues; the per-head q/k norm and the rotary embedding are one float32 pass, the
  norm's weight folded into the rotary tables;
- in bf16 where our CPU kernels run (:mod:`._cpu_elementwise`), each element-wise step
  is one pass in C: the norms (the post-attention one with the residual add before it),
  the residual adds, the q/k norm with the rotary embedding; elsewhere, with packed
  weights, the input and post-attention norms' weights are folded into the projections
  that read them (one pass less in torch, for one more rounding of those weights);
- in bf16 where those C steps run (an AVX-512 BF16 CPU without AMX, eager), the
  products run on our own kernel (:mod:`._cpu_linear`) with float32 results: the
  query/key/value output normalised and rotated before any rounding, the output and
  down projections added straight into the float32 residual stream, the MLP's gated
  product rounded once; oneDNN's products round each output to bf16;
- with ``compile=True``, each layer of the scored rows runs under ``torch.compile``
  (:func:`~._lean_ops.compiled`): TorchInductor fuses the element-wise work, the products
  and attention staying opaque operators;
- on CPU, every other projection runs on oneDNN with its weight packed once at load
  (:func:`onednn_available`; 1.08-1.59x the FLOP/s of the default BLAS on the
  shapes measured in ``docs/benchmarks.md`` on an AVX-512 CPU), except in float32 on
  an x86 CPU without AVX-512, where the default BLAS was faster (:func:`onednn_preferred`).
  The packed copies replace the modules' weights, which are released, so no weight is
  stored twice; the transformers modules are then empty. Elsewhere (the default BLAS on
  CPU, CUDA, MPS, a torch without oneDNN) the modules' weights become views of the fused
  matrices and keep working.

Scores equal the transformers forward's up to float rounding (tested to 1e-5 in
float32). Decoders this module does not cover (sliding-window layers, quantized
or adapter-wrapped projections, an attention kernel other than SDPA) are scored
by the transformers forward instead: :func:`lean_unsupported` says why.

Example (a tiny random checkpoint, as the tests build)::

    >>> from qwen3_rerank_core.testing import cached_checkpoint
    >>> from transformers import AutoModelForCausalLM
    >>> model = AutoModelForCausalLM.from_pretrained(str(cached_checkpoint()))
    >>> lean = LeanForward(model.model)
    >>> prefix = lean.prefix([1, 2, 3])
    >>> tuple(lean.last_hidden([[4, 5], [6]], prefix, pad_id=0).shape)
    (2, 64)
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._precision import cpu_capability
from ._cpu_attention import cpu_attention
from ._cpu_elementwise import CpuElementwise, cpu_elementwise
from ._cpu_linear import SWIGLU, CpuLinear, PackedWeight, cpu_linear
from ._lean_ops import attend, attend_ragged, compiled, packed_linear, swiglu

__all__ = [
    "ATTENTION_CHUNK",
    "ATTENTION_CHUNK_BF16",
    "LeanForward",
    "Prefix",
    "lean_unsupported",
    "onednn_available",
    "onednn_preferred",
]

_FUSED = ("q_proj", "k_proj", "v_proj")
_MLP_FUSED = ("gate_proj", "up_proj")


def _detached(bias: Any | None) -> Any | None:
    return None if bias is None else bias.detach()


def lean_unsupported(decoder: Any, attn_implementation: str) -> str | None:
    """Why :class:`LeanForward` cannot run ``decoder``, or ``None`` when it can."""
    import torch

    if attn_implementation != "sdpa":
        return f"attention kernel {attn_implementation!r} (the lean forward uses SDPA)"
    for name in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(decoder, name):
            return f"the decoder has no {name!r}"
    for i, layer in enumerate(decoder.layers):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if attn is None or mlp is None:
            return f"layer {i} is not a Qwen3 decoder layer"
        if getattr(attn, "sliding_window", None):
            return f"layer {i} uses sliding-window attention"
        linears = [getattr(attn, n, None) for n in (*_FUSED, "o_proj")]
        linears += [getattr(mlp, n, None) for n in (*_MLP_FUSED, "down_proj")]
        if any(type(m) is not torch.nn.Linear for m in linears):
            return f"layer {i} has projections that are not plain torch.nn.Linear"
        norms = [attn.q_norm, attn.k_norm, layer.input_layernorm, layer.post_attention_layernorm]
        if any(not hasattr(n, "variance_epsilon") for n in norms):
            return f"layer {i} has norms that are not Qwen3 RMSNorm"
    return None


@dataclass(frozen=True)
class Prefix:
    """Keys and values of a shared prefix, one ``(key, value)`` pair per layer, each
    ``(1, kv_heads, length, head_dim)``, after the rotary embedding."""

    length: int
    kv: list[tuple[Any, Any]]


#: Query rows per attention call on CPU: causal attention in chunks skips the keys
#: that no row of a chunk can see (the CPU kernel computes whole blocks of a few
#: hundred keys). Measured in ``docs/benchmarks.md``. Other devices run one call.
ATTENTION_CHUNK = 128
#: The same in bfloat16: the kernel's bf16 path computes 64-row query blocks from
#: 192 rows up (32 below), which outweighs the keys a smaller chunk skips
#: (``8x512``: 9% faster than 128 rows on ~300-token documents, 8% on ~8k tokens).
ATTENTION_CHUNK_BF16 = 256
#: Padding share of a CPU batch from which its rows run without their padding
#: (:class:`_Ragged`): below it, the copies into and out of attention's padded layout cost
#: about what the padding saves (``benchmarks/ragged_ab.py``, 2026-12-06: 1.08-1.13x on
#: batches 20-31 % padding, 0.98-0.99x on 3-13 %).
RAGGED_MIN_PADDING = 0.15


@dataclass(frozen=True)
class _Ragged:
    """The real tokens of a batch of right-padded rows (``(batch, width)``), one row after
    another: ``(1, tokens, ...)``. The products, norms and residual adds run on these only;
    attention runs on them too where our CPU kernel does (it takes ragged rows), else on
    the padded layout (SDPA takes rows of one width)."""

    index: Any
    """``(tokens,)``: each real token's place in the flattened ``(batch * width)`` grid."""
    start: Any
    """``(batch,)``: each row's first token, counted among ``tokens``."""
    length: Any
    """``(batch,)``: each row's token count."""
    batch: int
    width: int

    @property
    def last(self) -> Any:
        """``(batch,)``: each row's last token, counted among ``tokens``."""
        return self.start + self.length - 1

    def padded(self, t: Any) -> Any:
        """``(1, tokens, ...)`` -> ``(batch, width, ...)``, zeros at the padding (never
        read by a real token's query, but a finite value for the attention kernel)."""
        flat = t.new_zeros((self.batch * self.width, *t.shape[2:]))
        flat.index_copy_(0, self.index, t[0])
        return flat.view(self.batch, self.width, *t.shape[2:])

    def packed(self, t: Any) -> Any:
        """``(batch, width, ...)`` -> ``(1, tokens, ...)``."""
        flat = t.reshape(self.batch * self.width, *t.shape[2:])
        return flat.index_select(0, self.index)[None]


@dataclass(frozen=True)
class _Linear:
    """``x @ weight.T + bias``: a dense weight, or one packed for oneDNN."""

    weight: Any
    bias: Any | None
    packed: bool

    def __call__(self, x: Any) -> Any:
        import torch

        if not self.packed:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        if torch.compiler.is_compiling():
            return torch.ops.qwen3_rerank.linear(x, self.weight, self.bias)
        return packed_linear(x, self.weight, self.bias)


@dataclass(frozen=True)
class _SwiGLU:
    """``silu(x @ gate.T) * (x @ up.T)`` on oneDNN with packed weights, the SiLU and the
    product computed in the two products' epilogues (no pass of their own over the
    ``(tokens, intermediate)`` activations)."""

    gate: _Linear
    up: _Linear

    def __call__(self, x: Any) -> Any:
        import torch

        if torch.compiler.is_compiling():
            return torch.ops.qwen3_rerank.swiglu(
                x, self.gate.weight, self.gate.bias, self.up.weight, self.up.bias
            )
        return swiglu(x, self.gate.weight, self.gate.bias, self.up.weight, self.up.bias)


@dataclass(frozen=True)
class _Gated:
    """``act(x @ gate.T) * (x @ up.T)`` from one product whose columns are the gate's, then
    the up projection's: the activation computed in place in the gate's columns
    (``act=None``: SiLU) and the product out of place, so the next product gets a
    contiguous input. The unfused counterpart of :class:`_SwiGLU`."""

    product: _Linear
    act: Callable[[Any], Any] | None

    def __call__(self, x: Any) -> Any:
        import torch

        gate, up = self.product(x).chunk(2, dim=-1)
        if self.act is None:
            active = torch.nn.functional.silu(gate, inplace=True)
        else:
            active = self.act(gate)
        return torch.mul(active, up)


@dataclass(frozen=True)
class _Product:
    """``x @ weight.T + bias`` on our CPU kernel (:mod:`._cpu_linear`): float32 results,
    added straight into the residual stream by :meth:`into`; with a :data:`SWIGLU` weight,
    the MLP's gated product in bf16."""

    weight: PackedWeight
    kernel: CpuLinear

    @property
    def packed(self) -> bool:
        """Always: the weight is packed (for our kernel)."""
        return True

    def __call__(self, x: Any) -> Any:
        return self._checked(self.kernel(x, self.weight), x)

    def into(self, x: Any, stream: Any) -> bool:
        """``stream += x @ weight.T + bias``, in place; ``False`` where the kernel does not
        add into ``stream`` (not a contiguous float32 tensor of the result's shape)."""
        return self.kernel(x, self.weight, into=stream) is not None

    def _checked(self, out: Any | None, x: Any) -> Any:
        if out is None:  # the forward's own bf16 activations: a bug if refused
            raise RuntimeError(
                f"our CPU product kernel refused a {x.dtype} input of shape {tuple(x.shape)}"
            )
        return out


def swiglu_fusable(dtype: Any) -> bool:
    """Whether oneDNN computes :class:`_SwiGLU`'s fused epilogues in ``dtype`` (checked
    on a small product against the unfused arithmetic)."""
    import torch

    try:
        x, w = _probe_operands(dtype)
        reorder = torch.ops.mkldnn._reorder_linear_weight
        fused = _SwiGLU(_Linear(reorder(w), None, True), _Linear(reorder(w.flip(0)), None, True))
        want = torch.nn.functional.silu(x.float() @ w.float().T) * (x.float() @ w.flip(0).float().T)
        return bool(torch.allclose(fused(x).float(), want, atol=5e-2, rtol=2e-2))
    except (AttributeError, RuntimeError, TypeError):
        return False


@dataclass(frozen=True)
class _HeadNorm:
    """A per-head RMSNorm followed by the rotary embedding, with the norm's weight
    ``(heads, head_dim)`` in float32 and that weight with its halves swapped: the
    weight is folded into the rotary tables (:meth:`LeanForward._norm_rotate`)."""

    weight: Any
    swapped: Any
    eps: float


@dataclass(frozen=True)
class _Layer:
    """One decoder layer's modules and its projections."""

    module: Any
    qkv: _Linear | _Product | None
    """Fused query/key/value projection (every layer but the last)."""
    q: _Linear | _Product | None
    """Query projection alone (the last layer: its one position a row)."""
    kv: _Linear | _Product | None
    """Key/value projection alone (the last layer: every position)."""
    o: _Linear | _Product
    gate_up: _Gated | _SwiGLU | _Product
    """``act(gate(x)) * up(x)``: its two products in one (:class:`_Gated`), or the whole
    gated product fused (:class:`_SwiGLU`, or our kernel's :class:`_Product`)."""
    down: _Linear | _Product
    input_norm: Any | None
    """The input norm's weight in float32, or ``None`` where it is folded into the
    projections that read the norm's output (packed weights with the element-wise steps
    in torch: one pass over the hidden states less)."""
    post_norm: Any | None
    """The post-attention norm's weight, or ``None`` where it is folded (as ``input_norm``)."""
    q_heads: _HeadNorm
    """The query heads' norm."""
    k_heads: _HeadNorm
    """The key heads' norm."""
    qk_heads: _HeadNorm | None
    """Query and key heads normalised in one pass (``None`` when their epsilons differ)."""
    split: tuple[int, int, int]
    """Output sizes of the query, key and value projections."""


def _probe_operands(dtype: Any) -> tuple[Any, Any]:
    """A small input ``(2, 3, 4)`` and weight ``(5, 4)`` in ``dtype``, for the capability
    probes of the oneDNN operators."""
    import torch

    x = torch.linspace(-1, 1, 24, dtype=dtype).reshape(2, 3, 4)
    w = torch.linspace(1, -1, 20, dtype=dtype).reshape(5, 4)
    return x, w


def onednn_available(dtype: Any) -> bool:
    """Whether this torch runs packed oneDNN linear layers in ``dtype`` on CPU, checked
    on a small product (private ``torch.ops.mkldnn`` operators, as TorchInductor uses)."""
    import torch

    try:
        if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
            return False
        x, w = _probe_operands(dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(w)
        got = packed_linear(x, packed, None)
        return bool(torch.allclose(got, torch.nn.functional.linear(x, w), atol=1e-2))
    except (AttributeError, RuntimeError, TypeError):
        return False


def onednn_preferred(dtype: Any) -> bool:
    """Whether packed oneDNN products are this CPU's faster choice in ``dtype``: not in
    float32 on an x86 CPU whose best vector extension is AVX2, where oneDNN's packed
    products ran at 0.78-1.10x the default BLAS's (MKL) rate and whole calls were faster
    without them (``benchmarks/pack_ab.py``, ``docs/benchmarks.md``); elsewhere yes
    (float32 with AVX-512: packed 1.08-1.59x the BLAS rate; bf16: oneDNN's packed products
    are what run bf16 natively)."""
    import torch

    if dtype != torch.float32:
        return True
    return cpu_capability(torch) != "AVX2"


@dataclass(frozen=True)
class _Rope:
    """Rotary embedding of some positions, ``(1 or batch, positions, 1, head_dim)``:
    ``x * cos + swap_halves(x) * signed_sin`` rotates ``x``."""

    cos: Any
    signed_sin: Any

    def at(self, index: Any) -> _Rope:
        """The positions ``index`` (one a row): ``(rows, 1, 1, head_dim)``."""
        return _Rope(self.cos[0, index][:, None], self.signed_sin[0, index][:, None])


def _stack(modules: list[Any], torch: Any) -> tuple[Any, Any | None]:
    """The weights (and biases, zeros where a module has none) of ``modules`` stacked
    on the output dimension."""
    weight = torch.cat([m.weight.detach() for m in modules])
    if all(m.bias is None for m in modules):
        return weight, None
    bias = torch.cat(
        [
            m.bias.detach() if m.bias is not None else weight.new_zeros(m.out_features)
            for m in modules
        ]
    )
    return weight, bias


def _share(modules: list[Any], weight: Any, bias: Any | None, torch: Any) -> None:
    """Make each module's parameters views of the stacked ``weight`` and ``bias``."""
    start = 0
    for m in modules:
        stop = start + m.out_features
        m.weight = torch.nn.Parameter(weight[start:stop], requires_grad=False)
        if m.bias is not None and bias is not None:
            m.bias = torch.nn.Parameter(bias[start:stop], requires_grad=False)
        start = stop


def _fold(weight: Any, norm_weight: Any) -> Any:
    """``weight`` (``(out, in)``) with the columns scaled by ``norm_weight`` (``(in,)``,
    float32), computed in float32 and rounded once to ``weight``'s dtype."""
    return (weight.float() * norm_weight).to(weight.dtype)


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them: without this, the released
    weights of a 0.6B model stayed resident, ~2 GB). A no-op where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...)
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _release(modules: list[Any], torch: Any) -> None:
    """Drop the modules' parameters (their packed copies replace them)."""
    for m in modules:
        m.weight = torch.nn.Parameter(m.weight.new_empty(0), requires_grad=False)
        if m.bias is not None:
            m.bias = torch.nn.Parameter(m.bias.new_empty(0), requires_grad=False)


class LeanForward:
    """Last-position hidden states of a Qwen3 decoder (see the module docstring)."""

    def __init__(self, decoder: Any, *, pack: bool | None = None, compile: bool = False) -> None:
        """``pack``: run the projections on oneDNN with packed weights; ``None`` packs on
        CPU where :func:`onednn_preferred` and :func:`onednn_available`. ``compile``: run
        each layer under ``torch.compile`` (TorchInductor fuses the element-wise work
        between the products; the first calls compile, see :attr:`compiled`)."""
        import torch

        self._torch: Any = torch
        self._decoder = decoder
        config = decoder.config
        self._heads = int(config.num_attention_heads)
        self._kv_heads = int(config.num_key_value_heads)
        self._head_dim = int(
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self._silu = getattr(config, "hidden_act", None) in ("silu", "swish")
        weight = decoder.embed_tokens.weight
        self._dtype = weight.dtype
        if pack is None:
            # The preference first: where it says no, the probe of onednn_available is moot.
            pack = (
                weight.device.type == "cpu"
                and onednn_preferred(weight.dtype)
                and onednn_available(weight.dtype)
            )
        self.packed = bool(pack)
        # SiLU and the gated product fused into the packed products where oneDNN can.
        self._swiglu = self.packed and self._silu and swiglu_fusable(weight.dtype)
        self._chunk = self._attention_chunk(weight.device)
        on_cpu = weight.device.type == "cpu"
        bf16_cpu = on_cpu and weight.dtype == torch.bfloat16
        self.cpu_kernel = on_cpu and cpu_attention(weight.dtype) is not None
        """Whether attention runs on our CPU kernel of this dtype (bf16 on AVX-512 BF16,
        float32 on AVX2: where :func:`~._cpu_attention.cpu_attention` applies), else on
        torch's SDPA."""
        self._steps: CpuElementwise | None = cpu_elementwise() if bf16_cpu else None
        """The element-wise steps in C, in bf16 on a CPU where our kernels' library runs
        (:func:`~._cpu_elementwise.cpu_elementwise`; eager only: compiled, the compiler
        fuses them)."""
        self._products: CpuLinear | None = None
        if self.packed and self._steps is not None and self._silu and not compile:
            self._products = cpu_linear()
        self.cpu_products = self._products is not None
        """Whether the bf16 products run on our CPU kernel, with float32 results
        (:func:`~._cpu_linear.cpu_linear`; eager, packed, SiLU MLP, where the C steps run),
        else on oneDNN (or torch's dense products)."""
        n_layers = len(decoder.layers)
        self._layers = [
            self._prepare(layer, last=i == n_layers - 1) for i, layer in enumerate(decoder.layers)
        ]
        self.compiled = bool(compile)
        """Whether the layers run under ``torch.compile`` (``dynamic=True``: one graph
        for every batch shape, compiled at the first calls)."""
        self._run_layer: Any = compiled(self._layer) if self.compiled else self._layer

    @property
    def cpu_steps(self) -> bool:
        """Whether the element-wise steps run in C (:mod:`._cpu_elementwise`)."""
        return self._steps is not None

    def _projection(self, weight: Any, bias: Any | None) -> _Linear | _Product:
        """A projection on our product kernel where it runs, else :meth:`_linear`."""
        if self._products is not None:
            return _Product(self._products.pack(weight, bias), self._products)
        return self._linear(weight, bias)

    def _linear(self, weight: Any, bias: Any | None) -> _Linear:
        if not self.packed:
            return _Linear(weight, bias, False)
        packed = self._torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())
        return _Linear(packed, None if bias is None else bias.contiguous(), True)

    def _prepare(self, layer: Any, *, last: bool) -> _Layer:
        """The projections of ``layer``: fused query/key/value for all but the last
        layer, separate query and key/value for the last one (:meth:`_layer`). With
        packed weights and the element-wise steps in torch, the input and post-attention
        norms' weights are folded into the projections that read them (``W @ (w * x) =
        (W * w) @ x``); the C steps apply them in the norm's own pass, unrounded."""
        torch = self._torch
        attn, mlp = layer.self_attn, layer.mlp
        qkv_modules = [getattr(attn, n) for n in _FUSED]
        gate_up_modules = [getattr(mlp, n) for n in _MLP_FUSED]
        split = (
            qkv_modules[0].out_features,
            qkv_modules[1].out_features,
            qkv_modules[2].out_features,
        )
        nq = split[0]
        qkv_w, qkv_b = _stack(qkv_modules, torch)
        gate_up_w, gate_up_b = _stack(gate_up_modules, torch)
        input_norm = layer.input_layernorm.weight.detach().float()
        post_norm = layer.post_attention_layernorm.weight.detach().float()
        if self.packed and self._steps is None:
            qkv_w, gate_up_w = _fold(qkv_w, input_norm), _fold(gate_up_w, post_norm)
            input_norm = post_norm = None
        linear, projection = self._linear, self._projection
        qkv = q = kv = None
        if last:
            q = projection(qkv_w[:nq], None if qkv_b is None else qkv_b[:nq])
            kv = projection(qkv_w[nq:], None if qkv_b is None else qkv_b[nq:])
        else:
            qkv = projection(qkv_w, qkv_b)
        o = projection(attn.o_proj.weight.detach(), _detached(attn.o_proj.bias))
        gate_up: _Gated | _SwiGLU | _Product
        if self._products is not None:
            packed = self._products.pack(gate_up_w, gate_up_b, mode=SWIGLU)
            gate_up = _Product(packed, self._products)
        elif self._swiglu:
            n = gate_up_modules[0].out_features
            gate_up = _SwiGLU(
                linear(gate_up_w[:n], None if gate_up_b is None else gate_up_b[:n]),
                linear(gate_up_w[n:], None if gate_up_b is None else gate_up_b[n:]),
            )
        else:
            gate_up = _Gated(linear(gate_up_w, gate_up_b), None if self._silu else mlp.act_fn)
        down = projection(mlp.down_proj.weight.detach(), _detached(mlp.down_proj.bias))
        if self.packed:
            _release([*qkv_modules, attn.o_proj, *gate_up_modules, mlp.down_proj], torch)
            del qkv_w, qkv_b, gate_up_w, gate_up_b
            _trim_heap()
        else:
            _share(qkv_modules, qkv_w, qkv_b, torch)
            _share(gate_up_modules, gate_up_w, gate_up_b, torch)
        q_heads = self._head_norm(attn.q_norm, self._heads)
        k_heads = self._head_norm(attn.k_norm, self._kv_heads)
        qk_heads = None
        if q_heads.eps == k_heads.eps:
            qk_heads = _HeadNorm(
                torch.cat([q_heads.weight, k_heads.weight]),
                torch.cat([q_heads.swapped, k_heads.swapped]),
                q_heads.eps,
            )
        return _Layer(
            layer,
            qkv,
            q,
            kv,
            o,
            gate_up,
            down,
            input_norm,
            post_norm,
            q_heads,
            k_heads,
            qk_heads,
            split,
        )

    def _head_norm(self, norm: Any, heads: int) -> _HeadNorm:
        weight = norm.weight.detach().float().expand(heads, -1).contiguous()
        half = weight.shape[-1] // 2
        swapped = self._torch.cat((weight[:, half:], weight[:, :half]), dim=-1)
        return _HeadNorm(weight, swapped, float(norm.variance_epsilon))

    # ------------------------------------------------------------------ steps
    def _inverse_rms(self, x: Any, eps: float) -> Any:
        """``1 / rms(x)`` over the last dimension, in float32, with a kept last dimension."""
        torch = self._torch
        if torch.compiler.is_compiling():  # the plain formula: the compiler fuses it
            return torch.rsqrt(x.float().square().mean(-1, keepdim=True) + eps)
        # One pass over ``x`` (square-then-mean is two; 3.7x slower measured on 1600 x 512).
        norm = torch.linalg.vector_norm(x.float(), dim=-1, keepdim=True)
        return norm.square_().div_(x.shape[-1]).add_(eps).rsqrt_()

    def _norm(self, x: Any, weight: Any | None, eps: float) -> Any:
        """Qwen3 RMSNorm of the float32 residual stream ``x``, computed in float32 and
        returned in the weights' dtype (the input of the next projection). ``weight=None``:
        the weight is folded into that projection (:func:`_fold`)."""
        return self._add_norm(x, None, weight, eps)[1]

    def _add_norm(self, x: Any, delta: Any | None, weight: Any | None, eps: float) -> Any:
        """``x + delta`` (:meth:`_add`; ``delta=None``: ``x``) and its
        :meth:`_norm`, as ``(sum, normed)``; one pass in C where :attr:`_steps` runs."""
        torch = self._torch
        steps = None if torch.compiler.is_compiling() else self._steps
        if steps is not None:
            normed = steps.add_rms_norm(x, delta, weight, eps)
            if normed is not None:
                return x, normed
        if delta is not None:
            x = self._add(x, delta)
        scale = self._inverse_rms(x, eps)
        if torch.compiler.is_compiling():
            return x, (x * scale if weight is None else x * scale * weight).to(self._dtype)
        if weight is None:
            return x, torch.mul(x, scale, out=x.new_empty(x.shape, dtype=self._dtype))
        return x, (x * scale).mul_(weight).to(self._dtype)

    def _final_norm(self, x: Any) -> Any:
        """The decoder's final norm, kept in float32: the score is computed from a float32
        hidden state whatever the weights' dtype."""
        norm = self._decoder.norm
        x = x.float()
        return (x * self._inverse_rms(x, norm.variance_epsilon)).mul_(norm.weight.float())

    def _residual_add(self, x: Any, delta: Any) -> Any:
        """The residual add after the MLP (:meth:`_add`; a step of its own for the
        profile's timers, which :meth:`_add_norm` does not nest)."""
        return self._add(x, delta)

    def _add(self, x: Any, delta: Any) -> Any:
        """``x + delta``, in place when eager: the residual stream is this forward's own
        tensor, and a new one a step costs fresh pages. Compiled, out of place: the
        compiler fuses the sum into the next step, where mutating the layer's input
        would cost a copy back into it."""
        if self._torch.compiler.is_compiling():
            return x + delta
        if self._steps is not None and self._steps.add(x, delta) is not None:
            return x
        # ``delta`` widened first: an in-place add of a bfloat16 tensor to a float32 one
        # takes the slow mixed-dtype path (2.1x slower than widen-then-add, measured).
        return x.add_(delta.to(x.dtype))

    def _split_heads(self, x: Any, heads: int) -> Any:
        return x.view(x.shape[0], x.shape[1], heads, self._head_dim)

    def _norm_rotate(self, x: Any, norm: _HeadNorm, rope: _Rope) -> Any:
        """Per-head RMSNorm, then the rotary embedding, of ``x``
        (``(batch, positions, heads, head_dim)``), in float32 with one rounding to the
        weights' dtype at the end (Qwen3's own code rounds after each step).

        With ``n = x / rms(x)`` and ``rot(z) = z * cos + swap_halves(z) * signed_sin``:
        ``rot(n * w) = (x * (w * cos) + swap_halves(x) * (swap_halves(w) * signed_sin))
        / rms(x)``, so the weight ``w`` joins the (small) rotary tables and ``x`` is read
        by three passes, not the nine of norm, weight and rotation one after the other.
        Compiled, the same formula in plain ops (one fused pass)."""
        torch = self._torch
        if self._steps is not None and not torch.compiler.is_compiling():
            out = self._steps.norm_rotate(
                x, norm.weight, norm.swapped, rope.cos, rope.signed_sin, norm.eps
            )
            if out is not None:
                return out
        x = x.float()
        scale = self._inverse_rms(x, norm.eps)
        cos = rope.cos * norm.weight
        sin = rope.signed_sin * norm.swapped
        half = x.shape[-1] // 2
        if torch.compiler.is_compiling():
            swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
            return ((x * cos + swapped * sin) * scale).to(self._dtype)
        out = x * cos
        out[..., :half].addcmul_(x[..., half:], sin[..., :half])
        out[..., half:].addcmul_(x[..., :half], sin[..., half:])
        # Scaled in place, then rounded: a product written straight into a bfloat16
        # ``out=`` takes the kernel's slow mixed-dtype path (2.3x slower measured).
        return out.mul_(scale).to(self._dtype)

    def _queries_keys(self, layer: _Layer, qk: Any, rope: _Rope) -> tuple[Any, Any]:
        """Per-head normalised and rotated queries and keys of ``qk`` (the query and key
        columns of the fused projection), each ``(batch, positions, heads, head_dim)``;
        normalised and rotated in one pass where the two norms share their epsilon."""
        if layer.qk_heads is None:
            q, k = qk.split(layer.split[:2], dim=-1)
            return (
                self._norm_rotate(self._split_heads(q, self._heads), layer.q_heads, rope),
                self._norm_rotate(self._split_heads(k, self._kv_heads), layer.k_heads, rope),
            )
        both = self._split_heads(qk, self._heads + self._kv_heads)
        both = self._norm_rotate(both, layer.qk_heads, rope)
        return both[:, :, : self._heads], both[:, :, self._heads :]

    def _project_kv(self, layer: _Layer, h: Any) -> tuple[Any, Any]:
        """Key and value of ``h`` (no query)."""
        if layer.kv is None:
            raise AssertionError("keys and values alone are computed in the last layer only")
        k, v = layer.kv(h).split(layer.split[1:], dim=-1)
        return k, self._rounded(v)

    def _rounded(self, x: Any) -> Any:
        """``x`` in the weights' dtype (a float32 product output of :class:`_Product` rounded
        once, for attention)."""
        return x if x.dtype == self._dtype else x.to(self._dtype)

    def _into(self, product: _Linear | _Product, x: Any, stream: Any) -> Any | None:
        """``product(x)``, to be added to the residual ``stream``, or ``None`` where our
        kernel has added it already (its float32 result straight into the stream)."""
        compiling = self._torch.compiler.is_compiling()
        if isinstance(product, _Product) and not compiling and product.into(x, stream):
            return None
        return product(x)

    def _mlp(self, layer: _Layer, x: Any, stream: Any) -> Any:
        """``down(act(gate(x)) * up(x))``, to be added to ``stream`` (``None``: added, see
        :meth:`_into`)."""
        return self._into(layer.down, layer.gate_up(x), stream)

    def _attend(
        self,
        q: Any,
        k: Any,
        v: Any,
        past: tuple[Any, Any] | None,
        mask: Any | None,
        scale: float,
        ragged: _Ragged | None = None,
    ) -> Any:
        """:func:`~._lean_ops.attend` (an opaque operator under the compiler): ``q`` over
        the ``past`` prefix's keys and values, then ``k``/``v``; ``(batch, rows, heads,
        head_dim)``. With ``ragged``, ``k``, ``v`` (and ``q`` and the result, without
        ``mask``) hold the batch's real tokens only (``(1, ..., tokens, ...)``): on our CPU
        kernel as they are, else padded for the call and packed again."""
        if ragged is not None:
            out = None
            if self.cpu_kernel:
                out = attend_ragged(q, k, v, past, mask, scale, ragged.start, ragged.length)
            if out is not None:
                return out
            padded = ragged.padded
            k, v = (padded(t.transpose(1, 2)).transpose(1, 2) for t in (k, v))
            if mask is not None:
                return self._attend_padded(q, k, v, past, mask, scale)
            q = padded(q.transpose(1, 2)).transpose(1, 2)
            return ragged.packed(self._attend_padded(q, k, v, past, mask, scale))
        return self._attend_padded(q, k, v, past, mask, scale)

    def _attend_padded(
        self, q: Any, k: Any, v: Any, past: tuple[Any, Any] | None, mask: Any | None, scale: float
    ) -> Any:
        """:meth:`_attend` of rows of one width."""
        gqa = self._heads != self._kv_heads
        past_k, past_v = past if past is not None else (None, None)
        if self._torch.compiler.is_compiling():
            return self._torch.ops.qwen3_rerank.attention(
                q, k, v, past_k, past_v, mask, scale, gqa, self._chunk, self.cpu_kernel
            )
        return attend(
            q, k, v, past_k, past_v, mask, scale, gqa=gqa, chunk=self._chunk, kernel=self.cpu_kernel
        )

    def _layer(
        self,
        layer: _Layer,
        x: Any,
        rope: _Rope,
        past: tuple[Any, Any] | None,
        last: Any | None = None,
        seen: Any | None = None,
        ragged: _Ragged | None = None,
    ) -> tuple[Any, Any, Any]:
        """One decoder layer. Returns the new hidden states and this layer's keys and
        values (``(batch, kv_heads, positions, head_dim)``). Attention is causal; with
        ``last`` (one position per row), only those positions leave the layer
        (``(batch, 1, hidden)``), their query seeing the keys ``seen`` (``(batch, 1, 1,
        keys)``). With ``ragged``, ``x`` and ``rope`` hold the batch's real tokens only
        (``(1, tokens, ...)``, :class:`_Ragged`) and ``last`` counts among them."""
        module = layer.module
        attn = module.self_attn
        eps = module.input_layernorm.variance_epsilon
        h = self._norm(x, layer.input_norm, eps)
        nq, nk, _ = layer.split
        if last is None:
            if layer.qkv is None:
                raise AssertionError("the last layer runs on the last positions only")
            qkv = layer.qkv(h)
            q, k = self._queries_keys(layer, qkv[..., : nq + nk], rope)
            v = self._rounded(qkv[..., nq + nk :])
        else:
            x = self._at_last(x, last, ragged)
            if layer.q is None:
                raise AssertionError("only the last layer runs on the last positions")
            q = layer.q(self._at_last(h, last, ragged))
            k, v = self._project_kv(layer, h)
            q = self._norm_rotate(self._split_heads(q, self._heads), layer.q_heads, rope.at(last))
            k = self._norm_rotate(self._split_heads(k, self._kv_heads), layer.k_heads, rope)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self._split_heads(v, self._kv_heads).transpose(1, 2)
        out = self._attend(q, k, v, past, seen, attn.scaling, ragged)
        out = out.reshape(out.shape[0], out.shape[1], -1)
        post = module.post_attention_layernorm
        attended = self._into(layer.o, out, x)
        x, h = self._add_norm(x, attended, layer.post_norm, post.variance_epsilon)
        delta = self._mlp(layer, h, x)
        if delta is not None:
            x = self._residual_add(x, delta)
        return x, k, v

    def _at_last(self, x: Any, last: Any, ragged: _Ragged | None) -> Any:
        """Each row's position ``last`` of ``x``: ``(batch, 1, ...)``."""
        if ragged is not None:
            return x[0, last][:, None]
        return x[self._torch.arange(x.shape[0], device=x.device), last][:, None]

    def _embed(self, ids: Any, start: int, positions: Any | None = None) -> tuple[Any, _Rope]:
        """Embeddings of ``ids`` and the rotary embedding of positions ``start...``
        (or of ``positions``, ``(1, ids.shape[1])``)."""
        torch = self._torch
        embedded = self._decoder.embed_tokens(ids)
        if positions is None:
            positions = torch.arange(start, start + ids.shape[1], device=ids.device)[None]
        # The residual stream and the rotary embedding in float32.
        x = embedded.float()
        cos, sin = self._decoder.rotary_emb(x, positions)
        half = sin.shape[-1] // 2
        signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        return x, _Rope(cos[:, :, None], signed_sin[:, :, None])

    def _attention_chunk(self, device: Any) -> int:
        """Query rows per causal attention call: :data:`ATTENTION_CHUNK` on CPU
        (:data:`ATTENTION_CHUNK_BF16` in bfloat16); ``0`` (one call) elsewhere."""
        torch = self._torch
        if torch.device(device).type != "cpu":
            return 0
        return ATTENTION_CHUNK_BF16 if self._dtype == torch.bfloat16 else ATTENTION_CHUNK

    # ------------------------------------------------------------------ API
    def prefix(self, ids: list[int]) -> Prefix:
        """Run ``ids`` once and keep their keys and values for :meth:`last_hidden`.

        The last layer's keys and values are all that is kept of it, so its query,
        output projection and MLP are skipped.
        """
        torch = self._torch
        device = self._decoder.embed_tokens.weight.device
        with torch.inference_mode():
            x, rope = self._embed(torch.tensor([ids], dtype=torch.long, device=device), 0)
            kv = []
            for layer in self._layers[:-1]:
                # Eager even with ``compile=True``: one short row a query, and one graph
                # (a batch of one, no past) less to compile.
                x, k, v = self._layer(layer, x, rope, None)
                kv.append((k, v))
            kv.append(self._last_kv(self._layers[-1], x, rope))
        return Prefix(len(ids), kv)

    def _last_kv(self, layer: _Layer, x: Any, rope: _Rope) -> tuple[Any, Any]:
        """Keys and values alone of the last layer (its output is never read)."""
        eps = layer.module.input_layernorm.variance_epsilon
        k, v = self._project_kv(layer, self._norm(x, layer.input_norm, eps))
        k = self._norm_rotate(self._split_heads(k, self._kv_heads), layer.k_heads, rope)
        return k.transpose(1, 2), self._split_heads(v, self._kv_heads).transpose(1, 2)

    def last_hidden(self, rows: list[list[int]], prefix: Prefix | None, *, pad_id: int) -> Any:
        """Final-norm hidden state at the last token of each ``prefix + row``,
        ``(len(rows), hidden)``. Rows are right-padded with ``pad_id``, so padding
        comes after every real token and causal attention never reads it (on CPU,
        past ``RAGGED_MIN_PADDING``, only SDPA sees the padding); without a prefix
        each row is a whole prompt."""
        torch = self._torch
        device = self._decoder.embed_tokens.weight.device
        width = max(len(r) for r in rows)
        n_past = prefix.length if prefix is not None else 0
        lengths = torch.tensor([len(r) for r in rows], device=device)
        ragged = self._ragged(lengths, width)
        with torch.inference_mode():
            if ragged is None:
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                for i, r in enumerate(rows):
                    ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
                x, rope = self._embed(ids.to(device), n_past)
                last = lengths - 1
            else:
                ids = torch.tensor([[t for r in rows for t in r]], dtype=torch.long, device=device)
                x, rope = self._embed(ids, n_past, (ragged.index % width + n_past)[None])
                last = ragged.last
            # The last layer's one query a row sees the keys up to its own position.
            seen = torch.arange(n_past + width, device=device)[None] < (lengths + n_past)[:, None]
            for i, layer in enumerate(self._layers):
                past = prefix.kv[i] if prefix is not None else None
                if i < len(self._layers) - 1:
                    x, _, _ = self._run_layer(layer, x, rope, past, ragged=ragged)
                else:
                    x, _, _ = self._run_layer(
                        layer, x, rope, past, last, seen[:, None, None], ragged=ragged
                    )
            return self._final_norm(x[:, 0])

    def _ragged(self, lengths: Any, width: int) -> _Ragged | None:
        """The real tokens (:class:`_Ragged`) of a batch of rows of ``lengths``
        (``(batch,)``) padded to ``width``, where its padding is worth skipping: on CPU,
        eager (the compiled layers keep one padded graph), from
        :data:`RAGGED_MIN_PADDING` of the batch up."""
        torch, batch = self._torch, lengths.shape[0]
        if (
            self.compiled
            or lengths.device.type != "cpu"
            or int(lengths.sum()) > (1 - RAGGED_MIN_PADDING) * batch * width
        ):
            return None
        real = torch.arange(width, device=lengths.device)[None] < lengths[:, None]
        start = lengths.cumsum(0) - lengths
        return _Ragged(real.flatten().nonzero()[:, 0], start, lengths, batch, width)
