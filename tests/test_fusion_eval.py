"""``qwen3-rerank eval --fusion``: fused rankings side by side with the reranker and BM25.

The tiny checkpoint has random weights, so metric values are not judged; they are
checked against ``ir_measures`` on the saved runs, and the fused runs against a
direct computation of the formula of ``docs/hybrid.md`` from the saved reranked
and first-stage runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import Fusion, Qwen3Reranker
from qwen3_rerank_core._cli import main
from qwen3_rerank_core._eval import check_fusions, format_report, load_beir, run_eval

pytest.importorskip("transformers")
ir_measures = pytest.importorskip("ir_measures")
pytest.importorskip("bm25s")

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
SMALL = ["--depth", "15", "--max-queries", "6"]
MIX = "relevance=0.7,first_stage=0.3"
RRF = "relevance=0.5,first_stage=20,mode=rank,k=10"


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> str:
    return str(tiny_model_dir)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def read_run(path: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for doc in ir_measures.read_trec_run(str(path)):
        out.setdefault(doc.query_id, {})[doc.doc_id] = doc.score
    return out


def fused_directly(
    first: dict[str, float],
    reranked: dict[str, float],
    w_rel: float,
    w_fs: float,
    mode: str,
    k: float,
) -> dict[str, float]:
    docs = sorted(first, key=lambda d: (-first[d], d))  # the first-stage order
    if mode == "rank":
        fs = {d: 1 / (k + 1 + sum(first[e] > first[d] for e in docs)) for d in docs}
    else:
        lo, hi = min(first.values()), max(first.values())
        fs = {d: 1.0 if hi == lo else (first[d] - lo) / (hi - lo) for d in docs}
    return {d: w_rel * reranked[d] + w_fs * fs[d] for d in docs}


def test_fusion_rows_are_the_formula_and_ir_measures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str
) -> None:
    runs = tmp_path / "runs"
    rc, out, err = run(
        capsys, "eval", str(DATA), "-m", model, *SMALL, "-f", "json", "--save-runs", str(runs),
        "--fusion", MIX, "--fusion", RRF,
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads(out)
    rows = report["rows"]
    assert [r["system"] for r in rows] == [
        "bm25 (first stage)", "reranked [1]", "fused [1.1]", "fused [1.2]",
    ]  # fmt: skip
    assert "fusion" not in rows[0] and "fusion" not in rows[1]
    assert rows[2]["fusion"] == Fusion.from_spec(MIX).spec == MIX + ",mode=auto,k=60"
    assert rows[3]["fusion"] == RRF
    assert rows[2]["instruction"] == rows[1]["instruction"]

    first, reranked = read_run(runs / "first_stage.trec"), read_run(runs / "reranked_1.trec")
    qrels = load_beir(DATA).subset(6).qrels
    measures = [ir_measures.parse_measure(m) for m in report["measures"]]
    for row, name, (w_rel, w_fs, mode, k) in (
        (rows[2], "fused_1_1.trec", (0.7, 0.3, "score", 60)),
        (rows[3], "fused_1_2.trec", (0.5, 20.0, "rank", 10)),
    ):
        fused = read_run(runs / name)
        assert set(fused) == set(first)
        for qid in first:
            expected = fused_directly(first[qid], reranked[qid], w_rel, w_fs, mode, k)
            assert fused[qid] == pytest.approx(expected, abs=1e-12)
        direct = ir_measures.calc_aggregate(measures, qrels, fused)
        assert row["values"] == pytest.approx({str(m): v for m, v in direct.items()}, abs=1e-9)


def test_fusion_extremes_reproduce_the_reranker_and_the_first_stage(model: str) -> None:
    data = load_beir(DATA).subset(6)
    fusions = [Fusion(), Fusion(relevance=0.0, first_stage=1.0)]
    with Qwen3Reranker(model=model) as rr:
        report = run_eval(rr, data, depth=15, fusions=fusions, measures=["nDCG@10", "RR@10"])
    first, reranked, plain, bm25_only = report.rows
    assert plain.values == reranked.values  # fused = p(yes)
    assert bm25_only.values == first.values  # min-max keeps the first-stage order
    # same candidates: recall at the depth is the same on every row
    assert [r.fusion for r in report.rows] == [None, None, fusions[0].spec, fusions[1].spec]


def test_text_and_markdown_tables(capsys: pytest.CaptureFixture[str], model: str) -> None:
    args = ["eval", str(DATA), "-m", model, "--depth", "10", "--max-queries", "3"]
    rc, out, err = run(capsys, *args, "-i", "default", "-i", "Find answers", "--fusion", MIX)
    assert rc == 0, err
    lines = out.splitlines()
    systems = [
        line.split("  ")[0] for line in lines if line.startswith(("bm25", "reranked", "fused"))
    ]
    assert systems == [
        "bm25 (first stage)",
        "reranked [1]",
        "fused [1.1]",
        "reranked [2]",
        "fused [2.1]",
    ]
    spec = Fusion.from_spec(MIX).spec
    assert f"[1.1] fusion {spec} of [1] and bm25" in lines
    assert f"[2.1] fusion {spec} of [2] and bm25" in lines
    assert "[2] Find answers" in lines

    rc, out, err = run(capsys, *args, "--fusion", MIX, "-f", "markdown")
    assert rc == 0, err
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0].endswith("| instruction | fusion |")
    assert table[3].startswith("| reranked [1] |") and table[3].endswith(" |  |")
    assert table[4].startswith("| fused [1.1] |") and table[4].endswith(f"| {spec} |")


def test_without_fusion_the_report_is_unchanged(model: str) -> None:
    data = load_beir(DATA).subset(3)
    with Qwen3Reranker(model=model) as rr:
        plain = run_eval(rr, data, depth=5)
        with_none = run_eval(rr, data, depth=5, fusions=[])
    assert plain == with_none
    assert all("fusion" not in row for row in plain.to_dict()["rows"])
    table = format_report(plain, markdown=True).splitlines()[2]
    assert table.endswith("| instruction |") and "fusion" not in table


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("relevance=0.7,first_stage", "expected key=value, got 'first_stage'"),
        ("relevance=high", "relevance='high' is not a number"),
        ("relevance=0.7,weight=0.3", "unknown key 'weight'"),
        ("first_stage=inf", "first_stage weight must be finite, got inf"),
        ("mode=minmax", "mode must be one of auto, score, rank"),
        ("relevance=0.6,signal.new=0.4", "eval has no signals"),
    ],
)
def test_bad_fusion_spec_is_a_one_line_error_before_loading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str, needle: str
) -> None:
    missing_model = str(tmp_path / "no-such-model")  # would fail later, when loading
    rc, out, err = run(capsys, "eval", str(DATA), "-m", missing_model, "--fusion", spec)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("qwen3-rerank: error:") and needle in err, err


def test_check_fusions_api() -> None:
    assert check_fusions([Fusion(first_stage=0.2)]) == [Fusion(first_stage=0.2)]
    with pytest.raises(TypeError, match=r"fusions\[0\] must be a Fusion, got str"):
        check_fusions(["relevance=1"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="eval has no signals"):
        check_fusions([Fusion(signals={"new": 1.0})])


def test_fused_row_with_a_trec_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str
) -> None:
    """The first-stage scores of --run feed the fusion as BM25's do."""
    path = tmp_path / "dense.trec"
    data: Any = load_beir(DATA).subset(4)
    with path.open("w") as f:
        for qid in data.queries:
            for rank, doc in enumerate(list(data.corpus)[:8], start=1):
                f.write(f"{qid} Q0 {doc} {rank} {1.0 / rank} dense\n")
    runs = tmp_path / "runs"
    rc, out, err = run(
        capsys, "eval", str(DATA), "-m", model, "--run", str(path), "--max-queries", "4",
        "--fusion", "relevance=0,first_stage=1", "-f", "json", "--save-runs", str(runs),
    )  # fmt: skip
    assert rc == 0, err
    rows = json.loads(out)["rows"]
    assert rows[0]["system"] == "dense.trec (first stage)" and rows[2]["system"] == "fused [1.1]"
    assert rows[2]["values"] == rows[0]["values"]
    fused = read_run(runs / "fused_1_1.trec")
    for qid, docs in read_run(runs / "first_stage.trec").items():
        lo, hi = min(docs.values()), max(docs.values())
        assert fused[qid] == pytest.approx({d: (s - lo) / (hi - lo) for d, s in docs.items()})
