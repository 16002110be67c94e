#!/usr/bin/env bash
# Packaging test: what users get from the package index, not the working tree.
#  1. `python -m build` makes the sdist and the wheel of each of the three distributions
#     (the wheel is built from the sdist, so the sdist is complete), `twine check --strict`.
#     --no-isolation: the build backends (setuptools, hatchling: the test extra) are taken
#     from .venv; build still checks they satisfy each pyproject's build-system.requires.
#  2. A fresh virtual environment (no system site-packages, not .venv) gets the core wheel
#     alone: it must not pull torch or transformers; import, the shipped chat template,
#     py.typed and `qwen3-rerank --help` are checked there.
#  3. Then torch (CPU), transformers (the version of .venv) and the two adapter wheels:
#     a score of the tiny fixture checkpoint must equal the editable install's (.venv).
# Needs .venv (scripts/setup_env.sh with the test extra). Usage: scripts/test_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python           # the editable install: builds, checks, reference scores
# build and twine (the test extra); another interpreter that has them can be named here.
TOOLS=${QWEN3_RERANK_TOOLS_PYTHON:-$PY}
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet() { grep -v "^WARNING: Location" || true; }
step() { echo "==> [${SECONDS} s] $*"; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qwen3-rerank-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
DIST=$WORK/dist

step "build sdists and wheels"
for project in . integrations/llama-index-postprocessor-qwen3-rerank integrations/langchain-qwen3-rerank; do
  "$TOOLS" -m build --no-isolation --outdir "$DIST" "$project" > "$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log"
    exit 1
  }
done
ls "$DIST"
[ "$(ls "$DIST" | wc -l)" -eq 6 ] || { echo "expected 3 sdists and 3 wheels" >&2; exit 1; }

step "twine check"
"$TOOLS" -m twine check --strict "$DIST"/*

step "fresh venv: the core wheel alone"
python3 -m venv "$WORK/venv"
# env -u PYTHONPATH: nothing from the checkout may leak into the fresh venv.
VPY="env -u PYTHONPATH $WORK/venv/bin/python"
$VPY -m pip install -q --no-compile "$DIST"/qwen3_rerank_core-*.whl 2>&1 | quiet
if $VPY -m pip list 2>/dev/null | grep -iE "^(torch|transformers|tokenizers|vllm) "; then
  echo "FAIL: a plain install of the core wheel pulled in the packages above" >&2
  exit 1
fi
(cd "$WORK" && $VPY "$ROOT/scripts/wheel_smoke.py" core)
env -u PYTHONPATH "$WORK/venv/bin/qwen3-rerank" --help > /dev/null

step "fresh venv: + torch (CPU), transformers, the adapter wheels"
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
TRANSFORMERS=$("$PY" -c "import transformers; print(transformers.__version__)")
# --find-links: the adapters' qwen3-rerank-core requirement is met by the wheel just built.
$VPY -m pip install -q --no-compile --find-links "$DIST" "torch==$TORCH" \
  "transformers==$TRANSFORMERS" \
  "$DIST"/llama_index_postprocessor_qwen3_rerank-*.whl \
  "$DIST"/langchain_qwen3_rerank-*.whl 2>&1 | quiet
$VPY -m pip check
step "scores: the wheels vs the editable install"
CHECKPOINT=$("$PY" -c "from qwen3_rerank_core.testing import tiny_checkpoint; print(tiny_checkpoint('$ROOT/.cache/fixtures'))")
"$PY" scripts/wheel_smoke.py score "$CHECKPOINT" > "$WORK/editable.json"
(cd "$WORK" && $VPY "$ROOT/scripts/wheel_smoke.py" wheel "$CHECKPOINT" > "$WORK/wheel.json")
"$PY" scripts/wheel_smoke.py compare "$WORK/editable.json" "$WORK/wheel.json"
step "wheels OK"
