"""The interface every backend implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence

__all__ = ["Backend", "Group"]

#: One query with its documents.
Group = tuple[str, Sequence[str]]


class Backend(ABC):
    """Scores validated inputs. Subclasses implement :meth:`score_groups`.

    ``score_groups(groups, instruction)`` returns, for each ``(query, documents)``
    group, one p(yes) per document in input order. It must be safe to call from
    several threads at once. The default async method runs the sync one in a
    worker thread so the event loop is never blocked; backends with real async
    I/O (remote) override it.
    """

    @abstractmethod
    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        """One list of scores per group, each in its documents' order."""

    async def ascore_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        """Async :meth:`score_groups`; never blocks the event loop."""
        return await asyncio.to_thread(
            self.score_groups, groups, instruction, show_progress=show_progress
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, GPU memory)."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()
