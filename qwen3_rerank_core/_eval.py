"""Evaluate a first stage and its reranking on a BEIR-format folder.

This module reads the data, runs the first stage (a TREC run file, or BM25 from
the ``bm25s`` library), reranks its top candidates with a
:class:`~qwen3_rerank_core.Qwen3Reranker` (once per instruction), optionally
fuses each reranking with the first-stage scores under several
:class:`~qwen3_rerank_core.Fusion` settings (``docs/hybrid.md``), and hands
every run to ``ir_measures``, which computes the metrics. No metric is computed
here. It backs ``qwen3-rerank eval`` and needs the ``eval`` extra::

    pip install "qwen3-rerank-core[eval]"

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title", "text"}``),
``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (a header,
then ``query-id<TAB>corpus-id<TAB>score``).
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import MissingDependencyError
from ._fusion import Fusion, fuse
from ._prompt import DEFAULT_INSTRUCTION

if TYPE_CHECKING:
    from ._reranker import Qwen3Reranker

__all__ = [
    "DEFAULT_MEASURES",
    "BeirDataset",
    "EvalReport",
    "EvalRow",
    "FirstStage",
    "Run",
    "bm25_run",
    "check_fusions",
    "evaluate",
    "first_stage",
    "format_report",
    "fusion_run",
    "load_beir",
    "parse_measures",
    "read_run",
    "rerank_run",
    "run_eval",
    "top_candidates",
    "write_run",
]

logger = logging.getLogger("qwen3_rerank_core.eval")

_INSTALL = 'pip install "qwen3-rerank-core[eval]"'

#: ``ir_measures`` names of the default metrics (``RR@10`` is shown as MRR@10).
DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@10", "R@100")

#: query id -> {document id -> score}: the run format of ``ir_measures``.
Run = dict[str, dict[str, float]]


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"qwen3-rerank eval needs the {module!r} package: {_INSTALL}"
        ) from exc


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class BeirDataset:
    """A BEIR-format test collection, loaded into memory."""

    path: Path
    split: str
    corpus: dict[str, str]
    """Document id -> text (``title`` and ``text`` joined by a blank line when both exist)."""
    queries: dict[str, str]
    """Query id -> text, for the queries that have judgements in ``qrels``, in file order."""
    qrels: dict[str, dict[str, int]]
    """Query id -> {document id -> relevance grade}."""

    def subset(self, max_queries: int | None) -> BeirDataset:
        """The same collection restricted to its first ``max_queries`` queries."""
        if max_queries is None or max_queries >= len(self.queries):
            return self
        keep = list(self.queries)[:max_queries]
        return BeirDataset(
            path=self.path,
            split=self.split,
            corpus=self.corpus,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
        )


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {line.strip()!r:.60}"
                )
            yield lineno, record


def _record_id(path: Path, lineno: int, record: dict[str, Any]) -> str:
    rid = record.get("_id", record.get("id"))
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
        raise ValueError(f'{path}:{lineno}: missing "_id"')
    return str(rid)


def _find_qrels(folder: Path, split: str | None) -> Path:
    qdir = folder / "qrels"
    if split is not None:
        path = qdir / f"{split}.tsv"
        if not path.is_file():
            found = sorted(p.stem for p in qdir.glob("*.tsv"))
            raise FileNotFoundError(
                f"no qrels file {path} (splits found: {', '.join(found) or 'none'})"
            )
        return path
    files = sorted(qdir.glob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"no qrels/*.tsv in {folder}")
    if len(files) == 1:
        return files[0]
    for p in files:
        if p.stem == "test":
            return p
    raise ValueError(
        f"several qrels splits in {qdir} ({', '.join(p.stem for p in files)}): choose one with --split"
    )


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) == 4:  # TREC qrels: qid 0 docid rel
                row = [row[0], row[2], row[3]]
            if len(row) != 3:
                raise ValueError(f"{path}:{lineno}: expected query-id, corpus-id, score; got {row}")
            try:
                grade = int(row[2])
            except ValueError:
                if lineno == 1:  # the BEIR header
                    continue
                raise ValueError(
                    f"{path}:{lineno}: score must be an integer, got {row[2]!r}"
                ) from None
            qrels.setdefault(row[0], {})[row[1]] = grade
    if not qrels:
        raise ValueError(f"{path}: no judgements")
    return qrels


def load_beir(folder: str | Path, *, split: str | None = None) -> BeirDataset:
    """Load ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` from ``folder``.

    ``split=None`` takes the only qrels file, or ``test`` when there are several.
    Only queries that have judgements are kept (in the order of ``queries.jsonl``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root} is not a BEIR folder: {name} is missing")
    qrels_path = _find_qrels(root, split)
    qrels = _read_qrels(qrels_path)

    corpus: dict[str, str] = {}
    path = root / "corpus.jsonl"
    for lineno, record in _read_jsonl(path):
        title, text = record.get("title") or "", record.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise ValueError(f'{path}:{lineno}: "title" and "text" must be strings')
        corpus[_record_id(path, lineno, record)] = (
            f"{title}\n\n{text}" if title.strip() and text.strip() else title or text
        )
    all_queries: dict[str, str] = {}
    path = root / "queries.jsonl"
    for lineno, record in _read_jsonl(path):
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f'{path}:{lineno}: "text" must be a non-empty string')
        all_queries[_record_id(path, lineno, record)] = text

    queries = {q: t for q, t in all_queries.items() if q in qrels}
    missing = sorted(set(qrels) - set(all_queries))
    if missing:
        logger.warning(
            "%d judged queries are not in queries.jsonl and are skipped (e.g. %s)",
            len(missing),
            missing[0],
        )
    if not queries:
        raise ValueError(f"no query of {root / 'queries.jsonl'} has judgements in {qrels_path}")
    return BeirDataset(
        path=root,
        split=qrels_path.stem,
        corpus=corpus,
        queries=queries,
        qrels={q: qrels[q] for q in queries},
    )


# -------------------------------------------------------------- first stage
def read_run(path: str | Path) -> Run:
    """A TREC run file (``qid Q0 docid rank score tag``), read by ``ir_measures``."""
    ir_measures = _import("ir_measures")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such run file: {path}")
    run: Run = {}
    try:
        for doc in ir_measures.read_trec_run(str(path)):
            run.setdefault(doc.query_id, {})[doc.doc_id] = float(doc.score)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not a TREC run file ({exc})") from None
    if not run:
        raise ValueError(f"{path}: empty run file")
    return run


def bm25_run(dataset: BeirDataset, *, depth: int = 100, stopwords: str | None = "en") -> Run:
    """Top-``depth`` documents per query from ``bm25s`` (documents with a zero score are left out).

    ``stopwords`` is a language code that ``bm25s.tokenize`` knows (``"en"``,
    ``"de"``, ``"fr"``, ...), or ``None`` for none.
    """
    bm25s = _import("bm25s")
    quiet = logging.getLogger("bm25s")
    if quiet.level == logging.DEBUG:  # bm25s forces DEBUG on import; defer to the app's level
        quiet.setLevel(logging.NOTSET)
    doc_ids = list(dataset.corpus)
    query_ids = list(dataset.queries)
    corpus_tokens = bm25s.tokenize(
        [dataset.corpus[d] for d in doc_ids], stopwords=stopwords, show_progress=False
    )
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = bm25s.tokenize(
        [dataset.queries[q] for q in query_ids], stopwords=stopwords, show_progress=False
    )
    k = min(depth, len(doc_ids))
    found, scores = retriever.retrieve(query_tokens, k=k, show_progress=False)
    run: Run = {}
    for qi, qid in enumerate(query_ids):
        run[qid] = {
            doc_ids[int(d)]: float(s) for d, s in zip(found[qi], scores[qi], strict=True) if s > 0
        }
    return run


def top_candidates(run: Run, query_ids: Sequence[str], depth: int) -> dict[str, list[str]]:
    """The first ``depth`` document ids of each query, by score (ties: document id)."""
    out: dict[str, list[str]] = {}
    for qid in query_ids:
        docs = run.get(qid, {})
        out[qid] = sorted(docs, key=lambda d: (-docs[d], d))[:depth]
    return out


def write_run(run: Run, path: str | Path, *, tag: str) -> None:
    """Write ``run`` as a TREC run file."""
    with Path(path).open("w", encoding="utf-8") as f:
        for qid, docs in run.items():
            ranked = sorted(docs, key=lambda d: (-docs[d], d))
            for rank, doc in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {doc} {rank} {docs[doc]!r} {tag}\n")


# ----------------------------------------------------------------- reranking
def rerank_run(
    reranker: Qwen3Reranker,
    dataset: BeirDataset,
    candidates: dict[str, list[str]],
    *,
    instruction: str | None = None,
) -> Run:
    """Score every (query, candidate) pair in one batched ``score_many`` call."""
    query_ids = list(candidates)
    items = [(dataset.queries[q], [dataset.corpus[d] for d in candidates[q]]) for q in query_ids]
    scores = reranker.score_many(items, instruction=instruction)
    return {
        q: dict(zip(candidates[q], s, strict=True)) for q, s in zip(query_ids, scores, strict=True)
    }


def check_fusions(fusions: Sequence[Fusion]) -> list[Fusion]:
    """The fusion settings of an evaluation: ``Fusion`` objects without signals.

    Evaluation has the reranker's p(yes) and the first-stage scores, no caller signals.
    """
    out = []
    for i, fusion in enumerate(fusions):
        if not isinstance(fusion, Fusion):
            raise TypeError(f"fusions[{i}] must be a Fusion, got {type(fusion).__name__}")
        if fusion.signals:
            raise ValueError(
                f"fusion {fusion.spec!r}: eval has no signals, only relevance and first_stage"
            )
        out.append(fusion)
    return out


def fusion_run(first: Run, reranked: Run, candidates: dict[str, list[str]], fusion: Fusion) -> Run:
    """The fused score of each candidate: p(yes) from ``reranked``, first-stage scores from
    ``first``, candidates in first-stage order (the rank of ``mode="rank"``)."""
    out: Run = {}
    for qid, docs in candidates.items():
        fused = fuse(
            fusion,
            [reranked[qid][d] for d in docs],
            first_stage_scores=[first[qid][d] for d in docs],
        )
        out[qid] = {d: f.fused for d, f in zip(docs, fused, strict=True)}
    return out


# ------------------------------------------------------------------- metrics
def parse_measures(names: Sequence[str]) -> list[Any]:
    """``ir_measures`` measures from their names (``"nDCG@10"``, ``"RR@10"``, ``"R@100"``, ...)."""
    ir_measures = _import("ir_measures")
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name.strip()))
        except (NameError, ValueError, TypeError, SyntaxError) as exc:
            raise ValueError(
                f"unknown metric {name!r} ({exc}); use ir_measures names like nDCG@10, RR@10, R@100"
            ) from None
    if not measures:
        raise ValueError("no metric given")
    return measures


def evaluate(
    qrels: dict[str, dict[str, int]], run: Run, measures: Sequence[Any]
) -> dict[str, float]:
    """Mean of each measure over the queries of ``qrels``, by ``ir_measures.calc_aggregate``.

    A query of ``qrels`` that has no document in ``run`` counts as 0.
    """
    ir_measures = _import("ir_measures")
    values = ir_measures.calc_aggregate(measures, qrels, run)
    return {str(m): float(values[m]) for m in measures}


def display_name(measure: str) -> str:
    """``RR@10`` -> ``MRR@10`` (the mean of RR over queries); other names unchanged."""
    return "M" + measure if measure.startswith("RR") else measure


# -------------------------------------------------------------------- report
@dataclass(frozen=True)
class EvalRow:
    """One system: the first stage, the reranker with one instruction, or its fusion."""

    system: str
    instruction: str | None
    values: dict[str, float]
    fusion: str | None = None
    """The :attr:`Fusion.spec` of a fused row; ``None`` for the others."""


@dataclass(frozen=True)
class EvalReport:
    """Metrics of the first stage and of each reranked run."""

    dataset: str
    split: str
    num_queries: int
    num_documents: int
    first_stage: str
    depth: int
    model: str
    measures: list[str]
    rows: list[EvalRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "num_queries": self.num_queries,
            "num_documents": self.num_documents,
            "first_stage": self.first_stage,
            "depth": self.depth,
            "model": self.model,
            "measures": list(self.measures),
            "rows": [
                {"system": r.system, "instruction": r.instruction, "values": dict(r.values)}
                | ({} if r.fusion is None else {"fusion": r.fusion})
                for r in self.rows
            ],
        }


@dataclass(frozen=True)
class FirstStage:
    """The first stage of an evaluation, restricted to the candidates that are reranked."""

    name: str
    candidates: dict[str, list[str]]
    """Query id -> the top-``depth`` document ids, in first-stage order."""
    run: Run
    """The first-stage scores of those candidates."""


def first_stage(
    dataset: BeirDataset,
    run: Run | None,
    *,
    run_name: str = "run",
    depth: int = 100,
    bm25_stopwords: str | None = "en",
) -> FirstStage:
    """The top-``depth`` candidates of ``run`` (or of BM25 when ``run`` is ``None``)."""
    if run is None:
        name, run = "bm25", bm25_run(dataset, depth=depth, stopwords=bm25_stopwords)
    else:
        name = run_name
    query_ids = list(dataset.queries)
    absent = [q for q in query_ids if not run.get(q)]
    if absent:
        logger.warning(
            "%d queries have no first-stage candidates (e.g. %s)", len(absent), absent[0]
        )
    candidates = top_candidates(run, query_ids, depth)
    unknown = {d for docs in candidates.values() for d in docs if d not in dataset.corpus}
    if unknown:
        logger.warning(
            "%d first-stage documents are not in corpus.jsonl and are dropped (e.g. %s)",
            len(unknown),
            sorted(unknown)[0],
        )
        candidates = {q: [d for d in docs if d in dataset.corpus] for q, docs in candidates.items()}
    scores = {q: {d: run[q][d] for d in docs} for q, docs in candidates.items()}
    return FirstStage(name, candidates, scores)


def _reranked_rows(
    reranker: Qwen3Reranker,
    dataset: BeirDataset,
    first: FirstStage,
    instructions: Sequence[str | None],
    fusions: Sequence[Fusion],
    score: Callable[[Run], dict[str, float]],
    save: Callable[[Run, str, str], None],
) -> list[EvalRow]:
    """Per instruction: the reranked row, then one row per fusion of its scores."""
    rows = []
    for i, instruction in enumerate(instructions, start=1):
        logger.info(
            "reranking %d queries with instruction %d/%d",
            len(first.candidates),
            i,
            len(instructions),
        )
        reranked = rerank_run(reranker, dataset, first.candidates, instruction=instruction)
        save(reranked, f"reranked_{i}.trec", f"qwen3-rerank-{i}")
        shown = instruction if instruction is not None else reranker.default_instruction
        rows.append(EvalRow(f"reranked [{i}]", shown, score(reranked)))
        for j, fusion in enumerate(fusions, start=1):
            fused = fusion_run(first.run, reranked, first.candidates, fusion)
            save(fused, f"fused_{i}_{j}.trec", f"qwen3-rerank-{i}-fusion-{j}")
            rows.append(EvalRow(f"fused [{i}.{j}]", shown, score(fused), fusion.spec))
    return rows


def run_eval(
    reranker: Qwen3Reranker,
    dataset: BeirDataset,
    *,
    instructions: Sequence[str | None] = (None,),
    run: Run | None = None,
    run_name: str = "run",
    depth: int = 100,
    measures: Sequence[str] = DEFAULT_MEASURES,
    bm25_stopwords: str | None = "en",
    save_runs: str | Path | None = None,
    fusions: Sequence[Fusion] = (),
) -> EvalReport:
    """Evaluate the first stage (``run``, or BM25) and its reranking with each instruction.

    Both are evaluated on the same top-``depth`` candidates of the first stage,
    so recall at ``depth`` is the same for all rows: the reranker only reorders.
    ``None`` in ``instructions`` means the reranker's default instruction. Each of
    ``fusions`` adds, per instruction, a row ranked by the fused score of the
    reranker's p(yes) and the first-stage scores (``docs/hybrid.md``).
    """
    parsed = parse_measures(measures)
    if not instructions:
        raise ValueError("instructions must not be empty")
    fusions = check_fusions(fusions)
    first = first_stage(dataset, run, run_name=run_name, depth=depth, bm25_stopwords=bm25_stopwords)
    out_dir = Path(save_runs) if save_runs is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    def save(result: Run, name: str, tag: str) -> None:
        if out_dir is not None:
            write_run(result, out_dir / name, tag=tag)

    def score(result: Run) -> dict[str, float]:
        return evaluate(dataset.qrels, result, parsed)

    save(first.run, "first_stage.trec", first.name)
    rows = [EvalRow(f"{first.name} (first stage)", None, score(first.run))]
    rows += _reranked_rows(reranker, dataset, first, instructions, fusions, score, save)
    return EvalReport(
        dataset=str(dataset.path),
        split=dataset.split,
        num_queries=len(dataset.queries),
        num_documents=len(dataset.corpus),
        first_stage=first.name,
        depth=depth,
        model=reranker.config.model,
        measures=[str(m) for m in parsed],
        rows=rows,
    )


def format_report(report: EvalReport, *, markdown: bool = False) -> str:
    """The report as an aligned text table (or a Markdown table) with a legend of instructions."""
    headers = ["system", *(display_name(m) for m in report.measures)]
    fused = any(row.fusion is not None for row in report.rows)
    if markdown:
        headers += ["instruction", "fusion"] if fused else ["instruction"]
    body: list[list[str]] = []
    for row in report.rows:
        cells = [row.system, *(f"{row.values[m]:.4f}" for m in report.measures)]
        if markdown:
            cells.append((row.instruction or "").replace("|", "\\|"))
            cells += [row.fusion or ""] if fused else []
        body.append(cells)
    summary = (
        f"{report.dataset} ({report.split}): {report.num_queries} queries, "
        f"{report.num_documents} documents; first stage {report.first_stage}, "
        f"top {report.depth} reranked by {report.model}"
    )
    if markdown:
        lines = [summary, "", "| " + " | ".join(headers) + " |"]
        lines.append(
            "|"
            + "|".join(
                "---" if i == 0 or i > len(report.measures) else "---:" for i in range(len(headers))
            )
            + "|"
        )
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [summary, "", fmt(headers), *(fmt(c) for c in body), ""]
    return "\n".join(lines + [_legend(row, report.first_stage) for row in report.rows[1:]]) + "\n"


def _legend(row: EvalRow, first_stage: str) -> str:
    """``[1] <instruction>`` for a reranked row, ``[1.2] <fusion spec> ...`` for a fused one."""
    label = row.system.split(" ", 1)[-1]
    if row.fusion is not None:
        of = label.split(".", 1)[0] + "]"
        return f"{label} fusion {row.fusion} of {of} and {first_stage}"
    default = " (default)" if row.instruction == DEFAULT_INSTRUCTION else ""
    return f"{label} {row.instruction}{default}"
