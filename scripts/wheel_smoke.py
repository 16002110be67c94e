"""Smoke checks of installed wheels, run by scripts/test_wheels.sh in a fresh venv.

Usage (from a folder outside the checkout, so nothing is imported from the tree)::

    python scripts/wheel_smoke.py core                 # import, template, py.typed
    python scripts/wheel_smoke.py score CHECKPOINT     # prints scores as JSON
    python scripts/wheel_smoke.py wheel CHECKPOINT     # both adapters rerank; prints scores
    python scripts/wheel_smoke.py compare A.json B.json
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import sys
from pathlib import Path

QUERY = "What is the capital of China?"
DOCS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Beijing hosted the 2008 Summer Olympics.",
]
TOLERANCE = 1e-6


def check_core() -> None:
    """The core wheel imports from site-packages and ships its data files."""
    import qwen3_rerank_core

    location = Path(qwen3_rerank_core.__file__).resolve()
    assert "site-packages" in location.parts, f"imported from {location}, not the wheel"
    installed = importlib.metadata.version("qwen3-rerank-core")
    assert qwen3_rerank_core.__version__ == installed, (qwen3_rerank_core.__version__, installed)
    package = importlib.resources.files("qwen3_rerank_core")
    template = package / "templates" / "qwen3_reranker.jinja"
    assert template.is_file() and "<|im_start|>" in template.read_text(), template
    assert (package / "py.typed").is_file(), "py.typed missing from the wheel"
    # The CPU kernels' sources, built at first use.
    for name in (
        "_attention_avx512.c",
        "_elementwise_avx512.c",
        "_avx512_common.h",
        "_attention_avx2.c",
    ):
        assert (package / "_backends" / name).is_file(), f"_backends/{name} missing from the wheel"
    for name in ("LICENSE",):
        files = importlib.metadata.files("qwen3-rerank-core") or []
        assert any(Path(str(f)).name == name for f in files), f"{name} missing from the wheel"
    print(f"core {installed} OK: {location.parent}")


def scores(checkpoint: str) -> list[float]:
    """Scores of DOCS for QUERY with the transformers backend (prefix reuse on)."""
    import torch

    torch.set_num_threads(1)
    from qwen3_rerank_core import Qwen3Reranker

    reranker = Qwen3Reranker(model=checkpoint, device="cpu", dtype="float32")
    results = reranker.rerank(QUERY, DOCS)
    by_index = sorted(results, key=lambda r: r.index)
    return [r.score for r in by_index]


def check_adapters(checkpoint: str) -> None:
    """Both adapter wheels import, ship py.typed and rerank with the core wheel."""
    import torch

    torch.set_num_threads(1)
    import langchain_qwen3_rerank
    import llama_index.postprocessor.qwen3_rerank as li_package
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    for module in (langchain_qwen3_rerank, li_package):
        folder = Path(module.__file__ or "").resolve().parent
        assert "site-packages" in folder.parts, f"{module.__name__} imported from {folder}"
        assert (folder / "py.typed").is_file(), f"py.typed missing in {folder}"
    kwargs = {"model": checkpoint, "top_n": 2, "device": "cpu", "dtype": "float32"}
    lc = langchain_qwen3_rerank.QwenRerank(**kwargs)
    picked = lc.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert len(picked) == 2, picked
    li = li_package.QwenRerank(**kwargs)
    nodes = [NodeWithScore(node=TextNode(text=d)) for d in DOCS]
    ranked = li.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert len(ranked) == 2, ranked
    print("adapters OK", file=sys.stderr)


def compare(editable: str, wheel: str) -> None:
    """The wheel's scores equal the editable install's."""
    # The last line of each output: the scores (anything a library printed comes before).
    a = json.loads(Path(editable).read_text().strip().splitlines()[-1])
    b = json.loads(Path(wheel).read_text().strip().splitlines()[-1])
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    assert diff <= TOLERANCE, f"wheel scores {b} differ from the editable install's {a}"
    print(f"scores equal (max |diff| {diff:.1e}): {b}")


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "core":
        check_core()
    elif command == "score":
        print(json.dumps(scores(args[0])))
    elif command == "wheel":  # one process: torch is imported once
        check_adapters(args[0])
        print(json.dumps(scores(args[0])))
    elif command == "compare":
        compare(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}; see the module docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
