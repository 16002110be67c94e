#!/usr/bin/env bash
# Set up everything (CPU torch, the three distributions, Chromium for the demo's browser
# test, the vLLM CPU venv) and run
# ruff, mypy and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip warns about every missing local index folder of this machine; keep the log readable.
quiet() { grep -v "^WARNING: Location" || true; }
bash scripts/setup_env.sh \
  -e ".[transformers,test,bench]" \
  -e "integrations/llama-index-postprocessor-qwen3-rerank[test]" \
  -e "integrations/langchain-qwen3-rerank[test]" 2>&1 | quiet
if [ "${QWEN3_RERANK_SKIP_BROWSER:-0}" != "1" ]; then
  bash scripts/setup_browser.sh 2>&1 | quiet
fi
if [ "${QWEN3_RERANK_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/setup_vllm_venv.sh 2>&1 | quiet
fi
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy (strict on qwen3_rerank_core)"
.venv/bin/mypy
.venv/bin/mypy -p llama_index.postprocessor.qwen3_rerank -p langchain_qwen3_rerank
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
