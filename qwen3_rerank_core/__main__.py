"""``python -m qwen3_rerank_core``: the ``qwen3-rerank`` command line."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
