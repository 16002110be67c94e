"""No deprecated transformers calls: the prefix-reuse path passes its KV cache under the
name the installed transformers' model takes (``cache`` in 5.x, ``past_key_values`` in 4.x)
and reads the output's cache without the deprecated alias.

pytest's ``filterwarnings`` (pyproject.toml) already turns every DeprecationWarning and
FutureWarning into a failure; this test also catches what transformers reports through its
logger instead of a warning (reading ``output.past_key_values`` in 5.x logs "deprecated").

The transformers forward is what continues a cached prefix (the lean forward, the default on
SDPA, keeps its own keys/values), so the cache test runs it with ``lean=False``; the default
is checked for deprecations too.
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank_core import DEFAULT_INSTRUCTION, RerankConfig
from qwen3_rerank_core._backends._transformers import TransformersBackend

DOCS = ["Beijing is the capital of China.", "Gravity pulls.", "Paris is in France."] * 3


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


QUERY = "What is the capital of China?"


def _backend(model_dir: Path, *, lean: bool | None) -> TransformersBackend:
    config = RerankConfig(model=str(model_dir), device="cpu", dtype="float32")
    return TransformersBackend(config, lean=lean)


class _Deprecations:
    """Deprecation warnings and transformers' "deprecated" log lines within the block."""

    def __enter__(self) -> _Deprecations:
        # transformers logs each deprecation once per process: forget earlier ones.
        cache_clear = getattr(logging.Logger.__dict__.get("warning_once"), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()
        self._records = _Records()
        logging.getLogger("transformers").addHandler(self._records)
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        logging.getLogger("transformers").removeHandler(self._records)

    def found(self) -> list[str]:
        kinds = (DeprecationWarning, FutureWarning, PendingDeprecationWarning)
        found = [str(w.message) for w in self._caught if issubclass(w.category, kinds)]
        return found + [m for m in self._records.messages if "deprecat" in m.lower()]


@pytest.mark.usefixtures("one_torch_thread")
def test_prefix_reuse_uses_the_current_cache_api(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    backend: Any = _backend(tiny_model_dir, lean=False)
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
    with _Deprecations() as deprecations:
        scores = backend.score_groups([(QUERY, DOCS)], DEFAULT_INSTRUCTION)
    assert len(scores[0]) == len(DOCS)
    cached_calls = [kw for kw in seen if kw & {"cache", "past_key_values"}]
    assert cached_calls, f"no forward call continued a cached prefix: {seen}"
    if expected == "cache":
        assert all("past_key_values" not in kw for kw in seen), seen
    else:  # transformers 4.x: the only name there is
        assert all("past_key_values" in kw for kw in cached_calls), seen
    assert not deprecations.found(), deprecations.found()


@pytest.mark.usefixtures("one_torch_thread")
def test_the_default_forward_raises_no_deprecations(tiny_model_dir: Path) -> None:
    pytest.importorskip("torch")
    with _Deprecations() as deprecations:
        backend = _backend(tiny_model_dir, lean=None)
        scores = backend.score_groups([(QUERY, DOCS)], DEFAULT_INSTRUCTION)
    assert len(scores[0]) == len(DOCS)
    assert all(0.0 <= x <= 1.0 for x in scores[0]), scores
    assert not deprecations.found(), deprecations.found()
