"""The examples in ``examples/`` run end to end against the tiny fixture checkpoint,
and the claims of ``docs/index.md``, ``docs/installation.md`` and ``docs/troubleshooting.md``
hold.

Each example runs as a subprocess, as a user would run it (``--model <folder>`` or
``QWEN3_RERANK_MODEL``), and its output is checked structurally: sections, row counts,
ranks, scores in [0, 1] and best first, documents from the example's corpus. Score values
are not checked (the checkpoint has random weights). ``remote_vllm.py`` runs against a real
vLLM server (marked ``vllm``: skipped without ``.venv-vllm``, required under ``CI=true``).
``gradio_app.py`` is tested in a real browser: ``tests/test_gradio_browser.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qwen3_rerank_core import Qwen3Reranker

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
TIMEOUT = 300

# "   1  0.4524  doc-03  some text"
DOC_ROW = re.compile(r"^\s*(\d+)\s+([01]\.\d{4})\s+(doc-\d{2})\s+(\S.*)$")
# remote_vllm.py, sync: "   1      3  0.4524  some document"
SYNC_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([01]\.\d{4})\s+(\S.*)$")
# remote_vllm.py, async: "0.4524      3  query -> document"
ASYNC_ROW = re.compile(r"^([01]\.\d{4})\s+(\d+)\s+(.+?) -> (.+)$")


def load_example(name: str) -> ModuleType:
    """Import an example as a module (for its corpus), without running it."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(
    name: str, *args: str, env: dict[str, str] | None = None, expect_rc: int = 0
) -> str:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=full_env,
        cwd=str(REPO_ROOT),
    )
    assert proc.returncode == expect_rc, (
        f"{name}.py exited with {proc.returncode}\n--- stdout\n{proc.stdout}\n"
        f"--- stderr\n{proc.stderr}"
    )
    return proc.stdout if expect_rc == 0 else proc.stderr


def section(output: str, title_start: str) -> list[str]:
    """Lines of the block (up to the next blank line) whose first line starts with the title."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(title_start):
            block = []
            for rest in lines[i + 1 :]:
                if not rest.strip():
                    break
                block.append(rest)
            return block
    raise AssertionError(f"no section {title_start!r} in output:\n{output}")


def doc_rows(block: list[str], corpus: list[str]) -> list[tuple[int, float, str, str]]:
    """Parse rank/score/source/text rows; check ranks, score range and order, and the corpus."""
    assert block[0].split() == ["rank", "score", "source", "text"], block
    rows = []
    for line in block[1:]:
        match = DOC_ROW.match(line)
        assert match, f"unexpected row {line!r}"
        rows.append((int(match[1]), float(match[2]), match[3], match[4]))
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    for _, score, source, text in rows:
        assert 0.0 <= score <= 1.0
        assert text == corpus[int(source.removeprefix("doc-"))]
    assert len({r[2] for r in rows}) == len(rows), "a document appears twice"
    return rows


def assert_best_first(rows: list[tuple[int, float, str, str]]) -> None:
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True), scores


def ranked_sections(
    name: str, model: Path, titles: tuple[str, ...], *args: str, env: dict[str, str] | None = None
) -> list[list[tuple[int, float, str, str]]]:
    """Run an example; check it names ``model`` and that each titled section is best first."""
    texts = load_example(name).TEXTS
    out = run_example(name, *args, env=env)
    assert f"Model: {model}" in out
    sections = [doc_rows(section(out, title), texts) for title in titles]
    for rows in sections:
        assert_best_first(rows)
    return sections


def test_llama_index_query_engine(tiny_model_dir: Path) -> None:
    titles = ("Retrieved by the embedding (top 6 of", "Reranked by Qwen3-Reranker (top 3)")
    args = ("--model", str(tiny_model_dir), "--top-k", "6", "--top-n", "3")
    retrieved, reranked = ranked_sections("llama_index_query_engine", tiny_model_dir, titles, *args)
    assert len(retrieved) == 6 and len(reranked) == 3
    # The reranker only reorders what the index retrieved.
    assert {r[2] for r in reranked} <= {r[2] for r in retrieved}


def test_langchain_compression_retriever_model_from_env(tiny_model_dir: Path) -> None:
    titles = (
        "Reranked by Qwen3-Reranker (top 4 of 10 retrieved)",
        "Async (ainvoke), query 'What does chlorophyll do?'",
    )
    env = {"QWEN3_RERANK_MODEL": str(tiny_model_dir)}
    sync_rows, async_rows = ranked_sections(
        "langchain_compression_retriever", tiny_model_dir, titles, "--top-n", "4", env=env
    )
    assert len(sync_rows) == 4 and len(async_rows) == 4


def test_remote_vllm_without_a_server_explains() -> None:
    import vllm_server

    dead = f"http://127.0.0.1:{vllm_server.free_port()}"
    err = run_example(
        "remote_vllm", "--base-url", dead, "--model", "m", "--timeout", "5", expect_rc=2
    )
    assert any(line.startswith("error: ") for line in err.splitlines()), err
    assert "docs/remote_vllm.md" in err


SERVED_NAME = "qwen3-reranker-examples"
API_KEY = "examples-key-7c2e"


@pytest.fixture(scope="module")
def examples_vllm_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    import vllm_server

    yield from vllm_server.running_server(
        tiny_model_dir,
        tmp_path_factory,
        "vllm-examples",
        served_model_name=SERVED_NAME,
        api_key=API_KEY,
    )


@pytest.mark.vllm
def test_remote_vllm_both_formats_sync_and_async(examples_vllm_server: Any) -> None:
    example = load_example("remote_vllm")
    out = run_example(
        "remote_vllm",
        "--base-url",
        examples_vllm_server.url,
        "--model",
        SERVED_NAME,
        "--top-n",
        "3",
        env={"QWEN3_RERANK_API_KEY": API_KEY},
    )
    n_docs = len(example.DOCUMENTS)
    for fmt in ("client", "server"):
        block = section(out, f"[{fmt} format] rerank (sync): {example.QUERY}")
        assert block[0].split() == ["rank", "index", "score", "document"]
        rows = [SYNC_ROW.match(line) for line in block[1:]]
        assert all(rows) and len(rows) == 3, block
        scores = [float(m[3]) for m in rows if m]
        assert scores == sorted(scores, reverse=True)
        for m in rows:
            assert m and 0 <= int(m[2]) < n_docs and m[4] == example.DOCUMENTS[int(m[2])]

        block = section(
            out, f"[{fmt} format] arerank (async), {len(example.ASYNC_QUERIES)} queries"
        )
        rows = [ASYNC_ROW.match(line) for line in block[1:]]
        assert all(rows) and len(rows) == len(example.ASYNC_QUERIES), block
        assert [m[3] for m in rows if m] == example.ASYNC_QUERIES
        for m in rows:
            assert m and m[4] == example.DOCUMENTS[int(m[2])] and 0 <= float(m[1]) <= 1
    # Both formats give the same scores on a server running the package's template.
    match = re.search(r"client vs server format: max \|score difference\| = (\S+)", out)
    assert match and float(match[1]) < 1e-5, out


# --------------------------------------------------------------------- quickstart, errors
def test_quickstart(tiny_model_dir: Path) -> None:
    documents = load_example("quickstart").DOCUMENTS
    out = run_example("quickstart", "--model", str(tiny_model_dir), "--top-n", "3")
    assert f"Model: {tiny_model_dir}" in out
    block = section(out, "rank  index    score  document")
    rows = [re.match(r"^\s*(\d+)\s+(\d+)\s+([01]\.\d{4})\s+(\S.*)$", line) for line in block]
    assert len(rows) == 3 and all(rows), block
    assert [int(m[1]) for m in rows if m] == [1, 2, 3]
    scores = [float(m[3]) for m in rows if m]
    assert scores == sorted(scores, reverse=True)
    assert all(m and m[4] == documents[int(m[2])] for m in rows)


@pytest.mark.parametrize(
    "name",
    ["quickstart", "llama_index_query_engine", "langchain_compression_retriever", "gradio_app"],
)
def test_missing_model_folder_explains(name: str, tmp_path: Path) -> None:
    err = run_example(name, "--model", str(tmp_path / "no" / "such-model"), expect_rc=2)
    assert any(line.startswith("error: ") for line in err.splitlines()), err
    assert "does not exist" in err and "Offline? Pass a local folder" in err


class _FakeRemote:
    """Stands in for Qwen3Reranker in remote_vllm.py: the server format is off by ``offset``."""

    offset = 0.0

    def __init__(self, **settings: Any) -> None:
        assert settings["backend"] == "remote"
        self.shift = self.offset if settings["prompt_format"] == "server" else 0.0

    def _rank(self, documents: list[str], top_n: int | None) -> list[Any]:
        from qwen3_rerank_core._reranker import rank

        scores = [(i + 1) / (len(documents) + 2) + self.shift for i in range(len(documents))]
        return rank(scores, documents, top_n=top_n)

    def rerank(self, query: str, documents: list[str], *, top_n: int | None = None) -> list[Any]:
        return self._rank(documents, top_n)

    async def arerank(
        self, query: str, documents: list[str], *, top_n: int | None = None
    ) -> list[Any]:
        return self._rank(documents, top_n)

    def __enter__(self) -> _FakeRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    async def __aenter__(self) -> _FakeRemote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


@pytest.mark.parametrize(("offset", "rc"), [(0.0, 0), (0.01, 1)])
def test_remote_vllm_warns_when_formats_disagree(
    offset: float, rc: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example("remote_vllm")
    fake = type("Fake", (_FakeRemote,), {"offset": offset})
    monkeypatch.setattr(example, "Qwen3Reranker", fake)
    assert example.main(["--base-url", "http://127.0.0.1:9", "--model", "m"]) == rc
    out, err = capsys.readouterr()
    assert f"client vs server format: max |score difference| = {offset:.2e}" in out
    assert ("WARNING: the formats disagree" in err) == (rc == 1)


# ------------------------------------------------- docs/troubleshooting.md: common mistakes
MISTAKE_QUERY = "What is the capital of China?"
MISTAKE_DOCS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Shanghai is the largest city in China by population and a major port.",
    "Beijing.",
]


@pytest.fixture(scope="module")
def hand_made(tiny_model_dir: Path) -> Any:
    """Score full prompt texts the way a hand-made integration would (one padded batch)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model: Any = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    model.eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")

    def score(texts: list[str], padding_side: str = "left") -> list[float]:
        tokenizer.padding_side = padding_side
        batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            last = model(**batch).logits[:, -1, :]
        pair = torch.stack([last[:, no], last[:, yes]], dim=1)
        scores: list[float] = torch.softmax(pair, dim=1)[:, 1].tolist()
        return scores

    return score


@pytest.fixture(scope="module")
def ours_for_mistakes(tiny_model_dir: Path) -> list[float]:
    with Qwen3Reranker(model=str(tiny_model_dir), device="cpu", dtype="float32") as reranker:
        return reranker.score(MISTAKE_QUERY, MISTAKE_DOCS)


@pytest.mark.parametrize(
    "mistake", ["none", "one final newline", "no system turn", "no think block", "right padding"]
)
def test_troubleshooting_mistakes_change_scores(
    mistake: str, hand_made: Any, ours_for_mistakes: list[float]
) -> None:
    from recipe import PREFIX, SUFFIX, format_instruction

    ours = ours_for_mistakes
    prompts = [PREFIX + format_instruction(None, MISTAKE_QUERY, d) + SUFFIX for d in MISTAKE_DOCS]
    assert all(p.endswith("</think>\n\n") for p in prompts)
    if mistake == "one final newline":
        prompts = [p[:-1] for p in prompts]
    elif mistake == "no system turn":
        prompts = [p.replace(PREFIX, "<|im_start|>user\n") for p in prompts]
    elif mistake == "no think block":
        prompts = [p.replace("<think>\n\n</think>\n\n", "") for p in prompts]
    got = hand_made(prompts, "right" if mistake == "right padding" else "left")
    diffs = [abs(a - b) for a, b in zip(got, ours, strict=True)]
    if mistake == "none":
        assert max(diffs) < 1e-5, diffs
        return
    assert max(diffs) > 0.05, diffs
    if mistake == "right padding":
        lengths = [len(p) for p in prompts]
        longest = lengths.index(max(lengths))
        assert diffs[longest] < 1e-5
        assert all(d > 1e-3 for i, d in enumerate(diffs) if i != longest), diffs


# ------------------------------------------------------------------------------ docs links
DOCS = REPO_ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+\s+(.+)$", text, flags=re.M)}


def test_docs_index_links_every_doc() -> None:
    linked = {m[1].split("#")[0] for m in LINK.finditer((DOCS / "index.md").read_text())}
    missing = sorted(
        p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.name not in linked
    )
    assert not missing, f"docs/index.md does not link {missing}"


@pytest.mark.parametrize("name", sorted(p.name for p in DOCS.glob("*.md")))
def test_doc_links_resolve(name: str) -> None:
    source = DOCS / name
    broken = []
    for match in LINK.finditer(source.read_text(encoding="utf-8")):
        target, _, anchor = match[1].partition("#")
        if re.match(r"^[a-z]+://", target) or target.startswith("<"):
            continue
        path = (source.parent / target).resolve() if target else source
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(match[1])
    assert not broken, f"docs/{name}: broken links {broken}"


def test_installation_lists_every_extra() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    text = (DOCS / "installation.md").read_text(encoding="utf-8")
    table = text.split("| Extra |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M))
    assert documented == set(extras)
