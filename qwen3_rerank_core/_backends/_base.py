"""The interface every backend implements."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["Backend", "Group", "nothing", "progress_bar"]

logger = logging.getLogger("qwen3_rerank_core")

#: One query with its documents.
Group = tuple[str, Sequence[str]]


class Backend(ABC):
    """Scores validated inputs. Subclasses implement :meth:`score_groups`.

    ``score_groups(groups, instruction)`` returns, for each ``(query, documents)``
    group, one p(yes) per document in input order. It must be safe to call from
    several threads at once. The default async method runs the sync one in a
    worker thread so the event loop is never blocked; backends with real async
    I/O (remote) override it. A call scored in another thread than the one that made
    it runs :meth:`caller_setup`'s function there first.
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
        setup = self.caller_setup()

        def score() -> list[list[float]]:
            setup()
            return self.score_groups(groups, instruction, show_progress=show_progress)

        return await asyncio.to_thread(score)

    def caller_setup(self) -> Callable[[], None]:
        """Called in the thread that makes a call; returns what the thread that scores
        it runs first, so the call scores as it would in its own thread.

        The local backends carry the caller's torch thread count: torch keeps one per
        thread, and a float32 product split over another number of threads rounds
        differently. By default nothing.
        """
        return nothing

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, GPU memory)."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()


def nothing() -> None:
    """Does nothing: the default :meth:`Backend.caller_setup` function."""


def _no_progress(n: int) -> None:
    pass


@contextmanager
def progress_bar(total: int, enabled: bool, *, desc: str) -> Iterator[Callable[[int], object]]:
    """A tqdm bar over ``total`` documents, given as a function that advances it by ``n``.

    The one progress bar of the backends. A no-op when disabled or ``total`` is 0, and
    when tqdm is missing (with a warning naming ``pip install tqdm``). Closed on exit.

    Example::

        >>> with progress_bar(3, False, desc="Scoring") as advance:
        ...     advance(3)
    """
    if not enabled or total == 0:
        yield _no_progress
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        logger.warning("show_progress needs tqdm (pip install tqdm); no progress bar shown")
        yield _no_progress
        return
    with tqdm(total=total, desc=desc, unit="doc") as bar:
        yield bar.update
