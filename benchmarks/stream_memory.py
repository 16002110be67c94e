"""Peak memory and speed of one big ``score`` call on the local transformers backend.

Scores ``--docs`` documents of about ``--tokens`` Qwen3 tokens each (default:
10,000 x 1,000, i.e. ~10M prompt tokens) for one query in a single call, on the
tiny random-weight checkpoint by default (the model is tiny on purpose: what is
measured is what the package holds besides the weights). Each measurement runs
in a fresh worker process that loads the documents and the model first, then
reports

* the resident set size (RSS) just before the call,
* the peak RSS during the call (Linux ``VmHWM``, reset before the call through
  ``/proc/self/clear_refs``), and the growth = peak - before,
* documents per second of the call.

``--chunk-docs 0`` turns chunking off (every document tokenized before any is
scored, the behaviour before chunking) for comparison. The documents are
synthetic multilingual prose (``workloads.py``), cut to exactly ``--tokens``
tokens, and cached under ``.cache/stream_memory/``.

Example::

    nice -n 19 .venv/bin/python benchmarks/stream_memory.py --docs 2500 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = REPO / ".cache" / "stream_memory"
QUERY = "Which report describes the water quality of the river?"


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field, in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def make_docs(tokenizer: object, n: int, tokens: int, seed: int) -> list[str]:
    """``n`` documents of exactly ``tokens`` tokens (cut at a token boundary)."""
    sys.path.insert(0, str(HERE))
    from workloads import _language, _sentence

    rng = random.Random(f"stream-{seed}")
    docs: list[str] = []
    while len(docs) < n:
        texts = []
        for _ in range(min(500, n - len(docs))):
            words, sep, end = _language(rng)
            joiner = " " if sep == " " else ""
            # ~1.3 chars/token is the worst case of these banks (CJK); make sure to overshoot.
            parts, size = [], 0
            while size < tokens * 8:
                sentence = _sentence(rng, words, sep, end)
                parts.append(sentence)
                size += len(sentence)
            texts.append(joiner.join(parts))
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)  # type: ignore[operator]
        for text, offsets in zip(texts, enc["offset_mapping"], strict=True):
            if len(offsets) < tokens:
                raise RuntimeError("generated text too short; raise the overshoot")
            docs.append(text[: offsets[tokens - 1][1]])
    return docs


def docs_file(model: str, n: int, tokens: int, seed: int) -> Path:
    path = CACHE / f"docs-{n}x{tokens}-seed{seed}.json"
    if not path.exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        docs = make_docs(tokenizer, n, tokens, seed)
        lengths = [len(ids) for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]]
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"docs": docs, "tokens": lengths}, ensure_ascii=False))
        tmp.replace(path)
    return path


def worker(args: argparse.Namespace) -> None:
    """Load, warm up, then one timed ``score`` call; prints one JSON line."""
    import torch

    from qwen3_rerank_core import Qwen3Reranker
    from qwen3_rerank_core._backends._transformers import TransformersBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    data = json.loads(Path(args.docs_path).read_text())
    docs: list[str] = data["docs"]
    lengths: list[int] = data["tokens"]
    del data
    input_bytes = sum(sys.getsizeof(d) for d in docs) + sys.getsizeof(docs)
    rr = Qwen3Reranker(
        model=args.model, device="cpu", max_length=args.max_length, local_files_only=True
    ).load()
    backend = rr._get_backend()
    assert isinstance(backend, TransformersBackend)
    if args.chunk_docs == 0:
        backend._chunk_docs, backend._chunk_chars = sys.maxsize, sys.maxsize
    elif args.chunk_docs is not None:
        backend._chunk_docs = args.chunk_docs
    rr.score(QUERY, docs[:8])  # warm-up: lazy imports, thread pools, allocator
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    start = time.perf_counter()
    scores = rr.score(QUERY, docs)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    assert len(scores) == len(docs)
    result = {
        "docs": len(docs),
        "tokens_mean": sum(lengths) / len(lengths),
        "tokens_min": min(lengths),
        "tokens_max": max(lengths),
        "chunk_docs": backend._chunk_docs,
        "chunk_chars": backend._chunk_chars,
        "threads": torch.get_num_threads(),
        "input_mib": input_bytes / 2**20,
        "rss_before_mib": before / 2**20,
        "rss_peak_mib": peak / 2**20,
        "growth_mib": (peak - before) / 2**20,
        "seconds": seconds,
        "docs_per_s": len(docs) / seconds,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[10_000], help="document counts")
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per document")
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--chunk-docs",
        type=int,
        default=None,
        help="documents per chunk (default: the package's); 0 turns chunking off",
    )
    parser.add_argument("--model", default=None, help="checkpoint folder (default: tiny)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--docs-path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from qwen3_rerank_core.testing import tiny_checkpoint

        args.model = str(tiny_checkpoint(REPO / ".cache" / "fixtures"))
    if args.worker:
        worker(args)
        return

    results = []
    for n in args.docs:
        path = docs_file(args.model, n, args.tokens, args.seed)
        cmd = [sys.executable, __file__, "--worker", "--docs-path", str(path)]
        cmd += ["--model", args.model, "--max-length", str(args.max_length)]
        cmd += ["--threads", str(args.threads)]
        if args.chunk_docs is not None:
            cmd += ["--chunk-docs", str(args.chunk_docs)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{r['docs']:>6} docs x {r['tokens_mean']:.0f} tokens "
            f"({r['tokens_min']}-{r['tokens_max']}), chunk {r['chunk_docs']} docs: "
            f"input {r['input_mib']:.0f} MiB, RSS before {r['rss_before_mib']:.0f} MiB, "
            f"peak {r['rss_peak_mib']:.0f} MiB (+{r['growth_mib']:.0f} MiB), "
            f"{r['docs_per_s']:.1f} docs/s ({r['seconds']:.0f} s, {r['threads']} threads)",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
