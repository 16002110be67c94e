"""Benchmark: qwen3_rerank_core vs the model-card recipe, sentence-transformers and vLLM.

Builds a random-weight Qwen3 checkpoint with the real tokenizer (no model hub),
generates seeded workloads, times every contender on them after a warmup and
prints one table: docs/s, how many times faster ours is, peak memory, the
largest |score - recipe score| and the model FLOP/s as a share of the measured
matmul rate. See ``docs/benchmarks.md`` for the figures and how to read them.

Each contender runs in its own worker process (one per workload, so the peak
RSS is that contender's alone; the vLLM contenders use one process for all
workloads because their start-up takes a minute). Only the scoring calls are
timed, never loading. Examples::

    .venv/bin/python benchmarks/bench_rerank.py --config mid --workloads a,b,c
    .venv/bin/python benchmarks/bench_rerank.py --config tiny --docs-scale 0.1 --markdown
    python benchmarks/bench_rerank.py --device cuda --config 0.6b --json gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata as md
import json
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from concurrency import concurrency_table, run_concurrency
from contenders import (
    ALL_CONTENDERS,
    REPO,
    VLLM_CONTENDERS,
    run_worker,
)
from workloads import CONCURRENCY, WORKLOADS, Workload, make_workload, max_abs_diff

from qwen3_rerank_core._backends._vml import resolve_vml_dispatch

logger = logging.getLogger("bench_rerank")

#: Every contender but the float32 recipe, which runs anyway as the reference where needed.
DEFAULT_CONTENDERS = tuple(c for c in ALL_CONTENDERS if c != "recipe-fp32")
#: Matmul rates measured with ``--dtype default`` (rows compute in either).
RATE_DTYPES = ("float32", "bfloat16")
#: The CPU matrix (``--config cpu-matrix``): shapes no default can be tuned to alone.
CPU_MATRIX = ("mid", "8x512", "12x256", "2x1024", "0.6b")
#: Document-count scale per config in the matrix (the 0.6B architecture is slow on a CPU).
MATRIX_DOCS_SCALE = {"0.6b": 0.2}
#: ``--quick``: fewer documents and runs (the whole CPU matrix in well under an hour).
QUICK = {"docs_scale": 0.3, "repeat": 2, "recipe_repeat": 1, "recipe_warmup": 0}
#: ``max_batch_tokens`` of the ``ours-tuned`` row when ``--tuned-batch-tokens`` is not given.
TUNED_BATCH_TOKENS = {"cpu": 1024, "cuda": 65536}
LABELS = {
    "recipe": "model-card recipe",
    "recipe-fp32": "model-card recipe, float32 (reference)",
    "ours": "ours (transformers, defaults)",
    "ours-tuned": "ours (transformers, tuned)",
    "ours-compiled": "ours (transformers, compile=True)",
    "st": "sentence-transformers CrossEncoder",
    "vllm": "vLLM (in-process)",
    "vllm-default": "vLLM (in-process, prefix cache on)",
    "ours-vllm": "ours (vllm backend)",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from checkpoints import CONFIGS, SHAPE_HELP, config_overrides

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if available)")
    p.add_argument(
        "--dtype",
        default="default",
        help="default: every contender at its own default (ours: the precision policy; the "
        "recipe and sentence-transformers: the checkpoint's dtype; vLLM: dtype='auto'), with "
        "the float32 recipe as the reference of the score deviations; float32 / bfloat16: "
        "every contender pinned to it",
    )
    p.add_argument(
        "--save-dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="dtype the random checkpoint is saved in (the released checkpoints are bf16)",
    )
    p.add_argument(
        "--config",
        default="mid",
        help=f"model architecture(s), comma-separated, from {', '.join(CONFIGS)}, or "
        f"{SHAPE_HELP}; "
        f"'cpu-matrix' = {','.join(CPU_MATRIX)} (all contenders on each, one after the other)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced run: --docs-scale 0.3 --repeat 2 --recipe-repeat 1 --recipe-warmup 0 "
        "(explicit options still win)",
    )
    p.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"comma-separated, from {', '.join(ALL_CONTENDERS)} (the reference of the "
        "score deviations always runs: recipe-fp32 at --dtype default, else recipe)",
    )
    p.add_argument(
        "--workloads",
        default="a,b,c,d",
        help="comma-separated, from a,b,c,d,e,f,g (e, f, g: 1, 8 and 16 concurrent callers "
        "of ours, threads and asyncio, against one score_many; benchmarks/concurrency.py)",
    )
    p.add_argument("--docs-scale", type=float, default=1.0, help="scale document counts")
    p.add_argument("--length-scale", type=float, default=1.0, help="scale document lengths")
    p.add_argument("--repeat", type=int, default=3, help="timed runs (best reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--recipe-repeat", type=int, default=None, help="timed runs of the recipe")
    p.add_argument("--recipe-warmup", type=int, default=None, help="warmup runs of the recipe")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every contender")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and texts")
    p.add_argument("--recipe-batch-size", type=int, default=None, help="fixed recipe chunk size")
    p.add_argument(
        "--recipe-logits-gib",
        type=float,
        default=None,
        help="largest full-vocabulary logits tensor of one recipe batch before it is run in "
        "chunks (default: 4 on CPU, a quarter of the GPU's memory on CUDA)",
    )
    p.add_argument("--tuned-batch-tokens", type=int, default=None, help="ours-tuned budget")
    p.add_argument("--st-batch-size", type=int, default=32, help="CrossEncoder.predict batch")
    p.add_argument(
        "--vllm-python",
        default=str(REPO / ".venv-vllm" / "bin" / "python"),
        help="python of the vLLM venv (made by scripts/setup_vllm_venv.sh)",
    )
    p.add_argument("--vllm-kv-gib", type=float, default=2, help="VLLM_CPU_KVCACHE_SPACE")
    p.add_argument("--cache-dir", default=str(REPO / ".cache" / "fixtures"), help="checkpoints")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        help="before each worker, wait up to this many seconds for other processes to leave "
        "the CPU idle (< 10%% busy)",
    )
    p.add_argument(
        "--retry-noisy",
        type=int,
        default=0,
        help="re-run a (contender, workload) up to N times when other processes used more "
        "than --noisy-threshold of the CPU during its timed runs; the quietest run is kept",
    )
    p.add_argument("--noisy-threshold", type=float, default=0.05, help="see --retry-noisy")
    p.add_argument(
        "--work-dir",
        default=None,
        help="keep worker specs, results and logs here; a rerun with the same options "
        "reuses the results found there (resumes an interrupted run)",
    )
    p.add_argument("--in-process", action="store_true", help="no worker processes (tests)")
    p.add_argument("--json", dest="json_out", default=None, help="write all results here")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress logging")
    args = p.parse_args(argv)
    args.contender_list = _names(args.contenders, ALL_CONTENDERS, "contender")
    # The reference of every score deviation always runs: the recipe where every
    # contender is pinned to one dtype, the float32 recipe at defaults (where the recipe
    # follows a bf16 checkpoint into bf16; that row runs only when listed, as it is by
    # default: on a CPU without native bf16 it alone can take hours on the 0.6B shape).
    reference = "recipe-fp32" if args.dtype == "default" else "recipe"
    if reference not in args.contender_list:
        args.contender_list.insert(0, reference)
    args.workload_list = _names(args.workloads, tuple(WORKLOADS), "workload")
    configs = CPU_MATRIX if args.config == "cpu-matrix" else args.config.split(",")
    args.config_list = list(dict.fromkeys(x.strip() for x in configs if x.strip()))
    if not args.config_list:
        raise SystemExit(f"no config in {args.config!r}")
    for name in args.config_list:
        try:
            config_overrides(name)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    if args.quick:
        given = {a.split("=")[0] for a in (argv or sys.argv[1:])}
        for key, value in QUICK.items():
            if "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)
    return args


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in known]
    if bad or not names:
        raise SystemExit(f"unknown {what}(s) {bad or text!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------- environment
def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = props.name
        info["gpu_mem_gib"] = round(props.total_memory / 2**30, 1)
    info["versions"] = {
        d: _version(d)
        for d in ("torch", "transformers", "sentence-transformers", "qwen3-rerank-core")
    }
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return info


def matmul_flops(device: str, dtype: str) -> float:
    """Best measured FLOP/s of a square matmul (8192 on GPU, 3072 on CPU). On a CPU where
    a 3072 product would take over a second (bf16 emulated, at ~1 GFLOP/s: ten minutes for
    the four products), a smaller square, so that one takes about half a second."""
    import torch

    dev = torch.device(device)
    tdtype = getattr(torch, dtype)
    n = 8192 if dev.type == "cuda" else _cpu_matmul_size(torch, tdtype)
    a = torch.randn(n, n, device=dev).to(tdtype)
    b = torch.randn(n, n, device=dev).to(tdtype)
    reps = 20 if dev.type == "cuda" else 2
    best = math.inf
    for _ in range(2):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / reps)
    if n != 3072 and dev.type != "cuda":
        logger.info("matmul rate (%s): a %d-square product (3072 would take too long)", dtype, n)
    return 2 * n**3 / best


def _cpu_matmul_size(torch: Any, dtype: Any) -> int:
    """The side of the square product :func:`matmul_flops` times on the CPU in ``dtype``
    (:func:`matmul_side`, from a 512-square probe's rate)."""
    probe = 512
    a = torch.randn(probe, probe).to(dtype)
    a @ a  # warm up
    start = time.perf_counter()
    a @ a
    return matmul_side(2 * probe**3 / max(time.perf_counter() - start, 1e-9))


def matmul_side(rate: float, largest: int = 3072, seconds: float = 0.5) -> int:
    """``largest``, or, where a product of that side would take over ``2 * seconds`` at
    ``rate`` FLOP/s, the largest power of two from 256 whose product takes at most
    ``seconds``."""
    if 2 * largest**3 / rate <= 2 * seconds:
        return largest
    side = 256
    while side * 2 < largest and 2 * (side * 2) ** 3 / rate <= seconds:
        side *= 2
    return side


def _native_bf16(device: str) -> bool:
    """Whether ``device`` computes bf16 natively (a CPU: AVX-512 BF16 or AMX, as the
    precision policy reads it; a GPU: ``torch.cuda.is_bf16_supported()``)."""
    import torch

    from qwen3_rerank_core._precision import hardware_of

    hardware = hardware_of(torch, torch.device(device).type)
    return hardware.cuda_bf16 or hardware.cpu_bf16


def mfu_rates(device: str, rates: dict[str, float], native_bf16: bool) -> dict[str, float]:
    """The rate each dtype's rows are measured against (MFU): the rate of that dtype,
    except bf16 on a CPU that does not compute it natively, where emulated bf16 products
    run at a hundredth of float32's: there the machine's real rate, float32's."""
    if device == "cpu" and not native_bf16 and "bfloat16" in rates and "float32" in rates:
        return {**rates, "bfloat16": rates["float32"]}
    return dict(rates)


# ------------------------------------------------------------------------ workers
def _worker_cmd(python: str, spec_file: Path, out_file: Path) -> list[str]:
    return [python, str(Path(__file__).resolve()), "--worker", str(spec_file), str(out_file)]


def _run_subprocess(
    python: str, spec: dict[str, Any], tmp: Path, tag: str, *, reuse: bool = False
) -> dict[str, Any]:
    spec_file, out_file, log_file = (
        tmp / f"{tag}.{ext}" for ext in ("spec.json", "out.json", "log")
    )
    if reuse and spec_file.is_file() and out_file.is_file():
        try:
            same = json.loads(spec_file.read_text(encoding="utf-8")) == json.loads(json.dumps(spec))
            previous = dict(json.loads(out_file.read_text(encoding="utf-8")))
        except ValueError:
            same = False
        if same and "error" not in previous:
            logger.info("reusing the results of %s from %s", tag, tmp)
            return previous
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with log_file.open("w", encoding="utf-8") as log:
        proc = subprocess.run(
            _worker_cmd(python, spec_file, out_file), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    if proc.returncode != 0 and out_file.is_file():
        logger.warning(
            "worker %s exited with status %s after writing its results (log: %s)",
            tag,
            proc.returncode,
            log_file,
        )
    elif proc.returncode != 0 or not out_file.is_file():
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        logger.error(
            "worker %s exited with %s; log %s:\n%s", tag, proc.returncode, log_file, "\n".join(tail)
        )
        return {"error": f"worker exited with status {proc.returncode} (log: {log_file})"}
    return dict(json.loads(out_file.read_text(encoding="utf-8")))


def _worker_main(spec_file: str, out_file: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    # Every contender's process, the peers' too: a deviation is never torch's first-call
    # VML race (pytorch/pytorch#188792; ours resolves it when it loads, the peers do not).
    resolve_vml_dispatch()

    def emit(result: dict[str, Any]) -> None:
        Path(out_file).write_text(json.dumps(result), encoding="utf-8")

    if spec.get("kind") == "concurrency":
        emit(run_concurrency(spec))
        return 0
    run_worker(spec, emit)
    return 0


# -------------------------------------------------------------------------- run
def _prompt_tokens(workload: Workload, tokenizer: Any) -> int:
    """Tokens of all prompts as the recipe builds them (template included, truncated)."""
    sys.path.insert(0, str(REPO / "tests"))
    from recipe import PREFIX, SUFFIX, format_instruction

    fixed = len(tokenizer.encode(PREFIX, add_special_tokens=False)) + len(
        tokenizer.encode(SUFFIX, add_special_tokens=False)
    )
    bodies = [format_instruction(None, q, d) for q, ds in workload.items for d in ds]
    ids = tokenizer(bodies, add_special_tokens=False)["input_ids"]
    budget = workload.max_length - fixed
    return sum(min(len(x), budget) + fixed for x in ids)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described by ``args``; returns the report (also the JSON)."""
    import torch
    from checkpoints import build_checkpoint, full_config, non_embedding_params
    from transformers import AutoTokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = None if args.dtype == "default" else args.dtype
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    cache_dir = Path(args.cache_dir).expanduser()
    model_dir = build_checkpoint(
        args.config, seed=args.seed, cache_dir=cache_dir, dtype=args.save_dtype
    )
    config = full_config(args.config)
    n_params = non_embedding_params(config)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    workloads = []
    for name in args.workload_list:
        wl = make_workload(
            WORKLOADS[name],
            tokenizer,
            seed=args.seed,
            docs_scale=args.docs_scale,
            length_scale=args.length_scale,
        )
        workloads.append((wl, _prompt_tokens(wl, tokenizer)))
    concurrent = [(wl, t) for wl, t in workloads if wl.name in CONCURRENCY]
    workloads = [(wl, t) for wl, t in workloads if wl.name not in CONCURRENCY]
    load_before = os.getloadavg()[0]
    # MFU of each row against the matmul rate of the dtype it computed in, measured here.
    measured = {dt: matmul_flops(device, dt) for dt in ([dtype] if dtype else RATE_DTYPES)}
    for dt, rate in measured.items():
        logger.info("matmul rate (%s, %s): %.1f GFLOP/s", device, dt, rate / 1e9)
    native_bf16 = _native_bf16(device)
    rates = mfu_rates(device, measured, native_bf16)
    peak_flops = rates[dtype or "float32"]

    base_spec = {
        "model_dir": str(model_dir),
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "max_length": max(wl.max_length for wl, _ in workloads + concurrent),
        "recipe_batch_size": args.recipe_batch_size,
        "recipe_logits_gib": args.recipe_logits_gib,
        "tuned_batch_tokens": args.tuned_batch_tokens
        or TUNED_BATCH_TOKENS["cuda" if device.startswith("cuda") else "cpu"],
        "st_batch_size": args.st_batch_size,
        "vllm_kv_gib": args.vllm_kv_gib,
    }
    results: dict[str, dict[str, Any]] = {}  # contender -> workload -> result
    skipped: dict[str, str] = {}
    # Worker specs, results and logs; a --work-dir is kept, and results in it whose spec
    # matches are reused (resuming an interrupted run).
    if args.work_dir:
        tmp = Path(args.work_dir).expanduser()
        tmp.mkdir(parents=True, exist_ok=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    try:
        concurrency = [_run_concurrency(args, base_spec, wl, tmp) for wl, _ in concurrent]
        for name in args.contender_list:
            if not workloads:
                break
            reason = _skip_reason(name, args)
            if reason:
                skipped[name] = reason
                logger.warning("skipping %s: %s", name, reason)
                continue
            warmup, repeat = args.warmup, args.repeat
            if name in ("recipe", "recipe-fp32"):
                warmup = args.warmup if args.recipe_warmup is None else args.recipe_warmup
                repeat = args.repeat if args.recipe_repeat is None else args.recipe_repeat
            spec = {**base_spec, "contender": name, "warmup": warmup, "repeat": max(1, repeat)}
            results[name] = {}
            if name in VLLM_CONTENDERS or args.in_process:
                groups = [[wl for wl, _ in workloads]]
            else:
                groups = [[wl] for wl, _ in workloads]
            pending = groups
            for attempt in range(1 + max(0, args.retry_noisy)):
                if attempt:
                    logger.warning(
                        "re-running %s on %s: other processes used the CPU meanwhile",
                        name,
                        ", ".join(wl.name for group in pending for wl in group),
                    )
                still_noisy = []
                for group in pending:
                    if args.wait_idle and not args.in_process:
                        _wait_idle(args.wait_idle)
                    spec["workloads"] = [wl.to_json() for wl in group]
                    logger.info("%s: %s", name, ", ".join(wl.name for wl in group))
                    if args.in_process:
                        out = run_worker(spec)
                    else:
                        python = args.vllm_python if name in VLLM_CONTENDERS else sys.executable
                        tag = f"{name}-{'-'.join(wl.name for wl in group)}-{attempt}"
                        out = _run_subprocess(python, spec, tmp, tag, reuse=bool(args.work_dir))
                    noisy = []
                    for wl in group:
                        res = out.get("workloads", {}).get(wl.name)
                        if res is None and "skipped" in out:
                            res = {"skipped": out["skipped"]}
                        elif res is None:
                            res = {"error": out.get("error", "no result")}
                        res["attempt"] = attempt + 1
                        old = results[name].get(wl.name)
                        if old is None or _quieter(res, old):
                            results[name][wl.name] = res
                        if (results[name][wl.name].get("others_cpu") or 0) > args.noisy_threshold:
                            noisy.append(wl)
                    if noisy:
                        still_noisy.append(noisy)
                pending = still_noisy
                if not pending:
                    break

    finally:
        failed = any("error" in res for per in results.values() for res in per.values())
        if failed or args.work_dir:
            logger.warning("worker logs kept in %s", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for wl, tokens in workloads:
        reference = "recipe-fp32" if "recipe-fp32" in results else "recipe"
        ref = results.get(reference, {}).get(wl.name, {}).get("scores")
        ours = results.get("ours", {}).get(wl.name, {})
        ours_rate = wl.n_docs / ours["best_s"] if "best_s" in ours else None
        for name in args.contender_list:
            row: dict[str, Any] = {
                "workload": wl.name,
                "workload_description": wl.description,
                "contender": name,
                "label": LABELS[name],
                "n_docs": wl.n_docs,
                "prompt_tokens": tokens,
            }
            rows.append(row)
            if name in skipped:
                row["status"] = f"skipped: {skipped[name]}"
                continue
            res = results[name][wl.name]
            if "skipped" in res:
                row["status"] = f"skipped: {res['skipped']}"
                continue
            if "error" in res:
                row["status"] = f"failed: {res['error']}"
                continue
            rate = wl.n_docs / res["best_s"]
            row.update(
                status="ok",
                docs_per_s=rate,
                median_s=res["median_s"],
                best_s=res["best_s"],
                times=res["times"],
                ours_speedup=(ours_rate / rate) if ours_rate else None,
                best_cpu_s=res.get("best_cpu_s"),
                ours_cpu_speedup=(
                    res["best_cpu_s"] / ours["best_cpu_s"]
                    if res.get("best_cpu_s") and ours.get("best_cpu_s")
                    else None
                ),
                peak_rss_mib=res["peak_rss"] / 2**20,
                others_cpu=res.get("others_cpu"),
                peak_cuda_mib=res["peak_cuda"] / 2**20 if "peak_cuda" in res else None,
                max_abs_diff=max_abs_diff(res["scores"], ref),
                top10_overlap=_top_k_overlap(res["scores"], ref),
                model_flops_per_s=2 * n_params * tokens / res["best_s"],
                note=res.get("note", ""),
            )
            row["dtype_used"] = res.get("dtype_used") or dtype
            rate = rates.get(row["dtype_used"]) or peak_flops
            row["mfu"] = row["model_flops_per_s"] / rate
            row["scores"] = res["scores"]

    report = {
        "command": "python benchmarks/bench_rerank.py " + shlex.join(args.argv),
        "machine": machine_info(device),
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "config_name": args.config,
        "model_config": config,
        "model_dir": str(model_dir),
        "non_embedding_params": n_params,
        "matmul_flops_per_s": peak_flops,
        "matmul_flops_per_s_by_dtype": measured,
        "mfu_flops_per_s_by_dtype": rates,
        "native_bf16": native_bf16,
        "save_dtype": args.save_dtype,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "recipe_runs": (
            f"{args.recipe_repeat if args.recipe_repeat is not None else args.repeat} after "
            f"{args.recipe_warmup if args.recipe_warmup is not None else args.warmup} warmup"
        ),
        "loadavg": [load_before, os.getloadavg()[0]],
        "skipped": skipped,
        "rows": rows,
    }
    if concurrency:
        report["concurrency"] = concurrency
    if any(name in VLLM_CONTENDERS for name in args.contender_list):
        report["machine"]["versions"]["vllm-cpu (vLLM venv)"] = _vllm_version(args.vllm_python)
    return report


def _run_concurrency(
    args: argparse.Namespace, base_spec: dict[str, Any], wl: Workload, tmp: Path
) -> dict[str, Any]:
    """The concurrency workload ``wl`` on ours (in a worker process unless --in-process)."""
    spec = {
        **base_spec,
        "kind": "concurrency",
        "workloads": [wl.to_json()],
        "warmup": args.warmup,
        "repeat": max(1, args.repeat),
    }
    logger.info("concurrency: %s", wl.name)
    if args.in_process:
        return run_concurrency(spec)
    tag = f"concurrency-{wl.name}"
    out = _run_subprocess(sys.executable, spec, tmp, tag, reuse=bool(args.work_dir))
    return out if "rows" in out else {"workload": wl.name, "error": out.get("error", "?")}


def _vllm_version(python: str) -> str | None:
    if not Path(python).exists():
        return None
    try:
        out = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _quieter(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether result ``new`` was measured on a quieter machine than ``old``."""
    if "error" in new:
        return "error" in old
    if "error" in old:
        return True
    return bool((new.get("others_cpu") or 0.0) < (old.get("others_cpu") or 0.0))


def _machine_busy(interval: float = 2.0) -> float | None:
    """Share of the machine's CPU time in use over ``interval`` s (None off Linux)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = read()
        time.sleep(interval)
        busy1, total1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / max(1, total1 - total0)


def _wait_idle(max_wait: float, threshold: float = 0.1) -> None:
    """Wait (at most ``max_wait`` s) until other processes leave the CPU alone."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = _machine_busy()
        if busy is None or busy < threshold:
            return
        if time.monotonic() > deadline:
            logger.warning("machine still busy (%.0f%% CPU); starting anyway", 100 * busy)
            return
        logger.info("machine busy (%.0f%% CPU in use by other processes); waiting", 100 * busy)
        time.sleep(10)


def _skip_reason(name: str, args: argparse.Namespace) -> str | None:
    if name == "st" and _version("sentence-transformers") is None:
        return 'sentence-transformers is not installed (pip install "sentence-transformers>=6.2")'
    if name in VLLM_CONTENDERS:
        if args.in_process:
            return "vLLM contenders need a worker process (not with --in-process)"
        if not Path(args.vllm_python).exists():
            return f"no vLLM venv at {args.vllm_python}; create it with scripts/setup_vllm_venv.sh"
        if name == "ours-vllm" and not (REPO / "qwen3_rerank_core/_backends/_vllm.py").exists():
            return "qwen3_rerank_core has no vllm backend yet"
    return None


#: Top-k of each query compared with the reference's (``top10_overlap``).
TOP_K = 10


def _top_k_overlap(
    scores: list[list[float]], ref: list[list[float]] | None, k: int = TOP_K
) -> float | None:
    """Share of the reference's top ``k`` documents (per query) that are also in this row's
    top ``k``, over all queries: 1.0 when every query's top ``k`` set is the same."""
    if ref is None or len(scores) != len(ref):
        return None
    shared = total = 0
    for got, want in zip(scores, ref, strict=True):
        n = min(k, len(want))
        if len(got) != len(want) or n == 0:
            continue
        top = set(sorted(range(len(got)), key=lambda i: -got[i])[:n])
        top_ref = set(sorted(range(len(want)), key=lambda i: -want[i])[:n])
        shared += len(top & top_ref)
        total += n
    return shared / total if total else None


# ------------------------------------------------------------------------ output
def _fmt(value: float | None, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """Cells of the results table (header first)."""
    cuda = report["device"].startswith("cuda")
    header = [
        "workload",
        "contender",
        "dtype",
        "docs/s",
        "ours x",
        "CPU s",
        "ours x (CPU)",
        "peak GPU MiB" if cuda else "peak RSS MiB",
        "max |d| vs recipe",
        "top-10 overlap",
        "MFU",
        "others' CPU",
        "notes",
    ]
    out = [header]
    for r in report["rows"]:
        if r["status"] != "ok":
            out.append([r["workload"], r["contender"], *["-"] * 10, r["status"]])
            continue
        mem = r["peak_cuda_mib"] if cuda else r["peak_rss_mib"]
        out.append(
            [
                r["workload"],
                r["contender"],
                str(r.get("dtype_used") or "-"),
                _fmt(r["docs_per_s"], ".2f" if r["docs_per_s"] < 100 else ".0f"),
                _fmt(r["ours_speedup"], ".2f"),
                _fmt(r.get("best_cpu_s"), ".2f"),
                _fmt(r.get("ours_cpu_speedup"), ".2f"),
                _fmt(mem, ".0f"),
                _fmt(r["max_abs_diff"], ".1e"),
                _fmt(r.get("top10_overlap"), ".2f"),
                _fmt(100 * r["mfu"], ".1f") + "%",
                _fmt(None if r["others_cpu"] is None else 100 * r["others_cpu"], ".0f") + "%",
                r.get("note", ""),
            ]
        )
    return out


def format_table(report: dict[str, Any], *, markdown: bool = False) -> str:
    cells = table_rows(report)
    if markdown:
        rows = [[c.replace("|", "\\|") for c in row] for row in cells]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        body = "\n".join(lines)
    else:
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]
        lines = []
        for row in cells:
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
            )
        body = "\n".join(lines)
    m = report["machine"]
    workloads = []
    seen = set()
    for r in report["rows"]:
        if r["workload"] not in seen:
            seen.add(r["workload"])
            workloads.append(
                f"{r['workload']}: {r['workload_description']}, "
                f"{r['n_docs']} docs, {r['prompt_tokens']} prompt tokens"
            )
    head = [
        f"config {report['config_name']} ({report['non_embedding_params'] / 1e6:.1f}M "
        f"non-embedding params, saved in {report.get('save_dtype', '?')}), {report['device']} "
        f"{report['dtype'] or 'each contender at its default dtype'}, "
        f"{report['threads']} threads; docs/s from the best of {report['repeat']} timed runs "
        f"after {report['warmup']} warmup (recipe: {report['recipe_runs']})",
        f"load average (1 min) before / after: {report['loadavg'][0]:.2f} / "
        f"{report['loadavg'][1]:.2f}",
        f"machine: {m.get('cpu', '?')}, nproc {m.get('nproc')}, RAM {m.get('ram_gib')} GiB"
        + (f", GPU {m['gpu']}" if "gpu" in m else "")
        + f"; {m['date']}",
        "matmul rate: "
        + ", ".join(
            f"{dt} {rate / 1e9:.1f} GFLOP/s"
            for dt, rate in report.get(
                "matmul_flops_per_s_by_dtype", {report["dtype"]: report["matmul_flops_per_s"]}
            ).items()
        )
        + " (MFU = 2 x non-embedding params x prompt tokens / time / the rate of the row's "
        "dtype"
        + (
            "; bf16 is not native on this CPU, so its rows against the float32 rate)"
            if report.get("native_bf16") is False
            and report["device"] == "cpu"
            and "bfloat16" in report.get("matmul_flops_per_s_by_dtype", {})
            else ")"
        ),
        *workloads,
        "ours x = ours (defaults) docs/s / this row's docs/s; CPU s = CPU seconds of the "
        "worker's process tree in its best timed run, ours x (CPU) = this row's CPU s / ours' "
        "(steadier than wall time on a shared machine, for 1-thread runs); others' CPU = share "
        "of the machine's CPU time used by other processes during the timed runs (should be ~0%)",
    ]
    sep = "\n\n" if markdown else "\n"
    return sep.join(["\n".join(("- " + h if markdown else h) for h in head), body])


def summary_table(reports: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """One line per (config, workload): ours' docs/s, MFU and ``ours x`` of every other row
    (wall time; in brackets, by the CPU time of the worker process trees)."""
    names: list[str] = []
    for rep in reports:
        for r in rep["rows"]:
            if r["contender"] != "ours" and r["contender"] not in names:
                names.append(r["contender"])
    cells = [["config", "workload", "ours docs/s", "ours MFU", *[f"x {n}" for n in names], "load"]]
    for rep in reports:
        by_wl: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rep["rows"]:
            by_wl.setdefault(r["workload"], {})[r["contender"]] = r
        for wl, rows in by_wl.items():
            ours = rows.get("ours", {})
            if ours.get("status") != "ok":
                cells.append([rep["config_name"], wl, "-", "-", *["-"] * len(names), "-"])
                continue
            ratios = []
            for n in names:
                other = rows.get(n, {})
                ok = other.get("status") == "ok"
                cell = _fmt(ours["docs_per_s"] / other["docs_per_s"] if ok else None, ".2f")
                if ok and other.get("ours_cpu_speedup"):
                    cell += f" ({other['ours_cpu_speedup']:.2f})"
                ratios.append(cell)
            load = "/".join(f"{x:.1f}" for x in rep["loadavg"])
            cells.append(
                [
                    rep["config_name"],
                    wl,
                    _fmt(ours["docs_per_s"], ".2f"),
                    _fmt(100 * ours["mfu"], ".0f") + "%",
                    *ratios,
                    load,
                ]
            )
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells[1:]])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def run_matrix(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``run`` once per ``--config``, all contenders on each; the 0.6B architecture gets
    fewer documents in a matrix on CPU (:data:`MATRIX_DOCS_SCALE`)."""
    reports = []
    for name in args.config_list:
        sub = argparse.Namespace(**vars(args))
        sub.config = name
        if len(args.config_list) > 1 and not (args.device or "cpu").startswith("cuda"):
            sub.docs_scale = args.docs_scale * MATRIX_DOCS_SCALE.get(name, 1.0)
        if args.work_dir:
            sub.work_dir = str(Path(args.work_dir).expanduser() / name)
        report = run(sub)
        print(format_table(report, markdown=args.markdown), flush=True)
        for result in report.get("concurrency", []):
            text = concurrency_table(result, markdown=args.markdown) if "rows" in result else ""
            print(text or f"concurrency {result['workload']}: {result['error']}", flush=True)
        reports.append(report)
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1], argv[2])
    args = parse_args(argv)
    args.argv = argv
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    reports = run_matrix(args)
    if len(reports) > 1:
        print(summary_table(reports, markdown=args.markdown))
    if args.json_out:
        out: Any = reports[0] if len(reports) == 1 else {"reports": reports}
        Path(args.json_out).write_text(json.dumps(out, indent=1), encoding="utf-8")
        logger.info("wrote %s", args.json_out)
    failed = [r for rep in reports for r in rep["rows"] if r["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
