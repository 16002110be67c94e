"""Where the bf16 score error comes from: a plain Qwen3 forward with each rounding switchable.

Every bf16 forward rounds some float32 values to bfloat16; which ones sets how far its scores
land from float32. This script runs the checkpoint's own float32 weights (saved in bf16, so
exact) through a plain, readable Qwen3 forward in float32 (:func:`plain_forward`), rounding
to bf16 only where a :class:`Rounding` says, and measures ``|p - p(float32)|`` over seeded
texts for:

- ``inputs``: the products' inputs alone (the normed hidden states, attention's output, the
  MLP's activation): what any forward that multiplies in bf16 must round;
- ``ours-like``: the roundings of our bf16 forward (the inputs, the outputs of every product
  but the gate and up ones, whose SiLU and product run in the products' epilogue, the
  attention probabilities, the normed and rotated queries and keys; residual stream, norms
  and head in float32);
- ``all``: every rounding, a bf16 residual stream included, as a bf16 model in eager torch;
- ``in+...``: the inputs and one more rounding (``--variants``, :data:`VARIANTS`);

beside the model card's code at transformers' defaults (``recipe``) and ours at its defaults
(``ours``). The float32 forward (no rounding) is checked against ours in float32 (the
``fp32 check`` column: within 1e-5 of the recipe's float32 scores, as ``tests/test_parity.py``
holds them).

What it shows (``docs/benchmarks.md``): the inputs' rounding alone gives about the recipe's
deviation, and two forwards with the same roundings in a different summation order (``ours``
and ``ours-like``) draw largest deviations up to ~2.5x apart either way: the largest of 30
deviations is a draw among forwards of the same precision. Example::

    .venv/bin/python benchmarks/bf16_error_sources.py --configs 2x1024,12x256 --seeds 3 \\
        --json benchmarks/results/cpu-bf16-error-sources-2026-12-07.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # recipe.py


@dataclass(frozen=True)
class Rounding:
    """Which float32 values :func:`plain_forward` rounds to bfloat16."""

    inputs: bool = False
    """The products' inputs: normed hidden states, attention's output, the MLP activation."""
    qkv_outputs: bool = False
    """The query, key and value projections' outputs."""
    gate_up_outputs: bool = False
    """The MLP's gate and up projections' outputs (before the activation)."""
    delta_outputs: bool = False
    """The output and down projections' outputs (the residual stream's deltas)."""
    attention: bool = False
    """The attention probabilities before they weigh the values."""
    queries_keys: bool = False
    """The queries and keys after their norm and the rotary embedding."""
    residual: bool = False
    """The residual stream after each add."""


_INPUTS = Rounding(inputs=True)
_OURS = replace(_INPUTS, qkv_outputs=True, delta_outputs=True, attention=True, queries_keys=True)

#: The roundings this script can compare, by column name (``--variants``).
VARIANTS: dict[str, Rounding] = {
    "inputs": _INPUTS,
    "ours-like": _OURS,
    "all": replace(_OURS, gate_up_outputs=True, residual=True),
    "in+qkv-out": replace(_INPUTS, qkv_outputs=True),
    "in+gate-up-out": replace(_INPUTS, gate_up_outputs=True),
    "in+delta-out": replace(_INPUTS, delta_outputs=True),
    "in+attention": replace(_INPUTS, attention=True),
    "in+qk": replace(_INPUTS, queries_keys=True),
}
DEFAULT_VARIANTS = ("inputs", "ours-like", "all")


@dataclass(frozen=True)
class Row:
    config: str
    seed: int
    workload: str
    docs: int
    fp32_check: float
    """Largest ``|p|`` difference of :func:`plain_forward` without rounding vs ours in float32."""
    max_dev: dict[str, float] = field(default_factory=dict)
    mean_dev: dict[str, float] = field(default_factory=dict)


def _bf16(t: Any, on: bool) -> Any:
    import torch

    return t.to(torch.bfloat16).float() if on else t


def _rms_norm(x: Any, weight: Any, eps: float) -> Any:
    import torch

    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight.float()


def _rotate(x: Any, cos: Any, sin: Any) -> Any:
    """The rotary embedding of ``x`` ``(1, positions, heads, head_dim)``."""
    import torch

    half = x.shape[-1] // 2
    swapped = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, :, None] + swapped * sin[:, :, None]


def plain_forward(model: Any, ids: list[int], yes_no: tuple[int, int], r: Rounding) -> float:
    """p(yes) of one whole prompt ``ids`` through ``model`` (a float32 Qwen3 causal LM), in
    float32 with the roundings ``r``; the final norm and the yes/no head in float32. Qwen3's
    projections have no biases (``attention_bias=False``); a model with some is refused."""
    import torch

    dec, c = model.model, model.config
    if getattr(c, "attention_bias", False):
        raise ValueError("plain_forward covers Qwen3 without projection biases")
    n, hd = len(ids), int(c.head_dim)
    heads, kv_heads, eps = int(c.num_attention_heads), int(c.num_key_value_heads), c.rms_norm_eps
    x = dec.embed_tokens(torch.tensor([ids])).float()
    cos, sin = dec.rotary_emb(x, torch.arange(n)[None])
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    for layer in dec.layers:
        attn, mlp = layer.self_attn, layer.mlp
        h = _bf16(_rms_norm(x, layer.input_layernorm.weight, eps), r.inputs)
        q = _bf16(h @ attn.q_proj.weight.T, r.qkv_outputs).view(1, n, heads, hd)
        k = _bf16(h @ attn.k_proj.weight.T, r.qkv_outputs).view(1, n, kv_heads, hd)
        v = _bf16(h @ attn.v_proj.weight.T, r.qkv_outputs).view(1, n, kv_heads, hd)
        q = _bf16(_rotate(_rms_norm(q, attn.q_norm.weight, eps), cos, sin), r.queries_keys)
        k = _bf16(_rotate(_rms_norm(k, attn.k_norm.weight, eps), cos, sin), r.queries_keys)
        group = heads // kv_heads
        q = q.transpose(1, 2)
        k = k.transpose(1, 2).repeat_interleave(group, 1)
        v = v.transpose(1, 2).repeat_interleave(group, 1)
        scores = (q @ k.transpose(-1, -2) * attn.scaling).masked_fill(future, float("-inf"))
        p = _bf16(torch.softmax(scores, -1), r.attention)
        out = _bf16((p @ v).transpose(1, 2).reshape(1, n, heads * hd), r.inputs)
        x = _bf16(x + _bf16(out @ attn.o_proj.weight.T, r.delta_outputs), r.residual)
        h = _bf16(_rms_norm(x, layer.post_attention_layernorm.weight, eps), r.inputs)
        gate = _bf16(h @ mlp.gate_proj.weight.T, r.gate_up_outputs)
        up = _bf16(h @ mlp.up_proj.weight.T, r.gate_up_outputs)
        act = _bf16(torch.nn.functional.silu(gate) * up, r.inputs)
        x = _bf16(x + _bf16(act @ mlp.down_proj.weight.T, r.delta_outputs), r.residual)
    last = _rms_norm(x[0, -1], dec.norm.weight, eps)
    head = model.lm_head.weight.float()
    yes, no = yes_no
    return float(torch.softmax(torch.stack([last @ head[no], last @ head[yes]]), 0)[1])


def measure(
    config: str,
    variants: Sequence[str],
    seeds: int,
    workloads: str,
    docs_scale: float,
    cache: Path,
) -> list[Row]:
    import torch
    from bf16_accuracy import checkpoint_folder
    from recipe import OfficialRecipe, format_instruction
    from transformers import AutoModelForCausalLM
    from workloads import WORKLOADS, make_workload

    from qwen3_rerank_core import Qwen3Reranker

    folder = checkpoint_folder(config, cache)
    exact = Qwen3Reranker(model=str(folder), device="cpu", dtype="float32").load()
    ours = Qwen3Reranker(model=str(folder), device="cpu").load()
    fp32 = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    recipe = OfficialRecipe(folder, model=AutoModelForCausalLM.from_pretrained(str(folder)).eval())
    tok = recipe.tokenizer
    yes_no = (tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no"))
    rows = []
    for seed in range(seeds):
        for w in workloads.split(","):
            query, docs = make_workload(WORKLOADS[w], tok, seed=seed, docs_scale=docs_scale).items[
                0
            ]
            pairs = [format_instruction(None, query, d) for d in docs]
            ids = recipe.token_ids(pairs)
            scores: dict[str, Any] = {}
            with torch.inference_mode():
                want = torch.tensor([plain_forward(fp32, t, yes_no, Rounding()) for t in ids])
                for label in variants:
                    scores[label] = [plain_forward(fp32, t, yes_no, VARIANTS[label]) for t in ids]
            scores["recipe"] = recipe.score_pairs(pairs, batch_size=16)
            scores["ours"] = ours.score(query, docs)
            check = (torch.tensor(exact.score(query, docs)) - want).abs().max()
            dev = {k: (torch.tensor(v) - want).abs() for k, v in scores.items()}
            rows.append(
                Row(
                    config,
                    seed,
                    w,
                    len(docs),
                    float(check),
                    {k: float(d.max()) for k, d in dev.items()},
                    {k: float(d.mean()) for k, d in dev.items()},
                )
            )
            print(_line(rows[-1]), flush=True)
    exact.close()
    ours.close()
    return rows


def _line(r: Row) -> str:
    cells = " | ".join(f"{r.max_dev[k]:.1e} / {r.mean_dev[k]:.1e}" for k in r.max_dev)
    return f"| {r.config} | {r.seed} | {r.workload} | {r.docs} | {r.fp32_check:.0e} | {cells} |"


def summary(rows: list[Row]) -> str:
    """Each column's mean of the rows' mean deviations, and how often each column's largest
    deviation is within the recipe's + 1e-5."""
    parts = []
    for k in rows[0].max_dev:
        mean = sum(r.mean_dev[k] for r in rows) / len(rows)
        within = sum(r.max_dev[k] <= r.max_dev["recipe"] + 1e-5 for r in rows)
        parts.append(f"{k}: mean {mean:.1e}, largest within the recipe's {within}/{len(rows)}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="2x1024,12x256")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workloads", default="a,b")
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"roundings compared, comma-separated, from {', '.join(VARIANTS)}",
    )
    p.add_argument("--docs-scale", type=float, default=0.3, help="0.3: 30 documents")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "fixtures")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        p.error(
            f"unknown variant(s) {unknown or args.variants!r}; choose from {', '.join(VARIANTS)}"
        )

    import torch
    from bf16_accuracy import write_json

    torch.set_num_threads(args.threads)
    columns = (*variants, "recipe", "ours")
    cols = " | ".join(f"{k} max / mean" for k in columns)
    print(f"| config | seed | workload | docs | fp32 check | {cols} |")
    print("|---|---|---|---|---|" + "---|" * len(columns))
    rows: list[Row] = []
    for config in args.configs.split(","):
        rows += measure(
            config, variants, args.seeds, args.workloads, args.docs_scale, args.cache_dir
        )
    print("\n" + summary(rows))
    write_json(args, rows)
    return rows


if __name__ == "__main__":
    main()
