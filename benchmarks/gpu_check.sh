#!/usr/bin/env bash
# GPU readiness check (benchmarks/gpu_check.py): prepare here, run on a CUDA machine.
#
#   bash benchmarks/gpu_check.sh --prepare [--assets DIR]     # here: writes .gpu_assets
#   bash benchmarks/gpu_check.sh --out DIR [options]          # on the GPU machine
#   bash benchmarks/gpu_check.sh --out DIR --cpu-dry-run      # the same code on CPU, tiny
#
# Python: $PYTHON if set, else the repository's .venv, else python3 (the GPU machine's own).
# The package is used from this checkout (PYTHONPATH), never installed. Options after
# --out are those of `gpu_check.py run` (--sections, --time-limit, --device, ...).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then
    py="$repo/.venv/bin/python"
else
    py="python3"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

case "${1:-}" in
    --prepare)
        shift
        exec "$py" "$here/gpu_check.py" prepare "$@"
        ;;
    "" | -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exec "$py" "$here/gpu_check.py" run --help
        ;;
    *)
        exec "$py" "$here/gpu_check.py" run "$@"
        ;;
esac
