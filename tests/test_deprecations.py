"""No deprecated transformers calls: the prefix-reuse path passes its KV cache under the
name the installed transformers' model takes (``cache`` in 5.x, ``past_key_values`` in 4.x)
and reads the output's cache without the deprecated alias.

pytest's ``filterwarnings`` (pyproject.toml) already turns every DeprecationWarning and
FutureWarning into a failure; this test also catches what transformers reports through its
logger instead of a warning (reading ``output.past_key_values`` in 5.x logs "deprecated").
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import Qwen3Reranker

DOCS = ["Beijing is the capital of China.", "Gravity pulls.", "Paris is in France."] * 3


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_prefix_reuse_uses_the_current_cache_api(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    reranker = Qwen3Reranker(model=str(tiny_model_dir), device="cpu", dtype="float32")
    reranker.score("load the model", ["now"])  # the backend loads on first use
    backend: Any = reranker._backend
    assert backend._reuse_prefix, "the prefix-reuse path is what this test is about"
    decoder = backend._decoder
    expected = "cache" if "cache" in inspect.signature(decoder.forward).parameters else None
    seen: list[set[str]] = []
    original = type(decoder).forward

    @functools.wraps(original)  # keeps forward's signature, which the backend inspects
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(set(kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(decoder), "forward", spy)
    # transformers logs each deprecation once per process: forget earlier ones.
    cache_clear = getattr(logging.Logger.__dict__.get("warning_once"), "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
    records = _Records()
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores = reranker.score("What is the capital of China?", DOCS)
    finally:
        transformers_logger.removeHandler(records)
    assert len(scores) == len(DOCS)
    cached_calls = [kw for kw in seen if kw & {"cache", "past_key_values"}]
    assert cached_calls, f"no forward call continued a cached prefix: {seen}"
    if expected == "cache":
        assert all("past_key_values" not in kw for kw in seen), seen
    else:  # transformers 4.x: the only name there is
        assert all("past_key_values" in kw for kw in cached_calls), seen
    deprecations = [
        str(w.message)
        for w in caught
        if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning))
    ]
    assert not deprecations, deprecations
    logged = [m for m in records.messages if "deprecat" in m.lower()]
    assert not logged, logged
