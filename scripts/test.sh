#!/usr/bin/env bash
# Set up everything (CPU torch, the three distributions, Chromium for the demo's browser
# test, the vLLM CPU venv, the oldest-dependencies venv) and run
# ruff, mypy and the whole test suite (newest dependencies), then the wheel smoke test
# (scripts/test_wheels.sh) and the parity, adapter and remote-unit tests with the oldest
# supported dependencies (.venv-oldest, constraints-oldest.txt). Extra arguments go to the
# main pytest run. Local shortcuts (CI runs everything): QWEN3_RERANK_SKIP_VLLM=1,
# QWEN3_RERANK_SKIP_BROWSER=1, QWEN3_RERANK_SKIP_WHEELS=1, QWEN3_RERANK_SKIP_OLDEST=1.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip warns about every missing local index folder of this machine; keep the log readable.
quiet() { grep -v "^WARNING: Location" || true; }
skip() { [ "${!1:-0}" = "1" ]; }
if [ "${CI:-}" = "true" ]; then
  for var in QWEN3_RERANK_SKIP_VLLM QWEN3_RERANK_SKIP_BROWSER QWEN3_RERANK_SKIP_WHEELS QWEN3_RERANK_SKIP_OLDEST; do
    if skip "$var"; then echo "$var=1 is not allowed under CI=true: CI runs everything" >&2; exit 1; fi
  done
fi
# Background jobs (set-ups that mostly download, checks that need one core): each writes
# its own log, printed when the job is awaited; a failed job fails the run, named. Each
# runs in a session of its own (setsid, util-linux), so stop_bg can end its children too.
declare -A BG_PID BG_LOG
start_bg() {
  local name=$1
  shift
  BG_LOG[$name]=$(mktemp)
  setsid --wait "$@" > "${BG_LOG[$name]}" 2>&1 &
  BG_PID[$name]=$!
}
finish_bg() {
  local name=$1 rc=0
  [ -n "${BG_PID[$name]:-}" ] || return 0
  wait "${BG_PID[$name]}" || rc=$?
  unset "BG_PID[$name]"  # awaited: stop_bg must not signal its (reusable) id
  quiet < "${BG_LOG[$name]}"
  if [ "$rc" -ne 0 ]; then
    echo "$name failed (exit $rc)" >&2
    exit 1
  fi
  echo "==> [${SECONDS} s] $name done"
}
# A failing step ends the run: stop the background jobs with it (their whole sessions).
stop_bg() {
  local pid
  for pid in "${BG_PID[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
}
trap stop_bg EXIT
# The set-ups run side by side, mostly downloads (apt-get, pip): the browser's and the vLLM
# venv's in the background from the start, .venv here, then the oldest-dependencies venv in
# the background while ruff and mypy run. Their editable installs of this tree take turns
# (scripts/editable_lock.sh); .venv's comes first, the oldest venv's (one long pip command
# holding the lock) after it. The vLLM and oldest venvs are reused when up to date.
if ! skip QWEN3_RERANK_SKIP_BROWSER; then
  start_bg "scripts/setup_browser.sh" bash scripts/setup_browser.sh
fi
if ! skip QWEN3_RERANK_SKIP_VLLM; then
  start_bg "scripts/setup_vllm_venv.sh" bash scripts/setup_vllm_venv.sh
fi
bash scripts/setup_env.sh \
  -e ".[transformers,test,bench]" \
  -e "integrations/llama-index-postprocessor-qwen3-rerank[test]" \
  -e "integrations/langchain-qwen3-rerank[test]" 2>&1 | quiet
echo "==> [${SECONDS} s] .venv ready"
if ! skip QWEN3_RERANK_SKIP_OLDEST; then
  start_bg "scripts/setup_oldest_env.sh" bash scripts/setup_oldest_env.sh
fi
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy (strict on qwen3_rerank_core)"
.venv/bin/mypy
.venv/bin/mypy -p llama_index.postprocessor.qwen3_rerank -p langchain_qwen3_rerank
echo "==> [${SECONDS} s] ruff and mypy passed"
finish_bg "scripts/setup_browser.sh"
finish_bg "scripts/setup_vllm_venv.sh"
echo "==> pytest (newest dependencies, 2 workers)"
# Two pytest-xdist workers, each test module on one worker (its module-scoped fixtures, the
# vLLM servers among them, start once): 519 s against 991 s in one process on the 2-core
# machine (2026-12-06), much of the suite being waits on subprocesses and servers.
# --no-loadscope-reorder: the modules go out in conftest.py's order, the slow ones (marked
# slow or vllm) first, not xdist's (most tests first), which left the few-test vLLM modules
# to the end, one worker finishing them alone.
# --max-worker-restart=0: a worker that crashes (a segfault, an illegal instruction) fails
# the run at once; with restarts, --dist loadscope hung after one (seen 2026-12-07, and
# with a test that calls os.abort()), which CI would only end at its time limit.
.venv/bin/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder --max-worker-restart=0 "$@"
echo "==> [${SECONDS} s] pytest passed"
# The wheel smoke test (mostly builds and pip installs, one core) beside the oldest pass; the
# oldest venv is awaited first (the wheels are built in the tree, as its editable installs).
finish_bg "scripts/setup_oldest_env.sh"
if ! skip QWEN3_RERANK_SKIP_WHEELS; then
  echo "==> wheels (scripts/test_wheels.sh, in the background)"
  start_bg "scripts/test_wheels.sh" bash scripts/test_wheels.sh
fi
if ! skip QWEN3_RERANK_SKIP_OLDEST; then
  echo "==> oldest supported dependencies (.venv-oldest)"
  # test_langchain_qwen3_rerank.py needs langchain-classic, which needs langchain-core>=1.0.
  QWEN3_RERANK_OLDEST=1 .venv-oldest/bin/python -m pytest \
    tests/test_parity.py tests/test_remote_unit.py tests/test_packaging.py tests/test_deprecations.py \
    integrations \
    --ignore=integrations/langchain-qwen3-rerank/tests/test_langchain_qwen3_rerank.py
fi
finish_bg "scripts/test_wheels.sh"
echo "==> all passed (${SECONDS} s)"
