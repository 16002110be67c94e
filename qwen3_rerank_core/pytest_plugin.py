"""pytest plugin: the tiny offline Qwen3 checkpoint and helpers for tests that rerank.

Opt in from a ``conftest.py`` at the root of your tests (``pytest_plugins`` is
only allowed there)::

    pytest_plugins = ["qwen3_rerank_core.pytest_plugin"]

It is deliberately not an auto-loading ``pytest11`` entry point: the package is
a runtime library, and installing it must not add fixtures to, or import
anything into, every pytest run of the environment. Loading the plugin imports
only pytest, the standard library and the core itself (httpx); torch,
transformers and hypothesis are imported when a fixture or helper needs them.

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
relevant), :data:`EDGE_QUERIES` / :data:`EDGE_TEXTS` (inputs that must be
scored like any other), :func:`expected_order` (the ranking a reranker must
return for given scores), :func:`load_tiny_reranker`; hypothesis helpers
(:func:`hypothesis_settings`, :func:`text_strategy`, :func:`insert_repeats`,
:func:`json_metadata`, :func:`cut_strategies`; they need ``hypothesis``, in the
``test`` extra); and for adapters, :class:`AdapterContract` (tests every
adapter passes, to subclass), :func:`bad_list_cases`,
:func:`adapter_with_own_reranker`, :func:`record_async_calls` and
:func:`run_markdown_examples`.

Example (a test module, with the plugin loaded)::

    >>> from qwen3_rerank_core.pytest_plugin import SAMPLE_QUERY, SAMPLE_TEXTS, expected_order
    >>> def test_best_first(tiny_reranker):  # doctest: +SKIP
    ...     scores = tiny_reranker.score(SAMPLE_QUERY, SAMPLE_TEXTS)
    ...     ranked = tiny_reranker.rerank(SAMPLE_QUERY, SAMPLE_TEXTS)
    ...     assert [r.index for r in ranked] == expected_order(scores)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pytest

from ._config import DEFAULT_MODEL
from ._fusion import Fusion
from ._reranker import Qwen3Reranker, RerankResult

if TYPE_CHECKING:
    from hypothesis import settings as Settings
    from hypothesis.strategies import DrawFn, SearchStrategy

__all__ = [
    "EDGE_QUERIES",
    "EDGE_TEXTS",
    "SAMPLE_QUERY",
    "SAMPLE_TEXTS",
    "AdapterContract",
    "adapter_with_own_reranker",
    "bad_list_cases",
    "cut_strategies",
    "expected_fused",
    "expected_order",
    "hypothesis_settings",
    "insert_repeats",
    "json_metadata",
    "load_tiny_reranker",
    "one_torch_thread",
    "record_async_calls",
    "run_markdown_examples",
    "text_strategy",
    "tiny_model_dir",
    "tiny_reranker",
    "tiny_tokenizer",
]

T = TypeVar("T")

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
#: Queries a reranker must accept: CJK, right-to-left, an emoji with a joiner, a NUL byte.
EDGE_QUERIES: tuple[str, ...] = (SAMPLE_QUERY, "北京", "مرحبا?", "🌱\u200d?", "a\x00b")
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


def expected_fused(
    fusion: Fusion,
    relevance: Sequence[float],
    first_stage_scores: Sequence[float] | None,
    signals: Mapping[str, Sequence[float]],
) -> list[float]:
    """The fused scores of ``docs/hybrid.md``'s formula, written out independently of
    ``qwen3_rerank_core._fusion`` (min-max or RRF first stage, signals as given, ``math.fsum``)."""
    n = len(relevance)
    mode = fusion.mode
    if mode == "auto":
        mode = "rank" if first_stage_scores is None else "score"
    if mode == "rank":
        if first_stage_scores is None:
            ranks = list(range(1, n + 1))
        else:
            ranks = [1 + sum(t > s for t in first_stage_scores) for s in first_stage_scores]
        fs = [1 / (fusion.rrf_k + r) for r in ranks]
    else:
        assert first_stage_scores is not None
        lo, hi = min(first_stage_scores), max(first_stage_scores)
        fs = [1.0 if hi == lo else (s - lo) / (hi - lo) for s in first_stage_scores]
    return [
        math.fsum(
            [fusion.relevance * relevance[i], fusion.first_stage * fs[i]]
            + [w * signals[name][i] for name, w in fusion.signals.items()]
        )
        for i in range(n)
    ]


def load_tiny_reranker(model_dir: str | Path, **settings: Any) -> Qwen3Reranker:
    """A loaded reranker on ``model_dir`` (transformers, CPU, float32) with ``settings``."""
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


def cut_strategies(max_top_n: int = 10) -> dict[str, SearchStrategy[Any]]:
    """``top_n`` (None or 1 to ``max_top_n``) and ``min_score`` (None or in [0, 1]).

    For ``@given(..., **cut_strategies())`` on a test taking ``top_n`` and ``min_score``.
    """
    from hypothesis import strategies as st

    return {
        "top_n": st.one_of(st.none(), st.integers(1, max_top_n)),
        "min_score": st.one_of(st.none(), st.floats(0.0, 1.0)),
    }


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


# ----------------------------------------------------------------- framework adapters


def run_markdown_examples(path: Path, model: str | os.PathLike[str]) -> dict[str, Any]:
    """Run every Python block of a Markdown file, on ``model`` instead of the hub's model.

    Returns the blocks' namespace. Skips the test when ``path`` is not part of
    the checkout (e.g. an adapter's tests run from its sdist).
    """
    if not path.exists():
        pytest.skip(f"{path} is not part of this checkout")
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, f"no Python example in {path}"
    code = "\n".join(blocks).replace(f'"{DEFAULT_MODEL}"', repr(str(model)))
    namespace: dict[str, Any] = {"__name__": "__example__"}
    exec(compile(code, str(path), "exec"), namespace)
    return namespace


def record_async_calls(reranker: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each ``reranker.arerank`` call in the returned list; fail the test on ``rerank``."""
    calls: list[str] = []
    original = reranker.arerank

    async def spy(*args: Any, **kwargs: Any) -> list[RerankResult]:
        calls.append("arerank")
        return await original(*args, **kwargs)

    monkeypatch.setattr(reranker, "arerank", spy)
    monkeypatch.setattr(reranker, "rerank", lambda *a, **k: pytest.fail("sync path used"))
    return calls


def adapter_with_own_reranker(adapter: Callable[..., Any], model_dir: Path, **settings: Any) -> Any:
    """``adapter`` building its own reranker (CPU, float32, local files only) from ``settings``.

    Checks that the model and every setting reached the reranker's config.
    """
    built = adapter(
        model=str(model_dir),
        device="cpu",
        dtype="float32",
        reranker_kwargs={"local_files_only": True},
        **settings,
    )
    config = built.reranker.config
    assert (config.model, config.local_files_only) == (str(model_dir), True)
    assert {name: getattr(config, name) for name in settings} == settings
    return built


def bad_list_cases(name: str, kind: str, make: Callable[..., list[Any]]) -> list[Any]:
    """``(make_input, exception, message regex)`` cases of a bad list of items for an adapter.

    ``name`` is the argument's name, ``kind`` a regex of the item type's name and
    ``make(*texts)`` builds a good list of items with those texts.
    """
    return [
        (lambda: None, TypeError, rf"{name} must be a list of {kind}, got NoneType: None"),
        # a str would otherwise be ranked character by character
        (lambda: "abc", TypeError, rf"{name} must be a list of {kind}, got str: 'abc'"),
        (lambda: (x for x in make("a")), TypeError, rf"{name} must be a list of {kind}, got generator"),
        (lambda: {"page_content": "a"}, TypeError, rf"{name} must be a list of {kind}, got dict"),
        (lambda: [*make("a"), None], TypeError, rf"{name}\[1\] must be a {kind}, got NoneType"),
        # the core names the item's position as documents[i]
        (lambda: make("ok", "bad \udc80"), ValueError, r"documents\[1\] is not valid Unicode text \(lone surrogate"),
    ]  # fmt: skip


class AdapterContract:
    """Tests every framework adapter of the core passes; subclass it as ``TestAdapterContract``.

    Set :attr:`adapter` (the adapter class), :attr:`engine_setting` (an engine
    setting it refuses next to ``reranker=``) and :attr:`bad_min_score` (a
    ``min_score`` it refuses), and define :meth:`dump` (its serialized form).
    """

    adapter: ClassVar[Callable[..., Any]]
    engine_setting: ClassVar[dict[str, Any]]
    bad_min_score: ClassVar[float]

    def dump(self, adapter: Any) -> str:
        raise NotImplementedError

    def test_shared_reranker(self, tiny_reranker: Qwen3Reranker) -> None:
        first, second = self.adapter(reranker=tiny_reranker, top_n=1), self.adapter(reranker=tiny_reranker, top_n=4)  # fmt: skip
        assert first.reranker is tiny_reranker and second.reranker is tiny_reranker
        config = tiny_reranker.config
        assert (first.model, first.backend, first.max_length) == (
            config.model,
            config.backend,
            config.max_length,
        )
        with pytest.raises(ValueError, match="not both"):
            self.adapter(reranker=tiny_reranker, **self.engine_setting)

    @pytest.mark.parametrize(
        ("reranker", "needle"),
        [
            ("a-model-name", r"got str: 'a-model-name'"),
            (42, r"got int: 42"),
            (object(), "got object"),
        ],
        ids=["str", "int", "object"],
    )
    def test_reranker_must_be_a_qwen3_reranker(self, reranker: Any, needle: str) -> None:
        with pytest.raises(TypeError, match=r"reranker must be a Qwen3Reranker or None, " + needle):
            self.adapter(reranker=reranker)

    def test_invalid_settings_are_rejected(self) -> None:
        bad: list[dict[str, Any]] = [{"top_n": 0}, {"min_score": self.bad_min_score}]
        for settings in [*bad, {"unknown_option": 1}, {"backend": "remote"}]:  # remote: no base_url
            with pytest.raises(ValueError):
                self.adapter(model="x", **settings)

    def test_api_key_is_never_shown(self) -> None:
        secret = "sk-do-not-print-1234"
        own = self.adapter(
            model="served-name", backend="remote", base_url=["http://127.0.0.1:9"], api_key=secret
        )
        assert own.api_key is not None and own.api_key.get_secret_value() == secret
        assert own.reranker.config.api_key == secret
        assert own.reranker.config.base_url == ("http://127.0.0.1:9",)
        urls = ("http://127.0.0.1:9", "http://127.0.0.1:10")
        reranker = Qwen3Reranker(
            model="served-name", backend="remote", base_url=urls, api_key=secret
        )
        shared = self.adapter(reranker=reranker)
        assert shared.base_url == list(urls)
        assert shared.api_key is not None and shared.api_key.get_secret_value() == secret
        texts = (repr(own), str(own), self.dump(own), repr(own.reranker.config))
        for text in (*texts, repr(shared), self.dump(shared)):
            assert secret not in text


# ----------------------------------------------------------------- fixtures


#: ini option naming the fixture cache folder, relative to the rootdir.
CACHE_INI = "qwen3_rerank_fixture_cache"


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
