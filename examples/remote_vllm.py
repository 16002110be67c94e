"""Rerank through a vLLM server: sync and async calls, both prompt formats.

Start a server first (commands and options: docs/remote_vllm.md), e.g. on a GPU machine:

    vllm serve Qwen/Qwen3-Reranker-0.6B --served-model-name qwen3-reranker \\
        --runner pooling \\
        --hf-overrides '{"architectures":["Qwen3ForSequenceClassification"],"classifier_from_token":["no","yes"],"is_original_qwen3_reranker":true}' \\
        --chat-template qwen3_rerank_core/templates/qwen3_reranker.jinja   # path in a checkout

(``qwen3-rerank vllm-command`` prints this command with the installed template's path), then, with only ``pip install qwen3-rerank-core`` (httpx; no torch) on the client:

    python examples/remote_vllm.py --base-url http://127.0.0.1:8000 --model qwen3-reranker
    QWEN3_RERANK_MODEL=qwen3-reranker QWEN3_RERANK_API_KEY=... python examples/remote_vllm.py \\
        --base-url http://gpu-1:8000 --base-url http://gpu-2:8000      # replicas, Bearer key
    python examples/remote_vllm.py --base-url http://127.0.0.1:8000 --prompt-format client

``--model`` is the server's ``--served-model-name`` (by default vLLM serves the model under
its path or hub id). For each prompt format the script reranks one query with a blocking
call (``rerank``), then several queries concurrently (``arerank`` under ``asyncio.gather``).

- ``client`` (default of the library): the client builds every prompt and sends it to
  ``/classify``; works with any ``--chat-template``.
- ``server``: the client sends raw query and documents to ``/v1/score`` and the server's
  chat template builds the prompt: the server must run the template shipped in this
  package (``--chat-template`` above).

With both formats (the default here) it prints the largest score difference between them:
a large one means the server is not running the package's template.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from qwen3_rerank_core import DEFAULT_MODEL, Qwen3Reranker, RemoteError

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
ASYNC_QUERIES = [
    "What is the capital of China?",
    "Which force pulls two bodies together?",
    "What is the capital of Japan?",
    "Quelle est la plus grande ville de Chine ?",
]
#: Above this, the two prompt formats disagree (fp32 servers agree to ~1e-6).
AGREEMENT_TOLERANCE = 1e-3


def settings(args: argparse.Namespace, prompt_format: str) -> dict[str, Any]:
    return {
        "model": args.model,
        "backend": "remote",
        "base_url": args.base_url,
        "api_key": args.api_key,
        "instruction": args.instruction,
        "prompt_format": prompt_format,
        "timeout": args.timeout,
    }


def run_sync(args: argparse.Namespace, prompt_format: str) -> list[float]:
    """One blocking ``rerank`` call; returns every document's score in input order."""
    with Qwen3Reranker(**settings(args, prompt_format)) as reranker:
        results = reranker.rerank(args.query, DOCUMENTS)
    print(f"[{prompt_format} format] rerank (sync): {args.query}")
    print(f"{'rank':>4}  {'index':>5}  {'score':>6}  document")
    for rank, r in enumerate(results[: args.top_n], start=1):
        print(f"{rank:>4}  {r.index:>5}  {r.score:>6.4f}  {r.document}")
    print()
    by_index = {r.index: r.score for r in results}
    return [by_index[i] for i in range(len(DOCUMENTS))]


async def run_async(args: argparse.Namespace, prompt_format: str) -> None:
    """Several ``arerank`` calls at once on one reranker; the event loop is never blocked."""
    async with Qwen3Reranker(**settings(args, prompt_format)) as reranker:
        rankings = await asyncio.gather(
            *(reranker.arerank(q, DOCUMENTS, top_n=1) for q in ASYNC_QUERIES)
        )
    print(f"[{prompt_format} format] arerank (async), {len(ASYNC_QUERIES)} queries at once:")
    print(f"{'score':>6}  {'index':>5}  query -> best document")
    for query, (best,) in zip(ASYNC_QUERIES, rankings, strict=True):
        print(f"{best.score:>6.4f}  {best.index:>5}  {query} -> {best.document}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-url",
        action="append",
        help="vLLM server URL; repeat for replicas (default: env QWEN3_RERANK_BASE_URL, "
        "else http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("QWEN3_RERANK_MODEL", DEFAULT_MODEL),
        help="the served model name (env QWEN3_RERANK_MODEL)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("QWEN3_RERANK_API_KEY"),
        help="Bearer token, if the server runs with --api-key (env QWEN3_RERANK_API_KEY)",
    )
    parser.add_argument("--prompt-format", default="both", choices=["client", "server", "both"])
    parser.add_argument("--query", default=QUERY)
    parser.add_argument(
        "--instruction", default=None, help="task instruction (default: web search)"
    )
    parser.add_argument("--top-n", type=int, default=3, help="rows printed for the sync call")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    if not args.base_url:
        args.base_url = [os.environ.get("QWEN3_RERANK_BASE_URL", "http://127.0.0.1:8000")]
    args.base_url = args.base_url[0] if len(args.base_url) == 1 else args.base_url
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    formats = ["client", "server"] if args.prompt_format == "both" else [args.prompt_format]
    print(f"Server: {args.base_url}\nModel: {args.model}\n")
    scores: dict[str, list[float]] = {}
    try:
        for prompt_format in formats:
            scores[prompt_format] = run_sync(args, prompt_format)
            asyncio.run(run_async(args, prompt_format))
    except RemoteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nIs a vLLM server running at --base-url, serving --model? "
            "See docs/remote_vllm.md for the `vllm serve` command.",
            file=sys.stderr,
        )
        return 2

    if len(scores) == 2:
        diff = max(abs(a - b) for a, b in zip(scores["client"], scores["server"], strict=True))
        print(f"client vs server format: max |score difference| = {diff:.2e}")
        if diff > AGREEMENT_TOLERANCE:
            print(
                "WARNING: the formats disagree: start the server with "
                "--chat-template qwen3_rerank_core/templates/qwen3_reranker.jinja "
                "(see docs/remote_vllm.md), or use --prompt-format client.",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
