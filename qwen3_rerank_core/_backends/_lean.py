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
  ``(tail, prefix + tail)`` causal mask, and padding never reaches a real token;
- the query/key/value projections and the MLP's gate/up projections are fused into
  one matrix product each. The modules' weights become views of the fused
  matrices, so no weight is stored twice and the transformers modules still work.

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

from dataclasses import dataclass
from typing import Any

__all__ = ["LeanForward", "Prefix", "lean_unsupported"]

_FUSED = ("q_proj", "k_proj", "v_proj")
_MLP_FUSED = ("gate_proj", "up_proj")


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


@dataclass(frozen=True)
class _Layer:
    """One decoder layer's modules and its fused weights."""

    module: Any
    qkv_weight: Any
    qkv_bias: Any | None
    gate_up_weight: Any
    split: tuple[int, int, int]
    """Output sizes of the query, key and value projections."""


def _fuse(modules: list[Any], torch: Any) -> tuple[Any, Any | None]:
    """One weight (and bias) for ``modules`` stacked on the output dimension; each
    module's parameters become views of it, so nothing is stored twice."""
    weight = torch.cat([m.weight.detach() for m in modules])
    biases = [m.bias for m in modules]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat(
            [
                b.detach() if b is not None else weight.new_zeros(m.out_features)
                for m, b in zip(modules, biases, strict=True)
            ]
        )
    start = 0
    for m in modules:
        stop = start + m.out_features
        m.weight = torch.nn.Parameter(weight[start:stop], requires_grad=False)
        if m.bias is not None and bias is not None:
            m.bias = torch.nn.Parameter(bias[start:stop], requires_grad=False)
        start = stop
    return weight, bias


class LeanForward:
    """Last-position hidden states of a Qwen3 decoder (see the module docstring)."""

    def __init__(self, decoder: Any) -> None:
        import torch
        import torch.nn.functional as functional

        self._torch: Any = torch
        self._f: Any = functional
        self._decoder = decoder
        config = decoder.config
        self._heads = int(config.num_attention_heads)
        self._kv_heads = int(config.num_key_value_heads)
        self._head_dim = int(
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self._layers: list[_Layer] = []
        for layer in decoder.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = [getattr(attn, n) for n in _FUSED]
            qkv_weight, qkv_bias = _fuse(qkv, torch)
            gate_up_weight, _ = _fuse([getattr(mlp, n) for n in _MLP_FUSED], torch)
            split = (qkv[0].out_features, qkv[1].out_features, qkv[2].out_features)
            self._layers.append(_Layer(layer, qkv_weight, qkv_bias, gate_up_weight, split))

    # ------------------------------------------------------------------ steps
    def _norm(self, x: Any, norm: Any) -> Any:
        """Qwen3 RMSNorm: normalised in float32, scaled in the input's dtype."""
        y = self._f.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon)
        return norm.weight * y.to(x.dtype)

    @staticmethod
    def _rotate(x: Any, cos: Any, sin: Any, torch: Any) -> Any:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _heads_of(self, x: Any, heads: int, norm: Any | None) -> Any:
        """``(batch, length, heads * head_dim)`` as ``(batch, heads, length, head_dim)``,
        RMS-normalised per head when ``norm`` is given."""
        x = x.view(x.shape[0], x.shape[1], heads, self._head_dim)
        if norm is not None:
            x = self._norm(x, norm)
        return x.transpose(1, 2)

    def _project_qkv(self, layer: _Layer, h: Any, queries: Any | None) -> tuple[Any, Any, Any]:
        """Query, key and value of ``h``; the query of the rows ``queries`` of ``h``
        only (one position per prompt) when given."""
        nq = layer.split[0]
        w, b = layer.qkv_weight, layer.qkv_bias
        f = self._f
        if queries is None:
            q, k, v = f.linear(h, w, b).split(layer.split, dim=-1)
            return q, k, v
        k, v = self._project_kv(layer, h)
        return f.linear(queries, w[:nq], None if b is None else b[:nq]), k, v

    def _project_kv(self, layer: _Layer, h: Any) -> tuple[Any, Any]:
        """Key and value of ``h`` (no query)."""
        nq, nk, nv = layer.split
        w, b = layer.qkv_weight, layer.qkv_bias
        k, v = self._f.linear(h, w[nq:], None if b is None else b[nq:]).split((nk, nv), dim=-1)
        return k, v

    def _mlp(self, layer: _Layer, x: Any) -> Any:
        mlp = layer.module.mlp
        gate, up = self._f.linear(x, layer.gate_up_weight).chunk(2, dim=-1)
        return mlp.down_proj(mlp.act_fn(gate) * up)

    def _layer(
        self,
        layer: _Layer,
        x: Any,
        rope: tuple[Any, Any],
        past: tuple[Any, Any] | None,
        mask: Any | None,
        last: Any | None = None,
    ) -> tuple[Any, Any, Any]:
        """One decoder layer. Returns the new hidden states and this layer's keys and
        values (of ``x``'s positions). With ``last`` (one position per row), only
        those positions leave the layer: ``(batch, 1, hidden)``."""
        torch, module = self._torch, layer.module
        attn = module.self_attn
        h = self._norm(x, module.input_layernorm)
        cos, sin = rope
        if last is None:
            q, k, v = self._project_qkv(layer, h, None)
            q_cos, q_sin = cos, sin
        else:
            rows = torch.arange(x.shape[0], device=x.device)
            x = x[rows, last][:, None]
            q, k, v = self._project_qkv(layer, h, h[rows, last][:, None])
            q_cos, q_sin = cos[0, 0][last][:, None, None], sin[0, 0][last][:, None, None]
        q = self._rotate(self._heads_of(q, self._heads, attn.q_norm), q_cos, q_sin, torch)
        k = self._rotate(self._heads_of(k, self._kv_heads, attn.k_norm), cos, sin, torch)
        v = self._heads_of(v, self._kv_heads, None)
        keys, values = k, v
        if past is not None:
            batch = x.shape[0]
            keys = torch.cat([past[0].expand(batch, -1, -1, -1), k], dim=2)
            values = torch.cat([past[1].expand(batch, -1, -1, -1), v], dim=2)
        out = self._f.scaled_dot_product_attention(
            q,
            keys,
            values,
            attn_mask=mask,
            is_causal=mask is None,
            scale=attn.scaling,
            enable_gqa=self._heads != self._kv_heads,
        )
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        x = x + attn.o_proj(out)
        x = x + self._mlp(layer, self._norm(x, module.post_attention_layernorm))
        return x, k, v

    def _embed(self, ids: Any, start: int) -> tuple[Any, tuple[Any, Any]]:
        """Embeddings of ``ids`` and the rotary (cos, sin) of positions ``start...``,
        shaped to broadcast over heads."""
        torch = self._torch
        x = self._decoder.embed_tokens(ids)
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)[None]
        cos, sin = self._decoder.rotary_emb(x, positions)
        return x, (cos[:, None], sin[:, None])

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
            for i, layer in enumerate(self._layers):
                if i == len(self._layers) - 1:
                    kv.append(self._last_kv(layer, x, rope))
                else:
                    x, k, v = self._layer(layer, x, rope, None, None)
                    kv.append((k, v))
        return Prefix(len(ids), kv)

    def _last_kv(self, layer: _Layer, x: Any, rope: tuple[Any, Any]) -> tuple[Any, Any]:
        attn = layer.module.self_attn
        k, v = self._project_kv(layer, self._norm(x, layer.module.input_layernorm))
        k = self._rotate(self._heads_of(k, self._kv_heads, attn.k_norm), *rope, self._torch)
        return k, self._heads_of(v, self._kv_heads, None)

    def last_hidden(self, rows: list[list[int]], prefix: Prefix | None, *, pad_id: int) -> Any:
        """Final-norm hidden state at the last token of each ``prefix + row``,
        ``(len(rows), hidden)``. Rows are right-padded with ``pad_id``; without a
        prefix each row is a whole prompt."""
        torch = self._torch
        device = self._decoder.embed_tokens.weight.device
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        n_past = prefix.length if prefix is not None else 0
        lengths = torch.tensor([len(r) for r in rows], device=device)
        with torch.inference_mode():
            x, rope = self._embed(ids.to(device), n_past)
            mask = None  # plain causal attention without a prefix
            if n_past:
                mask = torch.ones((width, n_past + width), dtype=torch.bool, device=device)
                mask[:, n_past:] = torch.ones(
                    (width, width), dtype=torch.bool, device=device
                ).tril()
            last = lengths - 1
            # The last layer's one query per row sees keys up to its own position.
            last_mask = (
                torch.arange(n_past + width, device=device)[None] <= (last + n_past)[:, None]
            )
            for i, layer in enumerate(self._layers):
                past = prefix.kv[i] if prefix is not None else None
                if i < len(self._layers) - 1:
                    x, _, _ = self._layer(layer, x, rope, past, mask)
                else:
                    x, _, _ = self._layer(layer, x, rope, past, last_mask[:, None, None], last)
            return self._norm(x[:, 0], self._decoder.norm)
