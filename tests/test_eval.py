"""``qwen3-rerank eval`` and ``examples/two_stage_retrieval.py`` on the bundled BEIR set.

The tiny checkpoint has random weights, so metric *values* are not checked for
meaning; they are checked against direct calls of the libraries that compute
them (``ir_measures`` for the metrics, ``bm25s`` for the first stage, the core
for the reranker scores).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker
from qwen3_rerank_core._cli import main
from qwen3_rerank_core._eval import format_report, load_beir, run_eval

pytest.importorskip("transformers")
ir_measures = pytest.importorskip("ir_measures")
bm25s = pytest.importorskip("bm25s")

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "examples" / "data"
INSTRUCTION = "Given a question, retrieve passages that answer it"
# keep the runs small: 6 queries x 15 candidates x 2 instructions
SMALL = ["--depth", "15", "--max-queries", "6"]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> str:
    return str(tiny_model_dir)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    qrels: dict[str, dict[str, int]] = {}
    for qid, docid, grade in rows:
        qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def read_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for doc in ir_measures.read_trec_run(str(path)):
        run.setdefault(doc.query_id, {})[doc.doc_id] = doc.score
    return run


# ---------------------------------------------------------------- the data
def test_bundled_data_is_a_beir_folder() -> None:
    data = load_beir(DATA)
    assert data.split == "test"
    assert 30 <= len(data.corpus) <= 60
    assert 8 <= len(data.queries) <= 15
    assert data.qrels == read_qrels(DATA / "qrels" / "test.tsv")
    for qid, judged in data.qrels.items():
        assert qid in data.queries
        assert set(judged) <= set(data.corpus)
        assert any(grade > 0 for grade in judged.values())


# --------------------------------------------------------------------- eval
def test_eval_table_has_a_row_per_instruction(
    capsys: pytest.CaptureFixture[str], model: str
) -> None:
    rc, out, err = run(
        capsys, "eval", str(DATA), "-m", model, *SMALL,
        "--instruction", "default", "--instruction", INSTRUCTION,
    )  # fmt: skip
    assert rc == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("system"))
    assert header.split() == ["system", "nDCG@10", "MRR@10", "R@10", "R@15"]  # R@<depth>
    rows = {line.split("  ")[0].strip(): line for line in lines if "  0." in line or "  1." in line}
    assert set(rows) == {"bm25 (first stage)", "reranked [1]", "reranked [2]"}
    for line in rows.values():
        values = [float(v) for v in line.split()[-4:]]
        assert all(0.0 <= v <= 1.0 for v in values)
    assert f"[1] {DEFAULT_INSTRUCTION} (default)" in lines
    assert f"[2] {INSTRUCTION}" in lines
    assert "6 queries" in lines[0]


def test_eval_metrics_come_from_ir_measures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str
) -> None:
    runs = tmp_path / "runs"
    rc, out, err = run(
        capsys, "eval", str(DATA), "-m", model, *SMALL, "-f", "json", "--save-runs", str(runs),
        "-i", INSTRUCTION, "--metrics", "nDCG@10,RR@10,R@5,P@3",
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads(out)
    assert report["measures"] == ["nDCG@10", "RR@10", "R@5", "P@3"]
    assert report["num_queries"] == 6 and report["depth"] == 15
    first, reranked = report["rows"]
    assert reranked["instruction"] == INSTRUCTION

    qrels = read_qrels(DATA / "qrels" / "test.tsv")
    queries = [json.loads(line) for line in (DATA / "queries.jsonl").read_text().splitlines()]
    kept = [q["_id"] for q in queries if q["_id"] in qrels][:6]
    qrels = {q: qrels[q] for q in kept}
    measures = [ir_measures.parse_measure(m) for m in report["measures"]]
    for row, name in ((first, "first_stage.trec"), (reranked, "reranked_1.trec")):
        direct = ir_measures.calc_aggregate(measures, qrels, read_run(runs / name))
        assert row["values"] == pytest.approx({str(m): v for m, v in direct.items()}, abs=1e-9)

    # the first stage is bm25s's top 15 (zero scores left out) ...
    data = load_beir(DATA)
    doc_ids = list(data.corpus)
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(list(data.corpus.values()), show_progress=False), show_progress=False
    )
    qtokens = bm25s.tokenize([data.queries[q] for q in kept], show_progress=False)
    found, scores = retriever.retrieve(qtokens, k=15, show_progress=False)
    first_run = read_run(runs / "first_stage.trec")
    for i, qid in enumerate(kept):
        expected = {doc_ids[d]: float(s) for d, s in zip(found[i], scores[i], strict=True) if s > 0}
        assert first_run.get(qid, {}) == pytest.approx(expected, rel=1e-6)
    # ... and the reranked scores are the core's, with the instruction
    qid = kept[0]
    candidates = sorted(first_run[qid])
    with Qwen3Reranker(model=model) as rr:
        scores_core = rr.score(
            data.queries[qid], [data.corpus[d] for d in candidates], instruction=INSTRUCTION
        )
    reranked_run = read_run(runs / "reranked_1.trec")
    assert reranked_run[qid] == pytest.approx(dict(zip(candidates, scores_core, strict=True)))


def test_eval_with_a_trec_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str
) -> None:
    qrels = read_qrels(DATA / "qrels" / "test.tsv")
    path = tmp_path / "dense.trec"
    with path.open("w") as f:  # a "first stage" that puts one relevant document 3rd
        for qid, judged in qrels.items():
            docs = ["d47", "d48", *judged]
            for rank, doc in enumerate(dict.fromkeys(docs), start=1):
                f.write(f"{qid} Q0 {doc} {rank} {10.0 - rank} dense\n")
    rc, out, err = run(capsys, "eval", str(DATA), "-m", model, "--run", str(path), "-f", "markdown")
    assert rc == 0, err
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| system | nDCG@10 | MRR@10 | R@10 | R@100 | instruction |")
    assert table[2].startswith("| dense.trec (first stage) |")
    assert table[3].startswith("| reranked [1] |") and table[3].endswith(
        f"| {DEFAULT_INSTRUCTION} |"
    )
    run_dict = {q: {d: 10.0 - r for r, d in enumerate(dict.fromkeys(["d47", "d48", *j]), 1)}
                for q, j in qrels.items()}  # fmt: skip
    direct = ir_measures.calc_aggregate([ir_measures.parse_measure("nDCG@10")], qrels, run_dict)
    assert float(table[2].split("|")[2]) == pytest.approx(next(iter(direct.values())), abs=6e-5)


def test_run_eval_api(model: str) -> None:
    data = load_beir(DATA).subset(3)
    with Qwen3Reranker(model=model) as rr:
        report = run_eval(rr, data, instructions=[None, INSTRUCTION], depth=5)
    assert [r.system for r in report.rows] == ["bm25 (first stage)", "reranked [1]", "reranked [2]"]
    assert [r.instruction for r in report.rows] == [None, DEFAULT_INSTRUCTION, INSTRUCTION]
    assert "reranked [2]" in format_report(report)
    # same candidates: the reranker only reorders, so recall at the depth does not change
    assert {r.values["R@100"] for r in report.rows} == {report.rows[0].values["R@100"]}


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: ["eval", str(d / "nope")], "no such folder"),
        (lambda d: ["eval", str(d)], "corpus.jsonl is missing"),
        (lambda d: ["eval", str(DATA), "--split", "dev"], "no qrels file"),
        (lambda d: ["eval", str(DATA), "--metrics", "nDCG@10,Bogus@3"], "unknown metric"),
        (lambda d: ["eval", str(DATA), "--run", str(d / "missing.trec")], "no such run file"),
        (lambda d: ["eval", str(DATA), "--depth", "0"], "--depth"),
        (lambda d: ["eval", str(DATA), "-i", ""], "--instruction must not be empty"),
    ],
)
def test_eval_bad_input_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str, make: Any, needle: str
) -> None:
    rc, out, err = run(capsys, *make(tmp_path), "-m", model)
    assert rc != 0 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("qwen3-rerank") and needle in err


# ------------------------------------------------------------------ example
def test_two_stage_retrieval_example(capsys: pytest.CaptureFixture[str], model: str) -> None:
    path = REPO / "examples" / "two_stage_retrieval.py"
    spec = importlib.util.spec_from_file_location("two_stage_retrieval", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--model", model]) == 0
    out = capsys.readouterr().out
    assert "13 queries, 48 passages" in out
    header = next(line for line in out.splitlines() if "NDCG@10" in line)
    assert header.split() == ["NDCG@10", "MRR@10", "Recall@10"]
    for label in ("BM25 top 100", "reranked top 10"):
        row = next(line for line in out.splitlines() if line.startswith(label))
        values = [float(v) for v in row[len(label) :].split()]
        assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)
