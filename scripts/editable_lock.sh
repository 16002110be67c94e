#!/usr/bin/env bash
# Run a command (a pip install with editable installs of this tree) holding the tree's
# install lock. An editable install writes build metadata into the tree (*.egg-info), and
# scripts/test.sh runs the set-up scripts side by side: their editable installs take turns.
# flock comes with util-linux (essential on Debian). Usage: scripts/editable_lock.sh CMD...
set -euo pipefail
LOCK="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/editable-install.lock"
mkdir -p "$(dirname "$LOCK")"
exec flock "$LOCK" "$@"
