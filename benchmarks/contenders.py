"""The contenders of the benchmark, and the worker that times one of them.

Every contender loads a checkpoint folder, then scores whole workloads
(``[(query, [documents])]`` -> ``[[scores]]``) with the default instruction:

* ``recipe``: the official model-card recipe (``tests/recipe.py``) as written:
  pairs in one left-padded batch, full-vocabulary logits at every position.
  When one batch would need more than ``recipe_logits_gib`` of logits, it runs
  the recipe over fixed-size chunks of pairs (in input order) and says so.
* ``ours``: ``Qwen3Reranker(backend="transformers")`` with default settings;
  ``ours-tuned``: the same with ``max_batch_tokens=tuned_batch_tokens``.
* ``st``: sentence-transformers ``CrossEncoder`` on a copy of the folder whose
  ``tokenizer_config.json`` holds a Qwen3-Reranker chat template
  (:data:`ST_CHAT_TEMPLATE`), scored with ``predict(pairs, prompt=instruction)``.
* ``vllm``: in-process ``vllm.LLM`` (pooling runner, the model turned into a
  yes-minus-no classifier by ``hf_overrides``), fed the recipe's token ids;
  ``vllm-default``: the same with vLLM's default automatic prefix caching on,
  each run with a fresh query, so that only reuse within one call counts;
  ``ours-vllm``: ``Qwen3Reranker(backend="vllm")``. All run in the vLLM venv.

This module is imported by ``bench_rerank.py`` in the main venv and in the
vLLM venv (as a worker subprocess); heavy imports happen inside functions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workloads import Workload

logger = logging.getLogger("bench_rerank")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

#: Chat template that makes sentence-transformers build the recipe's exact prompt.
#: ``predict(pairs, prompt=instruction)`` passes the instruction as the system
#: message; the pair arrives as roles "query" and "document". The final
#: "</think>" + two newlines is written as an expression because Jinja drops a
#: template's trailing newline.
ST_CHAT_TEMPLATE = (
    "{%- set ns = namespace(query='', document='', instruction='" + DEFAULT_INSTRUCTION + "') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.instruction = message['content'] -%}"
    "{%- elif message['role'] == 'query' -%}{%- set ns.query = message['content'] -%}"
    "{%- elif message['role'] == 'document' -%}{%- set ns.document = message['content'] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<|im_start|>system\\nJudge whether the Document meets the requirements based on "
    'the Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
    "<|im_end|>\\n<|im_start|>user\\n' -}}"
    "{{- '<Instruct>: ' + ns.instruction + '\\n<Query>: ' + ns.query + '\\n<Document>: ' "
    "+ ns.document -}}"
    "{{- '<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' -}}"
)

VLLM_HF_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}

VLLM_CONTENDERS = ("vllm", "vllm-default", "ours-vllm")
ALL_CONTENDERS = (
    "recipe",
    "recipe-fp32",
    "ours",
    "ours-tuned",
    "ours-compiled",
    "st",
    "vllm",
    "vllm-default",
    "ours-vllm",
)


def _import_recipe() -> Any:
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import recipe

    return recipe


def _torch_dtype(dtype: str) -> Any:
    import torch

    return getattr(torch, dtype)


def _dtype_kwargs(dtype: str | None) -> dict[str, Any]:
    """``{"dtype": ...}`` for ``from_pretrained``, or nothing: ``dtype=None`` (``--dtype
    default``) leaves every contender at its own default, as its users run it."""
    return {} if dtype is None else {"dtype": _torch_dtype(dtype)}


def _saved_dtype(model_dir: str) -> str:
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def _split(flat: Sequence[float], workload: Workload) -> list[list[float]]:
    out, start = [], 0
    for _, docs in workload.items:
        out.append([float(x) for x in flat[start : start + len(docs)]])
        start += len(docs)
    return out


def _pairs(workload: Workload) -> list[tuple[str, str]]:
    return [(q, d) for q, docs in workload.items for d in docs]


class Contender:
    """Base: ``load`` once, ``prepare`` per workload (untimed), ``score`` (timed)."""

    name = ""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.model_dir = spec["model_dir"]
        self.device = spec["device"]
        self.dtype = spec["dtype"]
        self.note = ""

    def load(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self, workload: Workload) -> None:
        self.note = ""

    def score(self, workload: Workload) -> list[list[float]]:  # pragma: no cover
        raise NotImplementedError

    def before_run(self) -> None:
        """Called (untimed) before every scoring run."""

    def checked_scores(self, workload: Workload) -> list[list[float]] | None:
        """Scores of ``workload`` itself when the timed runs scored something else."""
        return None

    def close(self) -> None:
        pass

    def dtype_used(self) -> str:
        """The dtype the contender computes in (for the report and the MFU)."""
        return self.dtype or _saved_dtype(self.model_dir)


class RecipeContender(Contender):
    name = "recipe"

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._recipe_mod = _import_recipe()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, padding_side="left")
        self.model = (
            AutoModelForCausalLM.from_pretrained(self.model_dir, **_dtype_kwargs(self.dtype))
            .to(torch.device(self.device))
            .eval()
        )
        self.vocab = int(self.model.config.vocab_size)

    def prepare(self, workload: Workload) -> None:
        import torch

        rm = self._recipe_mod
        self.recipe = rm.OfficialRecipe(
            self.model_dir,
            max_length=workload.max_length,
            model=self.model,
            tokenizer=self.tokenizer,
            full_logits=True,
        )
        pairs = [rm.format_instruction(None, q, d) for q, d in _pairs(workload)]
        self.pairs = pairs
        width = max(len(x) for x in self.recipe.token_ids(pairs))
        row_bytes = width * self.vocab * 4  # logits of one pair (fp32 worst case)
        fixed = self.spec.get("recipe_batch_size")
        if fixed:
            self.batch_size = int(fixed)
            self.note = f"chunks of {self.batch_size} (--recipe-batch-size)"
            return
        budget = self.spec.get("recipe_logits_gib")
        if budget is None:
            if self.device.startswith("cuda"):
                total = torch.cuda.get_device_properties(torch.device(self.device)).total_memory
                budget = 0.25 * total / 2**30
            else:
                budget = 4.0
        per_batch = max(1, int(budget * 2**30 // row_bytes))
        if per_batch >= len(pairs):
            self.batch_size = len(pairs)
            self.note = f"all {len(pairs)} pairs in one batch"
        else:
            self.batch_size = per_batch
            self.note = (
                f"chunks of {per_batch}: one batch of {len(pairs)} would need "
                f"{len(pairs) * row_bytes / 2**30:.0f} GiB of logits (> {budget:g} GiB)"
            )

    def score(self, workload: Workload) -> list[list[float]]:
        return _split(self.recipe.score_pairs(self.pairs, batch_size=self.batch_size), workload)

    def close(self) -> None:
        self.model = None

    def dtype_used(self) -> str:
        return str(self.model.dtype).removeprefix("torch.")


class RecipeFp32Contender(RecipeContender):
    """The recipe in float32 whatever ``--dtype`` says: the reference of every score
    deviation when the other rows run at their defaults (bf16 on a bf16 checkpoint)."""

    name = "recipe-fp32"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.dtype = "float32"


class OursContender(Contender):
    name = "ours"

    def settings(self) -> dict[str, Any]:
        return {}

    def load(self) -> None:
        self.readers: dict[int, Any] = {}

    def _reader(self, max_length: int) -> Any:
        from qwen3_rerank_core import Qwen3Reranker

        if max_length not in self.readers:
            for old in self.readers.values():
                old.close()
            self.readers = {
                max_length: Qwen3Reranker(
                    model=self.model_dir,
                    backend="transformers",
                    device=self.device,
                    dtype=self.dtype,
                    max_length=max_length,
                    **self.settings(),
                ).load()
            }
        return self.readers[max_length]

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self._reader(workload.max_length)
        if self.settings():
            self.note = ", ".join(f"{k}={v}" for k, v in self.settings().items())

    def score(self, workload: Workload) -> list[list[float]]:
        rr = self._reader(workload.max_length)
        if len(workload.items) == 1:
            query, docs = workload.items[0]
            return [rr.score(query, docs)]
        return rr.score_many(workload.items)

    def close(self) -> None:
        for rr in self.readers.values():
            rr.close()
        self.readers = {}

    def dtype_used(self) -> str:
        for rr in self.readers.values():
            dtype = getattr(getattr(rr, "_backend", None), "dtype", None)
            if dtype is not None:
                return str(dtype).removeprefix("torch.")
        return super().dtype_used()


class OursTunedContender(OursContender):
    name = "ours-tuned"

    def settings(self) -> dict[str, Any]:
        return {"max_batch_tokens": int(self.spec["tuned_batch_tokens"])}


class OursCompiledContender(OursContender):
    """Ours with ``compile=True``: the layers run under ``torch.compile``. The first call
    on each workload compiles (the warmup run); its time is in the note."""

    name = "ours-compiled"

    def settings(self) -> dict[str, Any]:
        return {"compile": True}

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self.first_call_s: float | None = None

    def score(self, workload: Workload) -> list[list[float]]:
        start = time.perf_counter()
        scores = super().score(workload)
        if self.first_call_s is None:
            self.first_call_s = time.perf_counter() - start
            self.note = f"compile=True; first call {self.first_call_s:.1f} s (compiles)"
        return scores


class OursVllmContender(OursContender):
    name = "ours-vllm"

    def load(self) -> None:
        super().load()
        _vllm_env(self.spec)
        _check_vllm_device(self.device)

    def before_run(self) -> None:
        # Like the vllm contender: no prefix-cache hits carried over from the previous run.
        for rr in self.readers.values():
            llm = getattr(getattr(rr, "_backend", None), "_llm", None)
            if llm is None:
                raise RuntimeError("cannot reach the vllm.LLM of the vllm backend")
            llm.reset_prefix_cache()

    def _reader(self, max_length: int) -> Any:
        from qwen3_rerank_core import Qwen3Reranker

        if not self.readers:
            self.readers = {
                0: Qwen3Reranker(
                    model=self.model_dir,
                    backend="vllm",
                    dtype=self.dtype,
                    max_length=self.spec["max_length"],
                    backend_options={"enable_prefix_caching": False},
                ).load()
            }
        return self.readers[0]


class STContender(Contender):
    name = "st"

    def load(self) -> None:
        from sentence_transformers import CrossEncoder

        src = Path(self.model_dir)
        self.folder = Path(tempfile.mkdtemp(prefix="st-qwen3-"))
        for f in src.iterdir():
            if f.name != "tokenizer_config.json":
                (self.folder / f.name).symlink_to(f.resolve())
        config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["chat_template"] = ST_CHAT_TEMPLATE
        (self.folder / "tokenizer_config.json").write_text(
            json.dumps(config, ensure_ascii=False), encoding="utf-8"
        )
        self.batch_size = int(self.spec.get("st_batch_size") or 32)
        self.model = CrossEncoder(
            str(self.folder),
            device=self.device,
            max_length=int(self.spec["max_length"]),
            model_kwargs=_dtype_kwargs(self.dtype),
        )

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self.note = f"batch_size={self.batch_size}"

    def score(self, workload: Workload) -> list[list[float]]:
        scores = self.model.predict(
            _pairs(workload),
            prompt=DEFAULT_INSTRUCTION,
            batch_size=self.batch_size,
            show_progress_bar=False,
        )
        return _split(scores.tolist(), workload)

    def close(self) -> None:
        self.model = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def dtype_used(self) -> str:
        return str(next(self.model.model.parameters()).dtype).removeprefix("torch.")


def _vllm_env(spec: dict[str, Any]) -> None:
    threads = int(spec["threads"])
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.get("vllm_kv_gib", 2)))
    # vLLM-CPU reserves one core and binds to the rest by default; give it the same
    # cores as the other contenders instead.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Skipped(Exception):
    """The contender cannot run here (reported as a skipped row, not a failure)."""


def _check_vllm_device(device: str) -> None:
    from vllm.platforms import current_platform

    if device.startswith("cuda") != bool(current_platform.is_cuda()):
        raise Skipped(
            f"--device {device} but this vLLM build runs on {current_platform.device_name!r}"
        )


class VllmContender(Contender):
    name = "vllm"
    #: vLLM's automatic prefix caching (on by default in vLLM; off in this row).
    prefix_caching = False

    def load(self) -> None:
        _vllm_env(self.spec)
        from transformers import AutoTokenizer
        from vllm import LLM

        _check_vllm_device(self.device)
        self._recipe_mod = _import_recipe()
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir, padding_side="left")
        self.llm = LLM(
            model=self.model_dir,
            runner="pooling",
            dtype=self.dtype or "auto",  # vLLM's default: the checkpoint's dtype
            max_model_len=int(self.spec["max_length"]) + 64,
            hf_overrides=VLLM_HF_OVERRIDES,
            seed=0,
            # Cold throughput: no prefix cache at all (the timed runs repeat the same
            # prompts, and a reset between runs did not keep the rows honest).
            enable_prefix_caching=self.prefix_caching,
        )
        self.tokenizer = tokenizer

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self.recipe = self._recipe_mod.OfficialRecipe(
            self.model_dir,
            max_length=workload.max_length,
            model=object(),  # tokenization only
            tokenizer=self.tokenizer,
        )
        self.note = f"token prompts, no prefix cache; {os.environ.get('VLLM_CPU_OMP_THREADS_BIND', '')} bound"
        if self.device.startswith("cuda"):
            self.note = "token prompts, no prefix cache"

    def before_run(self) -> None:
        # vLLM's automatic prefix cache would otherwise hold every prompt of the previous
        # (identical) run, and a timed run would compute only the last partial block of
        # each prompt. Sharing within one call (the query prefix) is kept.
        self.llm.reset_prefix_cache()

    def score(self, workload: Workload) -> list[list[float]]:
        return self._classify(workload)

    def _classify(self, workload: Workload) -> list[list[float]]:
        from vllm.inputs import TokensPrompt

        fmt = self._recipe_mod.format_instruction
        ids = self.recipe.token_ids([fmt(None, q, d) for q, d in _pairs(workload)])
        out = self.llm.classify([TokensPrompt(prompt_token_ids=x) for x in ids], use_tqdm=False)
        return _split([o.outputs.probs[0] for o in out], workload)


class VllmDefaultContender(VllmContender):
    """vLLM as its users run it: automatic prefix caching on (vLLM's default).

    Each run (warmup and timed) gets a fresh query (``"(request N) "`` in front
    of the workload's), so a run can reuse only what it shares within itself
    (the system prompt, instruction and query of its own prompts), never the
    documents' blocks cached by the previous run. The scores checked against
    the recipe come from one more, untimed run on the workload's own queries.
    """

    name = "vllm-default"
    prefix_caching = True

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self.note = "prefix cache on (vLLM default), a fresh query per run"
        self._runs = 0

    def before_run(self) -> None:
        self._runs += 1

    def score(self, workload: Workload) -> list[list[float]]:
        fresh = [(f"(request {self._runs}) {q}", docs) for q, docs in workload.items]
        return self._classify(
            Workload(workload.name, workload.description, workload.max_length, fresh)
        )

    def checked_scores(self, workload: Workload) -> list[list[float]] | None:
        self.llm.reset_prefix_cache()
        return self._classify(workload)


CONTENDER_CLASSES: dict[str, type[Contender]] = {
    c.name: c
    for c in (
        RecipeContender,
        RecipeFp32Contender,
        OursContender,
        OursTunedContender,
        OursCompiledContender,
        STContender,
        VllmContender,
        VllmDefaultContender,
        OursVllmContender,
    )
}


class ResourceSampler:
    """Peak RSS of this process and its children (sampled every ``interval`` s), and
    the share of the machine's CPU time that *other* processes used meanwhile.

    ``others_cpu`` is (busy CPU time of the whole machine - CPU time of this
    process tree) / (wall time x CPUs): 0 on a quiet machine. On a 2-core box
    a competing process slows every contender down a lot (OpenMP threads wait
    for each other), so figures taken with ``others_cpu`` above a few % are
    suspect.

    The sampler is a thread of the timed process, and each sample (the process tree's
    RSS through psutil) holds the GIL for a while: sampled every 10 ms, it cost the
    contenders that drive their forward from Python (ours, sentence-transformers) ~10 %
    on 2 cores (`8x512`, workload a: 34.2 -> 37.9 docs/s at 100 ms, 2026-12-05), and
    not vLLM, whose engine runs in another process. Hence 100 ms.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.others_cpu: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._psutil: Any = psutil
            self._proc: Any = psutil.Process()
        except ImportError:  # pragma: no cover - psutil is a benchmark dependency
            self._psutil = self._proc = None

    def _tree(self) -> list[Any]:
        try:
            return [self._proc, *self._proc.children(recursive=True)]
        except Exception:
            return [self._proc]

    def _rss(self) -> int:
        if self._proc is None:
            import resource

            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            return (own + kids) * 1024
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except Exception:
                continue
        return int(total)

    def _cpu(self) -> tuple[float, float] | None:
        """(busy CPU seconds of the machine, CPU seconds of this process tree)."""
        if self._proc is None:
            return None
        t = self._psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        own = 0.0
        for p in self._tree():
            try:
                c = p.cpu_times()
            except Exception:
                continue
            own += c.user + c.system
            if p is self._proc:
                own += c.children_user + c.children_system
        return busy, own

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> ResourceSampler:
        self.peak = self._rss()
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())
        cpu1 = self._cpu()
        wall = time.perf_counter() - self._t0
        if self._cpu0 is not None and cpu1 is not None and wall > 0:
            others = (cpu1[0] - self._cpu0[0]) - (cpu1[1] - self._cpu0[1])
            self.others_cpu = max(0.0, others) / (wall * (os.cpu_count() or 1))


def run_worker(
    spec: dict[str, Any], emit: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Load one contender and time it on each workload of ``spec``.

    Returns ``{"workloads": {name: result}}`` where a result holds ``times``
    (seconds per timed run), ``cpu_times`` / ``best_cpu_s`` (CPU seconds of the
    worker's process tree per timed run, where psutil can tell), ``scores`` (of the last run), ``peak_rss``,
    ``peak_cuda`` (bytes), ``others_cpu``, ``note`` and, on failure, ``error``.
    ``emit`` gets the results before the contender is closed (vLLM may abort
    while shutting down).
    """
    name = spec["contender"]
    if name not in VLLM_CONTENDERS:
        import torch

        torch.set_num_threads(int(spec["threads"]))
    workloads = [Workload.from_json(w) for w in spec["workloads"]]
    out: dict[str, Any] = {"workloads": {}}
    contender = CONTENDER_CLASSES[name](spec)
    t0 = time.perf_counter()
    try:
        contender.load()
    except Skipped as exc:
        out["skipped"] = str(exc)
        if emit is not None:
            emit(out)
        return out
    except Exception as exc:
        logger.exception("%s failed to load", name)
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["load_s"] = time.perf_counter() - t0
    cuda = spec["device"].startswith("cuda")
    torch_mod: Any = None
    if cuda:
        import torch as torch_mod
    warmup, repeat = int(spec["warmup"]), int(spec["repeat"])
    for wl in workloads:
        res: dict[str, Any] = {}
        out["workloads"][wl.name] = res
        try:
            contender.prepare(wl)
            if cuda:
                torch_mod.cuda.synchronize()
                torch_mod.cuda.reset_peak_memory_stats()
            times: list[float] = []
            cpu_times: list[float] = []  # CPU seconds of this process tree per timed run
            if warmup:
                for i in range(warmup):
                    contender.before_run()
                    start = time.perf_counter()
                    contender.score(wl)
                    logger.info(
                        "%s / %s: warmup %d/%d %.2f s",
                        name,
                        wl.name,
                        i + 1,
                        warmup,
                        time.perf_counter() - start,
                    )
            with ResourceSampler() as mem:
                for i in range(repeat):
                    contender.before_run()
                    cpu0 = mem._cpu()
                    start = time.perf_counter()
                    scores = contender.score(wl)
                    if cuda:
                        torch_mod.cuda.synchronize()
                    elapsed = time.perf_counter() - start
                    cpu1 = mem._cpu()
                    if cpu0 is not None and cpu1 is not None:
                        cpu_times.append(cpu1[1] - cpu0[1])
                    logger.info("%s / %s: run %d/%d %.2f s", name, wl.name, i + 1, repeat, elapsed)
                    times.append(elapsed)
            scores = contender.checked_scores(wl) or scores
            res.update(
                times=times,
                median_s=statistics.median(times),
                best_s=min(times),
                scores=scores,
                peak_rss=mem.peak,
                others_cpu=mem.others_cpu,
                note=contender.note,
                dtype_used=contender.dtype_used(),
            )
            if cpu_times:
                res.update(cpu_times=cpu_times, best_cpu_s=min(cpu_times))
            if cuda:
                res["peak_cuda"] = int(torch_mod.cuda.max_memory_allocated())
        except Exception as exc:
            logger.exception("%s failed on workload %s", name, wl.name)
            res["error"] = f"{type(exc).__name__}: {exc}"
    if emit is not None:
        emit(out)
    contender.close()
    return out
