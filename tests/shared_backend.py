"""A test double for the reranker's backend: the session's loaded tiny model behind a
new reranker, so that a test builds rerankers without loading a model each time.

:class:`SharedBackend` forwards ``score_groups`` to the session's backend, counting the
work in its own counters (the reranker that owns it reads those), and records every
document it is asked to score when given a list. Closing it leaves the model to the
session. Import from tests as ``from shared_backend import SharedBackend``
(``conftest.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence

from qwen3_rerank_core._backends import Backend, Group
from qwen3_rerank_core._stats import attach_counters, counters_of


class SharedBackend(Backend):
    """``inner`` (a loaded backend) behind a reranker built in a test; ``seen``, when
    given, receives every document scored."""

    def __init__(self, inner: Backend, seen: list[str] | None = None) -> None:
        self.inner = inner
        self.seen = seen

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        if self.seen is not None:
            for _, docs in groups:
                self.seen.extend(docs)
        previous = counters_of(self.inner)
        attach_counters(self.inner, counters_of(self))
        try:
            return self.inner.score_groups(groups, instruction)
        finally:
            attach_counters(self.inner, previous)
