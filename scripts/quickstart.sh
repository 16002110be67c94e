#!/usr/bin/env bash
# The main job: set up .venv if needed, then rerank a small multilingual example.
# Any option goes to examples/quickstart.py (see --help), e.g. --model /path/to/Qwen3-Reranker-0.6B
set -euo pipefail
cd "$(dirname "$0")/.."
# pip warns about every missing local index folder of this machine; keep the log readable.
quiet() { grep -v "^WARNING: Location" || true; }
bash scripts/setup_env.sh -e ".[transformers,fixtures]" 2>&1 | quiet >&2
exec .venv/bin/python examples/quickstart.py "$@"
