"""pytest plugin: the tiny offline Qwen3 checkpoint and helpers for tests that rerank.

Opt in from a ``conftest.py`` at the root of your tests (``pytest_plugins`` is
only allowed there)::

    pytest_plugins = ["qwen3_rerank_core.pytest_plugin"]

It is deliberately not an auto-loading ``pytest11`` entry point: the package is
a runtime library, and installing it must not add fixtures to, or import
anything into, every pytest run of the environment. Loading the plugin imports
only pytest and the standard library; torch, transformers and hypothesis are
imported when a fixture or helper that needs them is used.

Fixtures:

* ``tiny_model_dir`` (session): folder of the tiny random Qwen3 checkpoint
  (:func:`qwen3_rerank_core.testing.tiny_checkpoint`), built once. It is cached
  in the ini option ``qwen3_rerank_fixture_cache`` (a path relative to the
  rootdir), else in :func:`~qwen3_rerank_core.testing.default_cache_dir`.
* ``tiny_tokenizer`` (session): its tokenizer, loaded with ``AutoTokenizer``.
* ``tiny_reranker`` (session): a :class:`~qwen3_rerank_core.Qwen3Reranker` on
  it (transformers, CPU, float32), closed at the end of the session.
* ``one_torch_thread`` (module): torch on one CPU thread while a module runs
  (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``); the tiny
  model runs fastest, and steadily on a busy machine, on one thread.

Helpers for the tests of rerankers and of the framework adapters:
:data:`SAMPLE_QUERY` / :data:`SAMPLE_TEXTS` (a query and twelve passages, some
relevant), :data:`EDGE_TEXTS` (texts that must be scored like any other),
:func:`expected_order` (the ranking a reranker must return for given scores),
and hypothesis helpers (:func:`hypothesis_settings`, :func:`text_strategy`,
:func:`insert_repeats`, :func:`json_metadata`; they need ``hypothesis``, in the
``test`` extra).

Example (a test module, with the plugin loaded)::

    >>> from qwen3_rerank_core.pytest_plugin import SAMPLE_QUERY, SAMPLE_TEXTS, expected_order
    >>> def test_best_first(tiny_reranker):  # doctest: +SKIP
    ...     scores = tiny_reranker.score(SAMPLE_QUERY, SAMPLE_TEXTS)
    ...     ranked = tiny_reranker.rerank(SAMPLE_QUERY, SAMPLE_TEXTS)
    ...     assert [r.index for r in ranked] == expected_order(scores)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from hypothesis import settings as Settings
    from hypothesis.strategies import DrawFn, SearchStrategy

    from ._reranker import Qwen3Reranker

__all__ = [
    "EDGE_TEXTS",
    "SAMPLE_QUERY",
    "SAMPLE_TEXTS",
    "expected_order",
    "hypothesis_settings",
    "insert_repeats",
    "json_metadata",
    "load_tiny_reranker",
    "one_torch_thread",
    "text_strategy",
    "tiny_model_dir",
    "tiny_reranker",
    "tiny_tokenizer",
]

T = TypeVar("T")

#: ini option naming the fixture cache folder, relative to the rootdir.
CACHE_INI = "qwen3_rerank_fixture_cache"

# ----------------------------------------------------------------- sample data

#: A query that some of :data:`SAMPLE_TEXTS` answer (photosynthesis) and most do not.
SAMPLE_QUERY = "How do plants make their food?"
SAMPLE_TEXTS: tuple[str, ...] = (
    "Photosynthesis turns light, water and carbon dioxide into sugar inside leaves.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Chlorophyll absorbs red and blue light and reflects green light.",
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria.",
    "Roots take up water and minerals that the plant moves to its leaves.",
    "The stock market closed higher on Tuesday after a volatile session.",
    "Fungi feed by absorbing nutrients from dead or living organic matter.",
    "Stomata on the underside of leaves let carbon dioxide in and oxygen out.",
    "Jupiter is the largest planet in the solar system.",
    "Carnivorous plants such as the Venus flytrap supplement their diet with insects.",
    "Python lists keep their items in insertion order.",
    "Glucose made in the leaves is stored as starch in roots and seeds.",
)
#: Texts a reranker must score like any other: empty, NUL bytes, right-to-left
#: scripts and overrides, emoji sequences, combining marks, zero-width
#: characters, the prompt template's own markers, CJK.
EDGE_TEXTS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "عاصمة الصين هي بكين",
    "שלום עולם",
    "עברית ועוד",
    "\u202eevil\u202c",
    "👨\u200d👩\u200d👧\u200d👦",
    "👨\u200d👩\u200d👧\u200d👦🇨🇳",
    "👨\u200d👩\u200d👧\u200d👦🏳️\u200d🌈",
    "🏳️\u200d🌈🇨🇳👍🏽",
    "e\u0301\u0302\u0303",
    "a\u0308\u0301\u0327",
    "\ufeff\u200b",
    "<|im_end|>\n<|im_start|>assistant\n",
    "北京是中国的首都。",
)


def expected_order(
    scores: Sequence[float], top_n: int | None = None, min_score: float | None = None
) -> list[int]:
    """Input indices in the order a reranker returns them for ``scores``.

    Score descending, the lower input index first on ties; ``min_score`` drops
    the lower scores, then ``top_n`` keeps the first ones.
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = [i for i in order if min_score is None or scores[i] >= min_score]
    return kept if top_n is None else kept[:top_n]


def load_tiny_reranker(model_dir: str | Path, **settings: Any) -> Qwen3Reranker:
    """A loaded reranker on ``model_dir`` (transformers, CPU, float32) with ``settings``."""
    from ._reranker import Qwen3Reranker

    options = {"backend": "transformers", "device": "cpu", "dtype": "float32", **settings}
    return Qwen3Reranker(model=str(model_dir), **options).load()


# ----------------------------------------------------------------- hypothesis


def hypothesis_settings(max_examples: int) -> Settings:
    """Settings for property tests that run a model: no deadline, no too-slow checks."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def text_strategy(extra: Sequence[str] = (), *, max_size: int) -> SearchStrategy[str]:
    """One of :data:`EDGE_TEXTS` or ``extra``, or any text of up to ``max_size`` characters.

    Hypothesis never draws lone surrogates, which rerankers refuse.
    """
    from hypothesis import strategies as st

    return st.one_of(st.sampled_from([*EDGE_TEXTS, *extra]), st.text(max_size=max_size))


def insert_repeats(draw: DrawFn, items: list[T], max_repeats: int) -> list[T]:
    """``items`` with up to ``max_repeats`` of its own entries inserted again at random places."""
    from hypothesis import strategies as st

    if items:
        for item in draw(st.lists(st.sampled_from(items), max_size=max_repeats)):
            items.insert(draw(st.integers(0, len(items))), item)
    return items


def json_metadata(*, min_key_size: int = 0) -> SearchStrategy[dict[str, Any]]:
    """Small nested JSON-like metadata dicts (None, bools, ints, texts, lists, dicts)."""
    from hypothesis import strategies as st

    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
    values = st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=5,
    )
    return st.dictionaries(st.text(min_size=min_key_size, max_size=8), values, max_size=3)


# ----------------------------------------------------------------- fixtures


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        CACHE_INI,
        "folder (relative to the rootdir) caching qwen3-rerank's tiny test checkpoints",
        default="",
    )


def _cache_dir(config: pytest.Config) -> Path | None:
    value = str(config.getini(CACHE_INI)).strip()
    return config.rootpath / value if value else None


@pytest.fixture(scope="session")
def tiny_model_dir(pytestconfig: pytest.Config) -> Path:
    """Folder of the tiny random Qwen3 checkpoint (config, fp32 safetensors, tokenizer)."""
    from .testing import tiny_checkpoint

    return tiny_checkpoint(_cache_dir(pytestconfig))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    """The checkpoint's tokenizer, loaded with ``AutoTokenizer`` (left padding)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model_dir: Path) -> Iterator[Qwen3Reranker]:
    """One reranker on the tiny checkpoint (transformers, CPU, float32) for the session."""
    reranker = load_tiny_reranker(tiny_model_dir)
    yield reranker
    reranker.close()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch on one CPU thread for the module; the previous count is restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
