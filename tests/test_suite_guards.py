"""The suite's own guards against runs that never end: under the options CI uses
(``scripts/test.sh``: two pytest-xdist workers, ``--dist loadscope``,
``--max-worker-restart=0``) and this repository's pytest configuration (a per-test
``timeout``, ``timeout_method = "thread"``), a test that hangs and a worker that crashes
both fail the run within seconds instead of at CI's time limit; and the slow modules go
out to the workers first (conftest.py), so none is left to the end for one worker alone.

Each case runs pytest in a subprocess (``pytester``) on a test file written here, with the
repository's ``pyproject.toml`` as its configuration and the options read from
``scripts/test.sh`` (the hanging case shortens the timeout).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ci_options() -> list[str]:
    """The options scripts/test.sh gives the main pytest run (read from the script, so
    these tests check what CI runs)."""
    script = (REPO / "scripts" / "test.sh").read_text()
    found = re.search(r'^\.venv/bin/python -m pytest (.*) "\$@"$', script, re.MULTILINE)
    assert found, "scripts/test.sh: no main pytest command"
    return shlex.split(found[1])


def _pytest_config() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    config: dict[str, object] = data["tool"]["pytest"]["ini_options"]
    return config


def _pytest(pytester: pytest.Pytester, *options: str) -> pytest.RunResult:
    """Run pytest in a subprocess on ``pytester``'s folder, with the repository's
    configuration and ``options``."""
    return pytester.runpytest_subprocess(
        "-c",
        str(REPO / "pyproject.toml"),
        "--rootdir",
        str(pytester.path),
        "-p",
        "no:cacheprovider",
        *options,
        timeout=240,
    )


def _run(pytester: pytest.Pytester, body: str, *options: str) -> pytest.RunResult:
    """:func:`_pytest` on a test file holding ``body``, with CI's options and ``options``."""
    pytester.makepyfile(test_guarded=body)
    return _pytest(pytester, *_ci_options(), *options)


def test_ci_runs_two_workers_that_are_never_restarted() -> None:
    options = _ci_options()
    assert "--max-worker-restart=0" in options
    assert options[options.index("-n") + 1] == "2"


def test_the_configuration_bounds_every_test() -> None:
    config = _pytest_config()
    assert config["timeout_method"] == "thread"  # also ends hangs inside native code
    assert 60 <= int(str(config["timeout"])) <= 1800


def test_a_hanging_test_fails_the_run_soon(pytester: pytest.Pytester) -> None:
    body = (
        "import time\n\n"
        "def test_hangs():\n    time.sleep(600)\n\n"
        "def test_fine():\n    assert 1 + 1 == 2\n"
    )
    result = _run(pytester, body, "-o", "timeout=3")
    output = str(result.stdout) + str(result.stderr)
    assert result.ret != 0, output
    assert "timeout method: thread" in output, output
    # The thread method dumps the stacks (to the worker's stderr, which xdist does not
    # relay) and ends the worker's process: the run reports which test it was running.
    assert "crashed while running 'test_guarded.py::test_hangs'" in output, output
    assert result.duration < 120, f"{result.duration:.0f} s:\n{output}"


@pytest.mark.parametrize("crash", ["os.abort()", "os.kill(os.getpid(), signal.SIGSEGV)"])
def test_a_crashing_worker_fails_the_run_soon(pytester: pytest.Pytester, crash: str) -> None:
    body = (
        "import os, signal\n\n"
        f"def test_crashes():\n    {crash}\n\n"
        "def test_fine():\n    assert 1 + 1 == 2\n"
    )
    result = _run(pytester, body)
    output = str(result.stdout) + str(result.stderr)
    assert result.ret != 0, output
    assert "crashed while running 'test_guarded.py::test_crashes'" in output, output
    assert result.duration < 120, f"{result.duration:.0f} s:\n{output}"


def test_slow_modules_go_out_first_in_conftest_order(pytester: pytest.Pytester) -> None:
    """The repository's conftest.py puts the modules marked ``slow`` or ``vllm`` first (most
    tests first within each group, each module's tests in their order), and CI keeps that
    order (``--no-loadscope-reorder``), so no minute-long module is left to the end."""
    assert "--no-loadscope-reorder" in _ci_options()
    pytester.makeconftest((REPO / "conftest.py").read_text())
    plain = "def test_{0}1():\n    pass\n\ndef test_{0}2():\n    pass\n"
    pytester.makepyfile(
        test_a=plain.format("a"),
        test_b="import pytest\n\npytestmark = pytest.mark.slow\n\ndef test_b():\n    pass\n",
        test_c=(
            "import pytest\n\ndef test_c1():\n    pass\n\n"
            "@pytest.mark.vllm\ndef test_c2():\n    pass\n\ndef test_c3():\n    pass\n"
        ),
        test_d=plain.format("d") + "\ndef test_d3():\n    pass\n",
        test_e="def test_e():\n    pass\n",
    )
    result = _pytest(pytester, "--collect-only", "-q")
    output = str(result.stdout)
    assert result.ret == 0, output + str(result.stderr)
    collected = [line.split("::")[1] for line in result.stdout.lines if "::" in line]
    assert collected == [
        *("test_c1", "test_c2", "test_c3"),  # slow (a vllm test), 3 tests
        "test_b",  # slow, 1 test
        *("test_d1", "test_d2", "test_d3"),
        *("test_a1", "test_a2"),
        "test_e",
    ], output
