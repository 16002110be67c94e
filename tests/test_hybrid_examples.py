"""The hybrid-ranking recipes of ``docs/hybrid.md`` (``examples/hybrid_*.py``) run end to end.

Each example runs as a subprocess against the tiny fixture checkpoint, as a user would
run it. Its table is checked against an independent computation: p(yes) from
``Qwen3Reranker.score`` on the same texts, the signals worked out here from the
example's data (not with the library's helpers), and the documented formula; the rows
must be in fused-score order (ties: input order). Score values mean nothing (random
weights); the arithmetic and the order are what is tested.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import pytest

from qwen3_rerank_core import Qwen3Reranker

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

pytest.importorskip("transformers")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOW = "2026-12-01"
NOW_DT = datetime(2026, 12, 1, tzinfo=timezone.utc)
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([01]\.\d{4})\s+(-?\d+\.\d{4})\s+(.*)$")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, *args: str, expect_rc: int = 0) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == expect_rc, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout if expect_rc == 0 else proc.stderr


def rows(out: str) -> list[tuple[int, float, float, list[str]]]:
    """(index, p(yes), fused, the other cells) of each table row, ranks checked."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("rank"))
    parsed = []
    for rank, line in enumerate(lines[start + 1 :], start=1):
        match = ROW.match(line)
        assert match, line
        assert int(match[1]) == rank
        parsed.append((int(match[2]), float(match[3]), float(match[4]), match[5].split("  ")))
    return parsed


def check(
    out: str, p_yes: list[float], fused: list[float], top_n: int | None = None
) -> list[tuple[int, float, float, list[str]]]:
    got = rows(out)
    order = sorted(range(len(fused)), key=lambda i: (-fused[i], i))[:top_n]
    assert [r[0] for r in got] == order
    for index, shown_p, shown_fused, _ in got:
        assert shown_p == pytest.approx(
            p_yes[index], abs=5e-5 + 2e-5
        )  # 4 decimals shown, plus batch rounding
        assert shown_fused == pytest.approx(fused[index], abs=5e-5 + 2e-5)
    return got


def age_days(iso: str) -> float:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (NOW_DT - moment).total_seconds() / 86400)


def test_ecommerce(tiny_model_dir: Path) -> None:
    ex = load("hybrid_ecommerce")
    out = run("hybrid_ecommerce", "--model", str(tiny_model_dir), "--now", NOW)
    titles = [p[0] for p in ex.PRODUCTS]
    with Qwen3Reranker(model=str(tiny_model_dir)) as rr:
        p_yes = rr.score(ex.QUERY, titles)
    fused = []
    for (_, new, sold, stock, listed), p in zip(ex.PRODUCTS, p_yes, strict=True):
        recency = 0.8 if age_days(listed) > 30 else 1.0
        fused.append(
            math.fsum(
                [0.6 * p, 0.1 * new, 0.05 * (sold >= 1000), 0.05 * (stock > 0), 0.1 * recency]
            )
        )
    for index, _, _, cells in check(out, p_yes, fused):
        assert cells[-1] == titles[index]
    assert "Fusion: relevance=0.6," in out
    top = run("hybrid_ecommerce", "--model", str(tiny_model_dir), "--now", NOW, "--top-n", "2")
    check(top, p_yes, fused, top_n=2)


@pytest.mark.parametrize("shape", [[], ["--half-life-days", "30"], ["--step-days", "30"]])
def test_recency(tiny_model_dir: Path, shape: list[str]) -> None:
    ex = load("hybrid_recency")
    out = run("hybrid_recency", "--model", str(tiny_model_dir), "--now", NOW, *shape)
    texts = [a[0] for a in ex.ARTICLES]
    with Qwen3Reranker(model=str(tiny_model_dir)) as rr:
        p_yes = rr.score(ex.QUERY, texts)
    sims = [a[1] for a in ex.ARTICLES]
    lo, hi = min(sims), max(sims)
    fused = []
    for (_, sim, updated), p in zip(ex.ARTICLES, p_yes, strict=True):
        age = age_days(updated)
        if shape[:1] == ["--step-days"]:
            recency = 0.8 if age > 30 else 1.0
        else:
            recency = 0.5 ** (age / (30.0 if shape else 180.0))
        fused.append(math.fsum([0.7 * p, 0.2 * (sim - lo) / (hi - lo), 0.1 * recency]))
    for index, _, _, cells in check(out, p_yes, fused):
        assert cells[-1] == texts[index]
        assert float(cells[0]) == pytest.approx((sims[index] - lo) / (hi - lo), abs=5e-5)


def test_authority(tiny_model_dir: Path) -> None:
    ex = load("hybrid_authority")
    out = run("hybrid_authority", "--model", str(tiny_model_dir))
    texts = [f"[source: {s} {y}] [{y}-{m:02d}] {t}" for s, y, m, t in ex.PASSAGES]
    with Qwen3Reranker(model=str(tiny_model_dir)) as rr:
        p_yes = rr.score(ex.QUERY, texts, instruction=ex.INSTRUCTION)
    binding = [float(s in ex.BINDING) for s, *_ in ex.PASSAGES]
    fused = [math.fsum([0.85 * p, 0.15 * b]) for p, b in zip(p_yes, binding, strict=True)]
    for index, _, _, cells in check(out, p_yes, fused):
        assert cells[-1] == texts[index]
        assert float(cells[0]) == binding[index]


@pytest.mark.parametrize(
    "name",
    [
        "hybrid_ecommerce",
        "hybrid_recency",
        "hybrid_authority",
        "hybrid_llama_index",
        "hybrid_langchain",
    ],
)
def test_missing_model_folder_explains(name: str, tmp_path: Path) -> None:
    err = run(name, "--model", str(tmp_path / "no-model"), expect_rc=2)
    assert any(line.startswith("error: ") for line in err.splitlines()), err
    assert "Offline? Pass a local folder" in err


def test_llama_index(tiny_model_dir: Path) -> None:
    pytest.importorskip("llama_index.postprocessor.qwen3_rerank")
    from llama_index.core.schema import MetadataMode

    ex = load("hybrid_llama_index")
    out = run("hybrid_llama_index", "--model", str(tiny_model_dir), "--now", NOW)
    # the postprocessor scores what node.get_content(EMBED) gives (text and metadata)
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in ex.retrieved_nodes()]
    with Qwen3Reranker(model=str(tiny_model_dir)) as rr:
        p_yes = rr.score(ex.QUERY, texts)
    sims = [a[1] for a in ex.ARTICLES]
    lo, hi = min(sims), max(sims)
    fused = []
    for (_, sim, updated, official), p in zip(ex.ARTICLES, p_yes, strict=True):
        recency = 0.5 ** (age_days(updated) / 180.0)
        fused.append(
            math.fsum([0.7 * p, 0.2 * (sim - lo) / (hi - lo), 0.1 * recency, 0.05 * official])
        )
    for index, _, _, cells in check(out, p_yes, fused):
        assert cells[-1] == ex.ARTICLES[index][0]
        assert float(cells[0]) == sims[index]
    top = run("hybrid_llama_index", "--model", str(tiny_model_dir), "--now", NOW, "--top-n", "2")
    check(top, p_yes, fused, top_n=2)


def test_langchain(tiny_model_dir: Path) -> None:
    pytest.importorskip("langchain_qwen3_rerank")
    ex = load("hybrid_langchain")
    out = run("hybrid_langchain", "--model", str(tiny_model_dir))
    texts = [f"[{src} {day}] {text}" for src, day, _, text in ex.PASSAGES]
    with Qwen3Reranker(model=str(tiny_model_dir)) as rr:
        p_yes = rr.score(ex.QUERY, texts)
    bm25 = [p[2] for p in ex.PASSAGES]
    lo, hi = min(bm25), max(bm25)
    binding = [float(p[0] in ex.BINDING) for p in ex.PASSAGES]
    fused = [
        math.fsum([0.75 * p, 0.15 * (x - lo) / (hi - lo), 0.1 * b])
        for p, x, b in zip(p_yes, bm25, binding, strict=True)
    ]
    for index, _, _, cells in check(out, p_yes, fused):
        assert cells[-1] == texts[index]
        assert float(cells[0]) == bm25[index]


# ------------------------------------------------------------------ docs/hybrid.md
HYBRID_MD = EXAMPLES.parent / "docs" / "hybrid.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", HYBRID_MD.read_text(encoding="utf-8"), flags=re.S)


def test_docs_python_blocks_run(tiny_model_dir: Path) -> None:
    """Every Python block of docs/hybrid.md runs, with ``reranker`` a real reranker."""
    blocks = python_blocks()
    assert len(blocks) >= 5
    with Qwen3Reranker(model=str(tiny_model_dir)) as reranker:
        for block in blocks:
            namespace = {"reranker": reranker}
            exec(compile(block, str(HYBRID_MD), "exec"), namespace)
            results = namespace.get("results")
            if results is not None:
                assert results and all(r.fusion is not None for r in results)
                fused = [r.fused_score for r in results]
                assert fused == sorted(fused, reverse=True)


def test_docs_helper_values_are_right() -> None:
    """The values in the comments of the helpers block are what the calls return."""
    block = next(b for b in python_blocks() if "recency_decay([" in b)
    namespace: dict[str, object] = {}
    checked = 0
    for line in block.splitlines():
        code, _, comment = line.partition("#")
        if code.startswith("from "):
            exec(code, namespace)
        elif code.strip() and comment:
            expected = comment.split(":")[0].strip()
            assert eval(code, namespace) == eval(expected), line
            checked += 1
    assert checked == 6


def test_docs_eval_specs_parse() -> None:
    from qwen3_rerank_core import Fusion

    text = HYBRID_MD.read_text(encoding="utf-8")
    specs = re.findall(r"--fusion ([a-z_=0-9.,]+)", text)
    assert len(specs) >= 3
    for spec in specs:
        assert not Fusion.from_spec(spec).signals


def test_docs_adapter_blocks_order_by_the_fused_score(tiny_model_dir: Path) -> None:
    """The LlamaIndex and LangChain blocks: fused order, p(yes) exactly ``score()``'s."""
    pytest.importorskip("llama_index.postprocessor.qwen3_rerank")
    pytest.importorskip("langchain_qwen3_rerank")
    from llama_index.core.schema import MetadataMode

    blocks = [b for b in python_blocks() if "QwenRerank(" in b]
    assert len(blocks) == 2
    with Qwen3Reranker(model=str(tiny_model_dir)) as reranker:
        namespace: dict[str, object] = {"reranker": reranker}
        exec(compile(blocks[0], str(HYBRID_MD), "exec"), namespace)
        nodes, retrieved = namespace["nodes"], namespace["retrieved"]
        assert isinstance(nodes, list) and isinstance(retrieved, list)
        assert len(nodes) == len(retrieved)
        assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
        texts = [r.node.get_content(metadata_mode=MetadataMode.EMBED) for r in retrieved]
        p_yes = reranker.score("How do I rotate an API key?", texts)  # the same batch
        ids = [r.node.node_id for r in retrieved]
        for node in nodes:
            i = ids.index(node.node.node_id)
            assert node.node.metadata["relevance_score"] == p_yes[i]
            assert node.node.metadata["retrieval_score"] == retrieved[i].score
            assert "relevance_score" not in retrieved[i].node.metadata
        namespace = {"reranker": reranker}
        exec(compile(blocks[1], str(HYBRID_MD), "exec"), namespace)
        docs, sources = namespace["docs"], namespace["retrieved"]
        assert isinstance(docs, list) and isinstance(sources, list) and len(docs) == 2
        fused = [d.metadata["relevance_score"] for d in docs]
        assert fused == sorted(fused, reverse=True)
        texts = [f"[{d.metadata['source']} {d.metadata['date']}] {d.page_content}" for d in sources]
        p_yes = reranker.score("Can a landlord keep the whole deposit?", texts)
        for doc in docs:
            i = next(k for k, d in enumerate(sources) if d.page_content == doc.page_content)
            assert doc.metadata["rerank_score"] == p_yes[i]
            assert "rerank_score" not in sources[i].metadata
