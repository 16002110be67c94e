"""``examples/gradio_app.py`` in a real headless Chromium, driven by Selenium.

The app runs as a subprocess on 127.0.0.1 and a free port with the tiny fixture
checkpoint; the browser types a query, candidates and an instruction, clicks
Rerank and reads the ranked rows from the page. The expected ranking comes from
``Qwen3Reranker.rerank`` on the same checkpoint, in this process.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/setup_browser.sh``)
and the ``demo`` and ``test`` extras (gradio, selenium). Without them the tests
skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen3_rerank_core import Qwen3Reranker

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "examples" / "gradio_app.py"
START_TIMEOUT = 180.0
WAIT = 60.0
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
]

QUERY = "What is the capital of China?"
CANDIDATES = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "北京是中华人民共和国的首都。",
    "Shanghai is the largest city in China by population.",
    "Pékin est la capitale de la Chine.",
]
INSTRUCTION = "Given a question, find the passages that name a capital city"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_executable(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/lib/chromium/{name}") if os.path.exists(p)), None
    )


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver); skips (fails under CI=true) when anything is missing."""
    missing = []
    chromium = find_executable("chromium")
    driver = find_executable("chromedriver")
    if chromium is None or driver is None:
        missing.append("Debian's chromium and chromium-driver (run: bash scripts/setup_browser.sh)")
    for module in ("selenium", "gradio"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module} (pip install -e '.[demo,test]')")
    if missing:
        reason = "the browser test needs " + "; ".join(missing)
        if in_ci():
            pytest.fail(f"{reason} (CI is set, so this test is required)", pytrace=False)
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the app's process group, then SIGKILL it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def app_url(
    browser_paths: tuple[str, str], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """examples/gradio_app.py serving the tiny checkpoint on 127.0.0.1; stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("gradio") / "app.log"
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [sys.executable, str(APP), "--model", str(tiny_model_dir), "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"gradio_app.py exited with {process.returncode}:\n"
                        f"{log_path.read_text(errors='replace')}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"gradio_app.py not up at {url}:\n{log_path.read_text()}")
                time.sleep(0.5)
            yield url
        finally:
            stop(process)
    # The app is really gone: nothing answers on its port any more.
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2.0)


@pytest.fixture(scope="module")
def driver(
    browser_paths: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(WAIT)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> Iterator[Qwen3Reranker]:
    """The same checkpoint in this process, with the app's default settings."""
    with Qwen3Reranker(model=str(tiny_model_dir)) as reranker:
        yield reranker


def wait_for(driver: Any, condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` until it returns something truthy (stale elements are retried)."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def poll(_: Any) -> Any:
        try:
            return condition()
        except StaleElementReferenceException:
            return None

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(poll)
    except TimeoutException:
        page = driver.find_element("tag name", "body").text
        pytest.fail(f"timed out waiting for {what}; page text:\n{page}")


def open_page(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#query textarea"), "the page")


def type_into(driver: Any, elem_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea")
    box.clear()
    box.send_keys(text)
    assert box.get_attribute("value") == text


def header_texts(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, "#results [role=columnheader]")
    return [c.text.strip() for c in cells]


def table_rows(driver: Any) -> list[list[str]]:
    """The result table's body rows, as cell texts (ARIA grid rows that hold grid cells)."""
    from selenium.webdriver.common.by import By

    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#results [role=row]"):
        cells = row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")
        if cells:
            rows.append([c.text.strip() for c in cells])
    return rows


def rank_on_page(
    driver: Any, url: str, query: str, candidates: str, instruction: str
) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    open_page(driver, url)
    type_into(driver, "query", query)
    type_into(driver, "candidates", candidates)
    type_into(driver, "instruction", instruction)
    driver.find_element(By.CSS_SELECTOR, "#rerank").click()
    n = len([line for line in candidates.splitlines() if line.strip()])

    def ranked() -> list[list[str]] | None:
        rows = table_rows(driver)
        return rows if len(rows) == n and all(all(r) for r in rows) else None

    rows: list[list[str]] = wait_for(driver, ranked, f"{n} ranked rows")
    return rows


def check_rows(rows: list[list[str]], expected: list[Any]) -> None:
    """Rows are [rank, score, candidate #, candidate], best first, as the reranker ranks them."""
    assert [int(r[0]) for r in rows] == list(range(1, len(expected) + 1))
    assert [r[3] for r in rows] == [e.document for e in expected]
    assert [int(r[2]) for r in rows] == [e.index + 1 for e in expected]
    scores = [float(r[1]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    for shown, e in zip(scores, expected, strict=True):
        assert abs(shown - e.score) <= 1e-4, (shown, e.score)


def test_rank_candidates_in_the_browser(
    driver: Any, app_url: str, reference: Qwen3Reranker
) -> None:
    # A blank line between candidates is skipped.
    text = "\n".join([*CANDIDATES[:2], "", *CANDIDATES[2:]])
    rows = rank_on_page(driver, app_url, QUERY, text, INSTRUCTION)
    assert header_texts(driver) == ["rank", "score", "candidate #", "candidate"]
    check_rows(rows, reference.rerank(QUERY, CANDIDATES, instruction=INSTRUCTION))


def test_empty_instruction_uses_the_default(
    driver: Any, app_url: str, reference: Qwen3Reranker
) -> None:
    query = "Which force pulls bodies together?"
    rows = rank_on_page(driver, app_url, query, "\n".join(CANDIDATES), "")
    check_rows(rows, reference.rerank(query, CANDIDATES))


def test_empty_query_shows_an_error(driver: Any, app_url: str) -> None:
    from selenium.webdriver.common.by import By

    open_page(driver, app_url)
    type_into(driver, "candidates", "\n".join(CANDIDATES))
    driver.find_element(By.CSS_SELECTOR, "#rerank").click()
    toast = wait_for(
        driver,
        lambda: [
            e.text
            for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid=toast-text]")
            if e.text
        ],
        "the error message",
    )
    assert toast == ["Type a query."]
    assert table_rows(driver) == []
