"""A web page to try Qwen3-Reranker: type a query and candidates, get them ranked with scores.

    pip install -e ".[transformers,demo]"          # gradio

    python examples/gradio_app.py                                   # Qwen/Qwen3-Reranker-0.6B (hub)
    python examples/gradio_app.py --model /models/Qwen3-Reranker-0.6B   # a local folder (offline)
    QWEN3_RERANK_MODEL=/models/Qwen3-Reranker-0.6B python examples/gradio_app.py
    python examples/gradio_app.py --backend remote --base-url http://127.0.0.1:8000 \\
        --model qwen3-reranker                                      # a vLLM server
    python examples/gradio_app.py --model tiny-random               # offline smoke test

then open http://127.0.0.1:7860. The page has a query box, a candidate box (one candidate
per line; blank lines are skipped), an optional instruction box (empty: the default web-search
instruction) and a table of the candidates, best first, with their scores p(yes) in [0, 1].

The model is loaded once, before the page is served. The page listens on 127.0.0.1 only;
``--host 0.0.0.0`` exposes it to your network (it has no authentication).

``tiny-random`` builds a tiny random-weight Qwen3 checkpoint with the real
tokenizer (needs ``pip install "qwen3-rerank-core[fixtures]"``): it checks that
everything runs, but its scores mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from qwen3_rerank_core import (
    DEFAULT_INSTRUCTION,
    DEFAULT_MODEL,
    ModelLoadError,
    Qwen3Reranker,
    RerankConfig,
)
from qwen3_rerank_core.offline import HubUnreachableError, check_hub

if TYPE_CHECKING:
    import gradio as gr

#: Columns of the result table.
HEADERS = ["rank", "score", "candidate #", "candidate"]
EXAMPLE_QUERY = "What is the capital of China?"
EXAMPLE_CANDIDATES = "\n".join(
    [
        "The capital of China is Beijing.",
        "Gravity is a force that attracts two bodies towards each other.",
        "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
        "Shanghai is the largest city in China by population.",
        "Pékin est la capitale de la République populaire de Chine.",
        "東京は日本の首都です。",
    ]
)


def parse_candidates(text: str) -> list[str]:
    """One candidate per non-blank line, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def rank_table(
    reranker: Qwen3Reranker, query: str, candidates: str, instruction: str
) -> list[list[Any]]:
    """Rows ``[rank, score, candidate #, candidate]``, best first (``candidate #`` counts from 1).

    Raises ``ValueError`` with a message for the page on empty input.
    """
    query = (query or "").strip()
    if not query:
        raise ValueError("Type a query.")
    documents = parse_candidates(candidates or "")
    if not documents:
        raise ValueError("Type at least one candidate (one per line).")
    results = reranker.rerank(query, documents, instruction=(instruction or "").strip() or None)
    return [
        [rank, round(r.score, 4), r.index + 1, r.document]
        for rank, r in enumerate(results, start=1)
    ]


def build_demo(reranker: Qwen3Reranker, *, model_label: str) -> gr.Blocks:
    """The page: query, candidates and instruction boxes, a Rerank button, the ranked table."""
    import gradio as gr

    def on_rerank(query: str, candidates: str, instruction: str) -> list[list[Any]]:
        try:
            return rank_table(reranker, query, candidates, instruction)
        except ValueError as exc:  # bad input: shown on the page
            raise gr.Error(str(exc)) from exc

    demo = gr.Blocks(title="Qwen3-Reranker", analytics_enabled=False)
    with demo:
        gr.Markdown(
            f"# Qwen3-Reranker\nModel: `{model_label}`, backend: `{reranker.config.backend}`. "
            "Scores are p(yes) in [0, 1]: the model's probability that the candidate meets "
            "the query and instruction."
        )
        with gr.Row():
            with gr.Column():
                query = gr.Textbox(label="Query", placeholder=EXAMPLE_QUERY, elem_id="query")
                candidates = gr.Textbox(
                    label="Candidates (one per line)",
                    lines=8,
                    placeholder=EXAMPLE_CANDIDATES,
                    elem_id="candidates",
                )
                instruction = gr.Textbox(
                    label="Instruction (optional)",
                    placeholder=DEFAULT_INSTRUCTION,
                    elem_id="instruction",
                )
                button = gr.Button("Rerank", variant="primary", elem_id="rerank")
            with gr.Column():
                table = gr.Dataframe(
                    headers=HEADERS,
                    datatype=["number", "number", "number", "str"],
                    label="Ranked candidates",
                    interactive=False,
                    wrap=True,
                    elem_id="results",
                )
        inputs = [query, candidates, instruction]
        button.click(on_rerank, inputs, table, api_name="rerank")
        query.submit(on_rerank, inputs, table, api_visibility="private")
        gr.Examples([[EXAMPLE_QUERY, EXAMPLE_CANDIDATES, ""]], inputs)
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("QWEN3_RERANK_MODEL", DEFAULT_MODEL),
        help="hub id or local folder (env QWEN3_RERANK_MODEL); 'tiny-random' for a smoke test",
    )
    parser.add_argument("--backend", default="transformers", choices=RerankConfig.backend_names())
    parser.add_argument("--base-url", default=None, help="vLLM server URL (backend=remote)")
    parser.add_argument("--device", default=None, help="'cpu', 'cuda', ...; default: picks")
    parser.add_argument("--max-length", type=int, default=8192, help="most tokens per prompt")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    model = args.model
    local_only = False
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
        print("Using a tiny RANDOM-WEIGHT checkpoint: the page works, the scores mean nothing.")
    elif args.backend != "remote":
        try:  # offline: fail in seconds, in one line (a cached model loads from the cache)
            local_only = check_hub(model)
        except HubUnreachableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    reranker = Qwen3Reranker(
        model=model,
        backend=args.backend,
        base_url=args.base_url,
        device=args.device,
        max_length=args.max_length,
        local_files_only=local_only,
    )
    try:
        reranker.load()
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B "
            "(or QWEN3_RERANK_MODEL=...), or try the page with --model tiny-random.",
            file=sys.stderr,
        )
        return 2
    try:
        demo = build_demo(reranker, model_label=args.model)
        demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=True)
    finally:
        reranker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
