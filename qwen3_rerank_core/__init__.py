"""qwen3_rerank_core: exact, fast Qwen3-Reranker scoring.

Scores (query, document) pairs with the Qwen3-Reranker models (0.6B, 4B, 8B) on
one of three backends: ``"transformers"`` (local), ``"vllm"`` (in-process) or
``"remote"`` (a ``vllm serve`` server). The score is p(yes) =
softmax([logit_no, logit_yes])[1] at the last position of the model's own
prompt template, the same on every backend.

Example::

    >>> from qwen3_rerank_core import Qwen3Reranker
    >>> rr = Qwen3Reranker(model="Qwen/Qwen3-Reranker-0.6B")  # or a local folder
    >>> results = rr.rerank("What is the capital of China?",  # doctest: +SKIP
    ...                     ["Beijing is the capital of China.", "Gravity pulls."])
    >>> [(r.index, r.score) for r in results]  # best first, p(yes) in [0, 1]  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from ._cache import CacheStore
from ._config import DEFAULT_MODEL, RerankConfig
from ._errors import (
    InvalidResponseError,
    MissingDependencyError,
    ModelLoadError,
    Qwen3RerankError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)
from ._fusion import FusedScore, Fusion, boost, fuse, recency_decay
from ._prompt import DEFAULT_INSTRUCTION
from ._reranker import Qwen3Reranker, RerankResult
from ._stats import RerankStats

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MODEL",
    "CacheStore",
    "FusedScore",
    "Fusion",
    "InvalidResponseError",
    "MissingDependencyError",
    "ModelLoadError",
    "Qwen3RerankError",
    "Qwen3Reranker",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteStatusError",
    "RemoteTimeoutError",
    "RerankConfig",
    "RerankResult",
    "RerankStats",
    "__version__",
    "boost",
    "fuse",
    "recency_decay",
]

#: The one definition of the version: pyproject.toml reads it (``[tool.setuptools.dynamic]``).
__version__ = "0.1.0"

logging.getLogger("qwen3_rerank_core").addHandler(logging.NullHandler())
