"""bf16 accuracy, ours against the model card's code at transformers' defaults, over seeds.

For each config (saved in bfloat16, as the released checkpoints are; ``NAME+norms``: the
same with every RMSNorm weight drawn from [0.25, 1.75] instead of ones, as a trained
model's are), each seed and each workload: the largest and the mean ``|p - p(float32)|``
over the documents of

- ``recipe``: the model card's code (``tests/recipe.py``) at transformers 5's defaults
  (the checkpoint's dtype: bf16), in chunks of ``--recipe-batch-size`` pairs;
- ``ours``: ``Qwen3Reranker`` at its defaults (bf16 where this CPU computes it natively).

The float32 reference is ours with ``dtype="float32"`` (held to the float32 recipe to
1e-5 by ``tests/test_parity.py``). One benchmark matrix row is one draw of this: the
largest deviation over 30 documents of a random model moves a lot from one set of texts to
the next, the mean much less. Example::

    .venv/bin/python benchmarks/bf16_accuracy.py --configs mid,12x256,mid+norms --seeds 3 \\
        --json benchmarks/results/cpu-bf16-accuracy-2026-12-06.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # recipe.py


@dataclass(frozen=True)
class Row:
    config: str
    seed: int
    workload: str
    docs: int
    recipe_max: float
    recipe_mean: float
    ours_max: float
    ours_mean: float


def with_norms(folder: Path, cache_dir: Path) -> Path:
    """A copy of the checkpoint ``folder`` whose RMSNorm weights are drawn from [0.25, 1.75]
    (seeded), saved in bf16 beside it in ``cache_dir``."""
    import torch
    from transformers import AutoModelForCausalLM

    out = cache_dir / f"{folder.name}-norms"
    if (out / "config.json").is_file():
        return out
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.25)
    model.save_pretrained(str(out))
    for f in folder.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "config.json":
            shutil.copyfile(f, out / f.name)
    return out


def checkpoint_folder(config: str, cache: Path) -> Path:
    """The bf16-saved checkpoint of ``config``: ``NAME`` (a benchmark config or shape) or
    ``NAME+norms`` (:func:`with_norms`), built in ``cache`` if needed."""
    from checkpoints import build_checkpoint

    name, _, variant = config.partition("+")
    folder = build_checkpoint(name, seed=0, cache_dir=cache, dtype="bfloat16")
    if variant == "norms":
        return with_norms(folder, cache)
    if variant:
        raise ValueError(f"unknown variant {variant!r} in {config!r} (known: +norms)")
    return folder


def measure(
    config: str, seeds: int, workloads: str, docs_scale: float, recipe_batch: int, cache: Path
) -> list[Row]:
    import torch
    from recipe import OfficialRecipe, format_instruction
    from transformers import AutoModelForCausalLM
    from workloads import WORKLOADS, make_workload

    from qwen3_rerank_core import Qwen3Reranker

    folder = checkpoint_folder(config, cache)
    exact = Qwen3Reranker(model=str(folder), device="cpu", dtype="float32").load()
    ours = Qwen3Reranker(model=str(folder), device="cpu").load()
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()  # transformers' defaults
    recipe = OfficialRecipe(folder, model=model)
    tokenizer = exact._get_backend()._tokenizer  # type: ignore[attr-defined]
    rows = []
    for seed in range(seeds):
        for w in workloads.split(","):
            wl = make_workload(WORKLOADS[w], tokenizer, seed=seed, docs_scale=docs_scale)
            query, docs = wl.items[0]
            want = torch.tensor(exact.score(query, docs))
            pairs = [format_instruction(None, query, d) for d in docs]
            theirs = torch.tensor(recipe.score_pairs(pairs, batch_size=recipe_batch)) - want
            mine = torch.tensor(ours.score(query, docs)) - want
            rows.append(
                Row(
                    config,
                    seed,
                    w,
                    len(docs),
                    float(theirs.abs().max()),
                    float(theirs.abs().mean()),
                    float(mine.abs().max()),
                    float(mine.abs().mean()),
                )
            )
            print(_line(rows[-1]), flush=True)
    exact.close()
    ours.close()
    return rows


def _line(r: Row) -> str:
    within = "yes" if r.ours_max <= r.recipe_max + 1e-5 else "**no**"
    return (
        f"| {r.config} | {r.seed} | {r.workload} | {r.docs} | {r.recipe_max:.1e} | "
        f"{r.ours_max:.1e} | {within} | {r.recipe_mean:.1e} | {r.ours_mean:.1e} | "
        f"{r.ours_mean / r.recipe_mean if r.recipe_mean else float('nan'):.2f} |"
    )


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="mid,12x256,mid+norms,12x256+norms")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workloads", default="a,b")
    p.add_argument("--docs-scale", type=float, default=0.3, help="0.3: 30 documents")
    p.add_argument("--recipe-batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "fixtures")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(
        "| config | seed | workload | docs | max \\|d\\| recipe bf16 | max \\|d\\| ours | "
        "ours within (+1e-5) | mean \\|d\\| recipe | mean \\|d\\| ours | mean ours / recipe |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows: list[Row] = []
    for config in args.configs.split(","):
        rows += measure(
            config,
            args.seeds,
            args.workloads,
            args.docs_scale,
            args.recipe_batch_size,
            args.cache_dir,
        )
    within = sum(r.ours_max <= r.recipe_max + 1e-5 for r in rows)
    lower_mean = sum(r.ours_mean < r.recipe_mean for r in rows)
    print(
        f"\nlargest deviation within the recipe's + 1e-5: {within} of {len(rows)}; "
        f"mean deviation below the recipe's: {lower_mean} of {len(rows)}; "
        f"mean of ours / recipe mean ratios: "
        f"{sum(r.ours_mean / r.recipe_mean for r in rows) / len(rows):.2f}"
    )
    write_json(args, rows)
    return rows


def write_json(args: argparse.Namespace, rows: Sequence[Any]) -> None:
    """The run's arguments and ``rows`` (dataclasses) to ``args.json``, where given."""
    if args.json is not None:
        out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
        out["rows"] = [asdict(r) for r in rows]
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
