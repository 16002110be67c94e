"""Two-stage retrieval: BM25 recalls the top 100, Qwen3-Reranker keeps the best 10.

Runs on the small labelled set in ``examples/data`` (a BEIR-format folder:
48 short passages in English, French, German and Spanish, 13 queries, graded
judgements) and prints NDCG@10, MRR@10 and Recall@10 before and after
reranking, computed by ``ir_measures``::

    pip install "qwen3-rerank-core[transformers,eval]"
    python examples/two_stage_retrieval.py                                   # Qwen/Qwen3-Reranker-0.6B
    python examples/two_stage_retrieval.py --model /models/Qwen3-Reranker-0.6B  # a local folder
    QWEN3_RERANK_MODEL=/models/Qwen3-Reranker-0.6B python examples/two_stage_retrieval.py
    python examples/two_stage_retrieval.py --model tiny-random   # offline smoke test: random weights
    python examples/two_stage_retrieval.py --data /path/to/beir/scifact   # any BEIR folder

``tiny-random`` builds a tiny random-weight checkpoint with the real tokenizer
(needs the ``fixtures`` extra): everything runs, but its scores mean nothing.
``qwen3-rerank eval`` does the same with more options (a TREC run as the first
stage, several instructions side by side).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

import bm25s
import ir_measures
from ir_measures import RR, R, nDCG

from qwen3_rerank_core import DEFAULT_MODEL, ModelLoadError, Qwen3Reranker, RerankConfig
from qwen3_rerank_core.offline import HubUnreachableError, check_hub

DATA = Path(__file__).resolve().parent / "data"
MEASURES = [nDCG @ 10, RR @ 10, R @ 10]
NAMES = ["NDCG@10", "MRR@10", "Recall@10"]


def load_beir(folder: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """corpus (id -> text), queries (id -> text, judged ones only), qrels (qid -> {docid: grade})."""
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            corpus[str(d["_id"])] = f"{d.get('title') or ''}\n\n{d['text']}".strip()
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)  # header: query-id, corpus-id, score
        for qid, docid, grade in rows:
            qrels.setdefault(qid, {})[docid] = int(grade)
    queries = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            if str(q["_id"]) in qrels:
                queries[str(q["_id"])] = q["text"]
    return corpus, queries, qrels


def bm25_top_k(corpus: dict[str, str], queries: dict[str, str], k: int) -> dict[str, list[str]]:
    """First stage: the top-k document ids per query from bm25s (zero scores left out)."""
    doc_ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(corpus.values()), show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(queries.values()), show_progress=False)
    found, scores = retriever.retrieve(query_tokens, k=min(k, len(doc_ids)), show_progress=False)
    return {
        qid: [doc_ids[d] for d, s in zip(found[i], scores[i], strict=True) if s > 0]
        for i, qid in enumerate(queries)
    }


def as_run(ranked: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """A ranking as an ir_measures run (higher score = better rank)."""
    return {
        qid: {d: float(len(docs) - r) for r, d in enumerate(docs)} for qid, docs in ranked.items()
    }


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
    parser.add_argument(
        "--instruction", default=None, help="task instruction (default: web search)"
    )
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder (qrels/test.tsv)")
    parser.add_argument("--recall", type=int, default=100, help="first-stage depth (100)")
    parser.add_argument("--top-n", type=int, default=10, help="documents kept by the reranker (10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets itself to DEBUG

    model = args.model
    local_only = False
    if model == "tiny-random":
        from qwen3_rerank_core.testing import tiny_checkpoint

        model = str(tiny_checkpoint())
        print(
            "Using a tiny RANDOM-WEIGHT checkpoint: the pipeline runs, the metrics mean nothing.\n"
        )
    elif args.backend != "remote":
        try:  # offline: fail in seconds, in one line (a cached model loads from the cache)
            local_only = check_hub(model)
        except HubUnreachableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    corpus, queries, qrels = load_beir(args.data)
    first_stage = bm25_top_k(corpus, queries, args.recall)

    try:
        with Qwen3Reranker(
            model=model,
            backend=args.backend,
            base_url=args.base_url,
            instruction=args.instruction,
            local_files_only=local_only,
        ) as reranker:
            results = reranker.rerank_many(
                [(queries[q], [corpus[d] for d in first_stage[q]]) for q in queries],
                top_n=args.top_n,
            )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "\nOffline? Pass a local folder: --model /path/to/Qwen3-Reranker-0.6B "
            "(or QWEN3_RERANK_MODEL=...), or try the pipeline with --model tiny-random.",
            file=sys.stderr,
        )
        return 2
    reranked = {
        q: [first_stage[q][r.index] for r in ranked]
        for q, ranked in zip(queries, results, strict=True)
    }

    rows = {
        f"BM25 top {args.recall}": as_run(first_stage),
        f"reranked top {args.top_n}": as_run(reranked),
    }
    print(f"{len(queries)} queries, {len(corpus)} passages ({args.data}); reranker: {args.model}\n")
    print(f"{'':<20}" + "".join(f"{n:>11}" for n in NAMES))
    for label, run in rows.items():
        values = ir_measures.calc_aggregate(MEASURES, qrels, run)
        print(f"{label:<20}" + "".join(f"{values[m]:>11.4f}" for m in MEASURES))

    qid = next(iter(queries))
    print(f"\nQuery {qid}: {queries[qid]}  (top 5; * = relevant)")
    for label, docs in (("BM25", first_stage[qid]), ("reranked", reranked[qid])):
        top = ", ".join(f"{d}{'*' if qrels[qid].get(d, 0) > 0 else ''}" for d in docs[:5])
        print(f"  {label:<9} {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
