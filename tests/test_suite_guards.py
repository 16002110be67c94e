"""The suite's own guards against runs that never end: under the options CI uses
(``scripts/test.sh``: two pytest-xdist workers, ``--dist loadscope``,
``--max-worker-restart=0``) and this repository's pytest configuration (a per-test
``timeout``, ``timeout_method = "thread"``), a test that hangs and a worker that crashes
both fail the run within seconds instead of at CI's time limit.

Each case runs pytest in a subprocess on a test file written here, with the repository's
``pyproject.toml`` as its configuration (only the timeout shortened).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The options scripts/test.sh gives the main pytest run.
CI_OPTIONS = ["-n", "2", "--dist", "loadscope", "--max-worker-restart=0"]


def _pytest_config() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    config: dict[str, object] = data["tool"]["pytest"]["ini_options"]
    return config


def _run(folder: Path, body: str, *options: str) -> tuple[int, str, float]:
    """Run pytest on a test file holding ``body``, in ``folder``, with the repository's
    configuration, the CI options and ``options``; ``(exit code, output, seconds)``."""
    (folder / "test_guarded.py").write_text(body)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(REPO / "pyproject.toml"),
        "--rootdir",
        str(folder),
        "-p",
        "no:cacheprovider",
        *CI_OPTIONS,
        *options,
        str(folder / "test_guarded.py"),
    ]
    start = time.monotonic()
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=240, check=False
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


def test_the_configuration_bounds_every_test() -> None:
    config = _pytest_config()
    assert config["timeout_method"] == "thread"  # also ends hangs inside native code
    assert 60 <= int(str(config["timeout"])) <= 1800


def test_a_hanging_test_fails_the_run_soon(tmp_path: Path) -> None:
    body = (
        "import time\n\n"
        "def test_hangs():\n    time.sleep(600)\n\n"
        "def test_fine():\n    assert 1 + 1 == 2\n"
    )
    code, output, seconds = _run(tmp_path, body, "-o", "timeout=3")
    assert code != 0, output
    assert "timeout method: thread" in output, output
    # The thread method dumps the stacks (to the worker's stderr, which xdist does not
    # relay) and ends the worker's process: the run reports which test it was running.
    assert "crashed while running 'test_guarded.py::test_hangs'" in output, output
    assert seconds < 120, f"{seconds:.0f} s:\n{output}"


@pytest.mark.parametrize("crash", ["os.abort()", "os.kill(os.getpid(), signal.SIGSEGV)"])
def test_a_crashing_worker_fails_the_run_soon(tmp_path: Path, crash: str) -> None:
    body = (
        "import os, signal\n\n"
        f"def test_crashes():\n    {crash}\n\n"
        "def test_fine():\n    assert 1 + 1 == 2\n"
    )
    code, output, seconds = _run(tmp_path, body)
    assert code != 0, output
    assert "crashed while running 'test_guarded.py::test_crashes'" in output, output
    assert seconds < 120, f"{seconds:.0f} s:\n{output}"
