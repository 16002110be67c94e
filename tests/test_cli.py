"""The ``qwen3-rerank`` command line: rerank, bench, vllm-command, errors and help.

Commands run in-process through ``main([...])`` against the tiny random-weight
checkpoint (scores are checked against the core, not for meaning); one test runs
the installed console script in a subprocess. ``eval`` is in ``test_eval.py``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import DEFAULT_INSTRUCTION, Qwen3Reranker
from qwen3_rerank_core._backends._vllm import HF_OVERRIDES
from qwen3_rerank_core._cli import main, parse_documents, template_path

pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parent.parent
QUERY = "What is the capital of China?"
DOCS = ["The capital of China is Beijing.", "北京是中国的首都。", "Gravity is a force."]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> str:
    return str(tiny_model_dir)


@pytest.fixture(scope="module")
def reranker(model: str) -> Qwen3Reranker:
    return Qwen3Reranker(model=model).load()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# -------------------------------------------------------------------- rerank
def test_rerank_table(capsys: pytest.CaptureFixture[str], model: str) -> None:
    rc, out, _ = run(capsys, "rerank", QUERY, *DOCS, "-m", model)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "index", "score", "text"]
    assert len(lines) == 1 + len(DOCS)
    assert [int(line.split()[0]) for line in lines[1:]] == [1, 2, 3]
    assert sorted(int(line.split()[1]) for line in lines[1:]) == [0, 1, 2]


def test_rerank_json_equals_core(
    capsys: pytest.CaptureFixture[str], model: str, reranker: Qwen3Reranker
) -> None:
    instruction = "Find encyclopedia passages"
    rc, out, _ = run(capsys, "rerank", QUERY, *DOCS, "-m", model, "-f", "json", "-i", instruction)
    assert rc == 0
    rows = json.loads(out)
    expected = reranker.rerank(QUERY, DOCS, instruction=instruction)
    assert [r["index"] for r in rows] == [r.index for r in expected]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["text"] for r in rows] == [DOCS[r.index] for r in expected]
    assert [r["score"] for r in rows] == pytest.approx([r.score for r in expected], abs=1e-6)
    default = reranker.score(QUERY, DOCS, instruction=DEFAULT_INSTRUCTION)
    assert sorted(r["score"] for r in rows) != pytest.approx(sorted(default), abs=1e-9)


def test_rerank_jsonl_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    records = [{"id": "a", "text": DOCS[0]}, {"_id": 7, "text": DOCS[1]}, {"text": DOCS[2]}]
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n"
    # a real binary stdin: the CLI decodes it as UTF-8 whatever the locale
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode("utf-8"))))
    rc, out, _ = run(capsys, "rerank", QUERY, "-m", model, "--format", "jsonl", "--top-n", "2")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(row) >= {"rank", "index", "score", "text"}
        assert row["text"] == DOCS[row["index"]]
        assert 0.0 <= row["score"] <= 1.0
        assert row.get("id") == ["a", 7, None][row["index"]]
    assert rows[0]["score"] >= rows[1]["score"]


def test_rerank_lines_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str, reranker: Qwen3Reranker
) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join([DOCS[0], "", DOCS[1], "   ", DOCS[2]]) + "\n", encoding="utf-8")
    rc, out, _ = run(capsys, "rerank", QUERY, "-d", str(path), "-m", model, "-f", "json")
    assert rc == 0
    rows = json.loads(out)
    scores = reranker.score(QUERY, DOCS)
    assert {r["index"]: r["score"] for r in rows} == pytest.approx(
        dict(enumerate(scores)), abs=1e-6
    )
    threshold = sorted(scores)[1]
    rc, out, _ = run(
        capsys, "rerank", QUERY, "-d", str(path), "-m", model, "-f", "json", "--min-score",
        str(threshold - 1e-9),
    )  # fmt: skip
    assert rc == 0
    assert len(json.loads(out)) == 2


def test_parse_documents() -> None:
    assert parse_documents("a\n\n b \n") == (["a", " b "], [None, None])
    assert parse_documents('{"text": "x", "id": 1}\n') == (["x"], [1])
    assert parse_documents('{"text": "x"}\n', input_format="lines") == (['{"text": "x"}'], [None])
    assert parse_documents('{"body": "x"}', text_field="body") == (["x"], [None])
    assert parse_documents("{not json}\nplain") == (["{not json}", "plain"], [None, None])
    # only \n, \r\n and \r end a document; other Unicode line breaks are text
    assert parse_documents("a\u2028b\x0cc\r\nd\re\n") == (["a\u2028b\x0cc", "d", "e"], [None] * 3)


# --------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nosuch"],
        ["rerank"],
        ["rerank", QUERY, "doc", "--top-n", "0"],
        ["rerank", QUERY, "doc", "--top-n", "two"],
        ["rerank", QUERY, "doc", "--min-score", "1.5"],
        ["rerank", QUERY, "doc", "--format", "xml"],
        ["rerank", QUERY, "doc", "--bogus"],
        ["rerank", QUERY, "doc", "--max-length", "4"],
        ["rerank", QUERY, "doc", "--base-url", "ftp://host"],
        ["rerank", QUERY, "doc", "--backend", "transformers", "--base-url", "http://h:1"],
        ["rerank", QUERY, "doc", "--instruction", "  "],
        ["rerank", "  ", "doc"],
        ["rerank", QUERY, "doc", "-d", "docs.txt"],
        ["rerank", QUERY, "-d", "/nonexistent/docs.txt"],
        ["rerank", QUERY, "doc", "-m", "/nonexistent/model"],
        ["vllm-command", "--port", "http"],
        ["eval"],
    ],
)
def test_bad_arguments_one_line_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], model: str
) -> None:
    if "-m" not in argv and argv[:1] == ["rerank"]:
        argv = [*argv, "-m", model]
    rc, out, err = run(capsys, *argv)
    assert rc != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("qwen3-rerank") and "error" in lines[0]


def test_bad_jsonl_input(capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n{"title": "no text"}\n', encoding="utf-8")
    rc, _, err = run(capsys, "rerank", QUERY, "-d", str(path), "-m", model)
    assert rc == 2
    assert err.strip() == (
        f'qwen3-rerank: error: {path}:2: no string field "text" (see --text-field)'
    )


def test_model_load_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "rerank", QUERY, "doc", "-m", "/nonexistent/model")
    assert rc == 1
    assert "ModelLoadError" in err and "/nonexistent/model" in err


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Qwen3Reranker]:
    """The rerankers the CLI builds from now on (their ``rerank`` returns nothing)."""
    import qwen3_rerank_core._reranker as reranker_module

    seen: list[Qwen3Reranker] = []

    class Recorder(Qwen3Reranker):
        def rerank(self, query: str, documents: object, **kwargs: object) -> list[Any]:
            seen.append(self)
            return []

    monkeypatch.setattr(reranker_module, "Qwen3Reranker", Recorder)
    return seen


def test_remote_options_reach_the_config(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    recorded: list[Qwen3Reranker],
) -> None:
    """--base-url implies the remote backend; the API key comes from the environment."""
    monkeypatch.setenv("QWEN3_RERANK_API_KEY", "sk-secret")
    monkeypatch.setenv("QWEN3_RERANK_MODEL", "qwen3-reranker")
    rc, out, _ = run(
        capsys, "rerank", QUERY, "doc", "--base-url", "http://a:8000", "--base-url", "http://b:8000",
        "--prompt-format", "server", "--max-length", "1024", "-f", "json",
    )  # fmt: skip
    assert rc == 0 and json.loads(out) == []
    config = recorded[0].config
    assert config.backend == "remote" and config.model == "qwen3-reranker"
    assert config.base_urls == ("http://a:8000", "http://b:8000")
    assert config.api_key == "sk-secret" and config.prompt_format == "server"
    assert config.max_length == 1024


def test_compile_flag_reaches_the_config(
    capsys: pytest.CaptureFixture[str], recorded: list[Qwen3Reranker], model: str
) -> None:
    assert run(capsys, "rerank", QUERY, "doc", "-m", model, "-f", "json")[0] == 0
    assert run(capsys, "rerank", QUERY, "doc", "-m", model, "--compile", "-f", "json")[0] == 0
    assert [r.config.compile for r in recorded] == [False, True]
    rc, _, err = run(capsys, "rerank", QUERY, "doc", "--base-url", "http://a:8000", "--compile")
    assert rc == 2 and "--compile is for --backend transformers, not --backend remote" in err


# ---------------------------------------------------------------------- help
@pytest.mark.parametrize("command", [[], ["rerank"], ["eval"], ["vllm-command"], ["bench"]])
def test_help_has_examples(
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
) -> None:
    fake = tmp_path / "bench.py"
    fake.write_text("print('bench script help')\n")
    monkeypatch.setenv("QWEN3_RERANK_BENCH_SCRIPT", str(fake))
    assert main([*command, "--help"]) == 0
    out = capfd.readouterr().out
    assert "examples:" in out
    assert "qwen3-rerank " + (command[0] if command else "rerank") in out


# --------------------------------------------------------------------- bench
def test_bench_passes_arguments_through(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bench_rerank.py"
    fake.write_text(
        "import json, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'python': sys.executable}))\n"
        "sys.exit(3)\n"
    )
    monkeypatch.setenv("QWEN3_RERANK_BENCH_SCRIPT", str(fake))
    args = ["--config", "tiny", "--workloads", "a,b", "--docs-scale", "0.1", "--contenders", "x y"]
    assert main(["bench", *args]) == 3
    report = json.loads(capfd.readouterr().out)
    assert report == {"argv": args, "python": sys.executable}


def test_bench_missing_script(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QWEN3_RERANK_BENCH_SCRIPT", str(tmp_path / "missing.py"))
    rc, out, err = run(capsys, "bench", "--config", "tiny")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "benchmark script not found" in err and "QWEN3_RERANK_BENCH_SCRIPT" in err


def test_bench_finds_the_repository_script(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen3_rerank_core._cli import bench_script

    monkeypatch.delenv("QWEN3_RERANK_BENCH_SCRIPT", raising=False)
    script = REPO / "benchmarks" / "bench_rerank.py"
    if not script.is_file():
        pytest.skip("benchmarks/bench_rerank.py is not in this checkout")
    assert bench_script() == script


# -------------------------------------------------------------- vllm-command
def test_vllm_command_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        capsys, "vllm-command", "--model", "/models/Qwen3-Reranker-4B", "--port", "8001"
    )
    assert rc == 0
    assert out.count("vllm serve /models/Qwen3-Reranker-4B") == 2
    assert out.count("--chat-template") == 1
    assert template_path() in out
    assert 'prompt_format="server"' in out and 'prompt_format="client"' in out
    assert "--runner pooling" in out and "--port 8001" in out
    overrides = out.split("--hf-overrides '")[1].split("'")[0]
    assert json.loads(overrides) == HF_OVERRIDES


def test_vllm_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "vllm-command", "--module", "--max-model-len", "2048", "-f", "json")
    assert rc == 0
    cmds = json.loads(out)
    template = Path(cmds["template"])
    assert template.is_file()
    assert template.read_text(encoding="utf-8") == (
        REPO / "qwen3_rerank_core" / "templates" / "qwen3_reranker.jinja"
    ).read_text(encoding="utf-8")
    server, client = cmds["server"], cmds["client"]
    assert server[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert server[server.index("--chat-template") + 1] == str(template)
    assert "--chat-template" not in client
    for argv in (server, client):
        assert argv[argv.index("--runner") + 1] == "pooling"
        assert json.loads(argv[argv.index("--hf-overrides") + 1]) == HF_OVERRIDES
        assert argv[argv.index("--max-model-len") + 1] == "2048"
        assert argv[argv.index("--served-model-name") + 1] == "qwen3-reranker"


# ------------------------------------------------------------ console script
def test_console_script(model: str) -> None:
    """The installed ``qwen3-rerank`` script, documents piped on stdin."""
    script = Path(sysconfig.get_path("scripts")) / "qwen3-rerank"
    assert script.is_file(), f"{script} missing: pip install -e . creates it"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(script), "rerank", QUERY, "-m", model, "-f", "jsonl"],
        input="\n".join(DOCS) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2]
    assert [r["text"] for r in rows] == [DOCS[r["index"]] for r in rows]
    proc = subprocess.run(
        [sys.executable, "-m", "qwen3_rerank_core", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("qwen3-rerank 0.")
