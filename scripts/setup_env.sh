#!/usr/bin/env bash
# Create .venv (if missing) with the CPU build of PyTorch and install the given pip arguments.
# Usage: scripts/setup_env.sh -e ".[transformers]" ...
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The package itself asks for a torch *range*; here we install the CPU build explicitly
# first, so that range is already satisfied and no multi-GB CUDA build is pulled in.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "==> installing torch ${TORCH_VERSION:-2.13.0} (CPU build)"
  .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
if [ "$#" -gt 0 ]; then
  echo "==> installing $*"
  # Holding the tree's install lock: other set-ups may be installing this tree beside it.
  bash scripts/editable_lock.sh .venv/bin/pip install -q "$@"
fi
