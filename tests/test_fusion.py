"""Hybrid ranking (``qwen3_rerank_core._fusion``, ``rerank(fusion=...)``).

* ``fuse`` equals a direct computation of the formula in the module docstring
  (min-max, RRF, signals, ``math.fsum``) on random inputs (hypothesis);
* ``rerank(fusion=...)`` orders by that fused score (ties: input order), keeps
  ``score`` equal to ``score()``'s p(yes), applies ``min_score`` to p(yes) and
  ``top_n`` after ordering; ``arerank`` and ``rerank_many`` agree;
* without fusion options results are exactly as before (no ``fusion`` part);
* the caller's lists and mappings are not changed;
* every bad fusion input raises an error naming the value, before the model loads;
* ``recency_decay`` (half-life and step, dates/datetimes/ISO strings, timezones)
  and ``boost`` (bool, number, threshold, missing).
"""

from __future__ import annotations

import asyncio
import copy
import math
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_rerank_core import (
    FusedScore,
    Fusion,
    Qwen3Reranker,
    RerankResult,
    boost,
    fuse,
    recency_decay,
)
from qwen3_rerank_core.pytest_plugin import expected_fused

QUERY = "Which laptop is good for travel?"

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
weights = st.floats(min_value=-5, max_value=5, allow_nan=False, allow_infinity=False)
probs = st.floats(min_value=0.0, max_value=1.0)
names = st.text(st.characters(categories=["Ll"]), min_size=1, max_size=5)


@st.composite
def fusion_cases(
    draw: Any,
) -> tuple[Fusion, list[float], list[float] | None, dict[str, list[float]]]:
    n = draw(st.integers(min_value=1, max_value=12))
    signal_names = draw(st.lists(names, max_size=3, unique=True))
    mode = draw(st.sampled_from(["auto", "score", "rank"]))
    fusion = Fusion(
        relevance=draw(weights),
        first_stage=draw(weights),
        signals={name: draw(weights) for name in signal_names},
        mode=mode,
        rrf_k=draw(st.sampled_from([0, 1, 10, 60, 2.5])),
    )
    relevance = draw(st.lists(probs, min_size=n, max_size=n))
    # small integer pools make ties (in scores and in fused values) common
    score_values = st.one_of(finite, st.integers(-3, 3).map(float))
    scores = draw(st.lists(score_values, min_size=n, max_size=n))
    if mode != "score" and draw(st.booleans()):
        scores = None
    signals = {
        name: draw(st.lists(st.one_of(finite, st.sampled_from([0.0, 1.0])), min_size=n, max_size=n))
        for name in signal_names
    }
    return fusion, relevance, scores, signals


@given(fusion_cases())
@settings(max_examples=300, deadline=None)
def test_fuse_equals_the_formula(case: Any) -> None:
    fusion, relevance, scores, signals = case
    snapshot = copy.deepcopy((relevance, scores, signals))
    out = fuse(fusion, relevance, first_stage_scores=scores, signals=signals)
    assert [f.fused for f in out] == expected_fused(fusion, relevance, scores, signals)
    assert [f.relevance for f in out] == relevance
    for f in out:
        assert [name for name, _ in f.signals] == list(fusion.signals)
    for name in fusion.signals:
        assert [f.signal(name) for f in out] == signals[name]
    assert (relevance, scores, signals) == snapshot  # nothing mutated


def test_min_max_constant_scores_give_one_and_rrf_ranks_are_one_based() -> None:
    out = fuse(Fusion(first_stage=1.0), [0.2, 0.4, 0.6], first_stage_scores=[3.0, 3.0, 3.0])
    assert [f.first_stage for f in out] == [1.0, 1.0, 1.0]
    assert [f.first_stage for f in fuse(Fusion(), [0.5], first_stage_scores=[-7.0])] == [1.0]
    out = fuse(Fusion(first_stage=1.0, rrf_k=60), [0.5, 0.5, 0.5])  # auto, no scores: rank
    assert [f.first_stage for f in out] == [1 / 61, 1 / 62, 1 / 63]
    out = fuse(Fusion(mode="rank", rrf_k=0), [0.5] * 4, first_stage_scores=[1.0, 9.0, 1.0, 5.0])
    assert [f.first_stage for f in out] == [1 / 3, 1 / 1, 1 / 3, 1 / 2]  # ranks 3, 1, 3, 2


def test_min_max_of_extreme_scores_stays_finite() -> None:
    out = fuse(Fusion(first_stage=1.0), [0.5, 0.5, 0.5], first_stage_scores=[-1e308, 0.0, 1e308])
    assert [f.first_stage for f in out] == [0.0, 0.5, 1.0]


def test_default_fusion_is_the_plain_score() -> None:
    relevance = [0.3, 0.9, 0.3, 0.1]
    assert [f.fused for f in fuse(Fusion(), relevance)] == relevance


def test_spec_round_trip_and_errors() -> None:
    fusion = Fusion(relevance=0.6, first_stage=0.3, signals={"new": 0.1}, mode="rank", rrf_k=10)
    assert fusion.spec == "relevance=0.6,first_stage=0.3,signal.new=0.1,mode=rank,k=10"
    assert Fusion.from_spec(fusion.spec) == fusion
    assert Fusion.from_spec("first_stage=0.5") == Fusion(first_stage=0.5)
    assert hash(Fusion.from_spec(fusion.spec)) == hash(fusion)
    for spec, needle in [
        ("", "non-empty"),
        ("relevance", "expected key=value"),
        ("relevance=abc", "relevance='abc' is not a number"),
        ("relevance=1,relevance=2", "'relevance' is given twice"),
        ("weight=1", "unknown key 'weight'"),
        ("mode=minmax", "mode must be one of"),
        ("relevance=nan", "must be finite, got nan"),
        ("k=-1", "rrf_k must be >= 0"),
    ]:
        with pytest.raises(ValueError) as info:
            Fusion.from_spec(spec)
        assert needle in str(info.value), (spec, str(info.value))


def test_fusion_pickles_and_copies() -> None:
    import pickle

    fusion = Fusion(relevance=0.6, first_stage=0.3, signals={"new": 0.1}, mode="rank", rrf_k=5)
    for clone in (pickle.loads(pickle.dumps(fusion)), copy.copy(fusion), copy.deepcopy(fusion)):
        assert clone == fusion and clone.spec == fusion.spec
        assert isinstance(clone, Fusion)


def test_fusion_config_is_frozen_and_copies_the_weights() -> None:
    weights = {"new": 0.1}
    fusion = Fusion(signals=weights)
    weights["new"] = 5.0
    weights["extra"] = 1.0
    assert dict(fusion.signals) == {"new": 0.1}
    with pytest.raises(TypeError):
        fusion.signals["new"] = 2.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        fusion.relevance = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "error", "needle"),
    [
        (
            lambda: Fusion(relevance=math.inf),
            ValueError,
            "relevance weight must be finite, got inf",
        ),
        (
            lambda: Fusion(first_stage=math.nan),
            ValueError,
            "first_stage weight must be finite, got nan",
        ),
        (lambda: Fusion(first_stage="0.3"), TypeError, "got str: '0.3'"),  # type: ignore[arg-type]
        (lambda: Fusion(relevance=True), TypeError, "got bool"),
        (
            lambda: Fusion(signals={"new": -math.inf}),
            ValueError,
            "signal 'new' must be finite, got -inf",
        ),
        (lambda: Fusion(signals={"": 1.0}), ValueError, "non-empty str, got ''"),
        (lambda: Fusion(signals=[("new", 1.0)]), TypeError, "mapping of name -> weight"),  # type: ignore[arg-type]
        (lambda: Fusion(mode="minmax"), ValueError, "got 'minmax'"),  # type: ignore[arg-type]
        (lambda: Fusion(rrf_k=-1), ValueError, "rrf_k must be >= 0, got -1"),
    ],
)
def test_bad_fusion_config_names_the_value(make: Any, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        make()
    assert needle in str(info.value)


# ---------------------------------------------------------------- the facade
@pytest.fixture(scope="module")
def reranker(tiny_model_dir: Path) -> Any:
    pytest.importorskip("transformers")
    with Qwen3Reranker(model=str(tiny_model_dir), max_length=128) as rr:
        yield rr


DOCS = [
    "Ultralight 13-inch laptop, 980 g, 18 h battery.",
    "Gaming desktop tower with liquid cooling.",
    "Travel adapter for European sockets.",
    "14-inch business laptop, 1.2 kg, backlit keyboard.",
    "Laptop sleeve, water resistant.",
    "Ultralight 13-inch laptop, 980 g, 18 h battery.",
]

doc_lists = st.lists(st.sampled_from(DOCS), min_size=1, max_size=6)


@given(data=st.data())
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_rerank_orders_by_the_fused_score(reranker: Any, data: Any) -> None:
    docs = data.draw(doc_lists)
    n = len(docs)
    fusion = Fusion(
        relevance=data.draw(weights),
        first_stage=data.draw(weights),
        signals={"new": data.draw(weights)},
        mode=data.draw(st.sampled_from(["auto", "rank"])),
    )
    scores = data.draw(st.one_of(st.none(), st.lists(finite, min_size=n, max_size=n)))
    new = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    top_n = data.draw(st.one_of(st.none(), st.integers(1, 7)))
    min_score = data.draw(st.one_of(st.none(), probs))
    caller = (list(docs), copy.copy(scores), {"new": list(new)})
    docs_in, scores_in, signals_in = copy.deepcopy(caller)

    results = reranker.rerank(
        QUERY, docs_in, fusion=fusion, first_stage_scores=scores_in, signals=signals_in,
        top_n=top_n, min_score=min_score,
    )  # fmt: skip
    assert (docs_in, scores_in, signals_in) == caller  # not mutated

    p_yes = reranker.score(QUERY, docs)
    fused = expected_fused(fusion, p_yes, scores, {"new": [float(b) for b in new]})
    order = sorted(range(n), key=lambda i: (-fused[i], i))
    kept = [i for i in order if min_score is None or p_yes[i] >= min_score][:top_n]
    assert [r.index for r in results] == kept
    for r in results:
        assert r.score == p_yes[r.index]  # p(yes) exactly as score() gives it
        assert r.fusion is not None and r.fusion.relevance == r.score
        assert r.fused_score == r.fusion.fused == fused[r.index]
        assert r.document is docs_in[r.index]
    assert asyncio.run(
        reranker.arerank(
            QUERY, docs, fusion=fusion, first_stage_scores=scores, signals={"new": new},
            top_n=top_n, min_score=min_score,
        )
    ) == results  # fmt: skip


def test_without_fusion_results_are_as_before(reranker: Any) -> None:
    results = reranker.rerank(QUERY, DOCS, top_n=4)
    scores = reranker.score(QUERY, DOCS)
    order = sorted(range(len(DOCS)), key=lambda i: (-scores[i], i))[:4]
    assert results == [RerankResult(i, scores[i], DOCS[i]) for i in order]
    assert all(r.fusion is None and r.fused_score == r.score for r in results)
    # Fusion() is the plain order, with the parts attached
    fused = reranker.rerank(QUERY, DOCS, top_n=4, fusion=Fusion())
    assert [(r.index, r.score) for r in fused] == [(r.index, r.score) for r in results]
    assert all(isinstance(r.fusion, FusedScore) for r in fused)


def test_ties_keep_input_order(reranker: Any) -> None:
    # relevance weight 0 and equal signals: every fused score is the same
    fusion = Fusion(relevance=0.0, signals={"stock": 1.0})
    results = reranker.rerank(QUERY, DOCS, fusion=fusion, signals={"stock": [1.0] * len(DOCS)})
    assert [r.index for r in results] == list(range(len(DOCS)))


def test_rerank_many_takes_per_item_fusion_inputs(reranker: Any) -> None:
    fusion = Fusion(relevance=0.5, first_stage=0.5, signals={"new": 0.2})
    items = [(QUERY, DOCS[:3]), ("charger", DOCS[2:])]
    scores = [[3.0, 1.0, 2.0], None]
    signals = [{"new": [True, False, False]}, {"new": [0, 0, 1, 1]}]
    many = reranker.rerank_many(items, fusion=fusion, first_stage_scores=scores, signals=signals)
    for (query, docs), s, sig, got in zip(items, scores, signals, many, strict=True):
        assert got == reranker.rerank(query, docs, fusion=fusion, first_stage_scores=s, signals=sig)
    with pytest.raises(ValueError, match=r"items\[1\]: signals\['new'\] has 3 values for 4"):
        reranker.rerank_many(items, fusion=fusion, signals=[signals[0], {"new": [0, 0, 1]}])
    with pytest.raises(ValueError, match="first_stage_scores has 1 entries for 2 items"):
        reranker.rerank_many(items, fusion=fusion, first_stage_scores=[None], signals=signals)


BAD_CALLS = [
    # (rerank keyword arguments, error, message part); 3 documents
    ({"first_stage_scores": [1.0, 2.0, 3.0]}, ValueError, "need fusion=Fusion"),
    ({"signals": {"new": [1, 0, 1]}}, ValueError, "need fusion=Fusion"),
    ({"fusion": {"relevance": 1.0}}, TypeError, "fusion must be a Fusion or None, got dict"),
    (
        {"fusion": Fusion(), "first_stage_scores": [1.0, 2.0]},
        ValueError,
        "first_stage_scores has 2 values for 3 documents",
    ),
    (
        {"fusion": Fusion(), "first_stage_scores": [1.0, math.nan, 3.0]},
        ValueError,
        "first_stage_scores[1] must be finite, got nan",
    ),
    (
        {"fusion": Fusion(), "first_stage_scores": [1.0, 2.0, math.inf]},
        ValueError,
        "first_stage_scores[2] must be finite, got inf",
    ),
    (
        {"fusion": Fusion(), "first_stage_scores": [1.0, "2", 3.0]},
        TypeError,
        "first_stage_scores[1] must be a number, got str: '2'",
    ),
    (
        {"fusion": Fusion(), "first_stage_scores": "123"},
        TypeError,
        "first_stage_scores must be a sequence",
    ),
    ({"fusion": Fusion(mode="score")}, ValueError, 'mode "score" needs first_stage_scores'),
    (
        {"fusion": Fusion(signals={"new": 0.1})},
        ValueError,
        "weighs signal 'new' but signals= has no values",
    ),
    (
        {"fusion": Fusion(), "signals": {"new": [1, 0, 1]}},
        ValueError,
        "signals['new'] has no weight in the Fusion",
    ),
    (
        {"fusion": Fusion(signals={"new": 0.1}), "signals": {"new": [1, 0]}},
        ValueError,
        "signals['new'] has 2 values for 3 documents",
    ),
    (
        {"fusion": Fusion(signals={"new": 0.1}), "signals": {"new": [1, None, 0]}},
        TypeError,
        "signals['new'][1] must be a number, got NoneType",
    ),
    (
        {"fusion": Fusion(signals={"new": 0.1}), "signals": {"new": [1, 0, -math.inf]}},
        ValueError,
        "signals['new'][2] must be finite, got -inf",
    ),
    (
        {"fusion": Fusion(signals={"new": 0.1}), "signals": [("new", [1, 0, 1])]},
        TypeError,
        "signals must be a mapping",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "needle"), BAD_CALLS)
def test_bad_fusion_input_names_the_value_before_loading(
    kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    rr = Qwen3Reranker(model="/nonexistent/model", backend="transformers")
    for call in (
        lambda: rr.rerank(QUERY, DOCS[:3], **kwargs),
        lambda: asyncio.run(rr.arerank(QUERY, DOCS[:3], **kwargs)),
    ):
        with pytest.raises(error) as info:
            call()
        assert needle in str(info.value)
    assert rr._backend is None  # failed before loading the model


# ------------------------------------------------------------ signal helpers
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_recency_step_and_half_life() -> None:
    dates = ["2026-12-01", "2026-11-01T12:00:00Z", "2026-11-01", "2026-06-01", "2027-01-01"]
    # ages: 0.5, 30.0, 30.5, 183.5 days, future (-> 0)
    assert recency_decay(dates, now=NOW, step_days=30) == [1.0, 1.0, 0.8, 0.8, 1.0]
    assert recency_decay(dates, now=NOW, step_days=30, step_factor=0.5) == [1.0, 1.0, 0.5, 0.5, 1.0]
    got = recency_decay(dates, now=NOW, half_life_days=30)
    ages = [0.5, 30.0, 30.5, 183.5, 0.0]
    assert got == pytest.approx([0.5 ** (a / 30) for a in ages], rel=1e-12)
    assert got[1] == 0.5


def test_recency_accepts_dates_datetimes_and_timezones() -> None:
    shanghai = timezone(timedelta(hours=8))
    same_moment = [
        datetime(2026, 11, 1, 20, 0, tzinfo=shanghai),  # = 12:00 UTC
        "2026-11-01T20:00:00+08:00",
        "2026-11-01T12:00:00Z",
        "2026-11-01 12:00",  # naive: UTC
        datetime(2026, 11, 1, 12, 0),  # naive: UTC
    ]
    assert recency_decay(same_moment, now=NOW, half_life_days=30) == [0.5] * 5
    # a date is its midnight UTC; "YYYY-MM" is the 1st of the month
    midnight = recency_decay(
        [date(2026, 11, 1), "2026-11-01", "2026-11"], now=NOW, half_life_days=30
    )
    assert midnight == [0.5 ** (30.5 / 30)] * 3
    # now as a string or a date, naive = UTC
    assert recency_decay(["2026-11-01"], now="2026-12-01", half_life_days=30) == [0.5]
    assert recency_decay(["2026-11-01"], now=date(2026, 12, 1), half_life_days=30) == [0.5]
    # default now: the current UTC time
    today = datetime.now(timezone.utc)
    assert recency_decay([today + timedelta(days=1)], half_life_days=1) == [1.0]
    assert recency_decay([today - timedelta(days=10)], step_days=5) == [0.8]


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (
            lambda: recency_decay(["2026-13-01"], now=NOW, step_days=30),
            ValueError,
            "dates[0] is not an ISO date or datetime",
        ),
        (
            lambda: recency_decay(["2026-11-01", "last week"], now=NOW, step_days=30),
            ValueError,
            "dates[1] is not an ISO date or datetime (YYYY-MM-DD, YYYY-MM, YYYY-MM-DDTHH:MM[:SS][+HH:MM|Z]): 'last week'",
        ),
        (
            lambda: recency_decay([""], now=NOW, step_days=30),
            ValueError,
            "dates[0] is not an ISO date",
        ),
        (
            lambda: recency_decay([20261101], now=NOW, step_days=30),
            TypeError,
            "dates[0] must be a date, datetime or ISO string, got int: 20261101",
        ),
        (
            lambda: recency_decay([None], now=NOW, step_days=30),
            ValueError,
            "dates[0] is None (pass missing=",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now="tomorrow", step_days=30),
            ValueError,
            "now is not an ISO date",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now=NOW),
            ValueError,
            "exactly one of half_life_days and step_days",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now=NOW, step_days=3, half_life_days=3),
            ValueError,
            "exactly one of",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now=NOW, half_life_days=0),
            ValueError,
            "half_life_days must be > 0, got 0",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now=NOW, half_life_days=math.nan),
            ValueError,
            "half_life_days must be finite, got nan",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now=NOW, step_days=-1),
            ValueError,
            "step_days must be >= 0, got -1",
        ),
        (
            lambda: recency_decay(["2026-11-01"], now=NOW, step_days=1, step_factor=math.inf),
            ValueError,
            "step_factor must be finite, got inf",
        ),
        (
            lambda: recency_decay("2026-11-01", now=NOW, step_days=1),
            TypeError,
            "dates must be a sequence",
        ),
    ],
)
def test_recency_bad_input(call: Any, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert needle in str(info.value)


def test_recency_missing_and_no_mutation() -> None:
    dates: list[Any] = ["2026-11-01", None]
    assert recency_decay(dates, now=NOW, step_days=10, missing=0.5) == [0.8, 0.5]
    assert dates == ["2026-11-01", None]


def test_boost() -> None:
    assert boost([True, False]) == [1.0, 0.0]
    assert boost([True, False], amount=0.1) == [0.1, 0.0]
    assert boost([5, 0, -2, 0.5]) == [1.0, 0.0, 0.0, 1.0]  # > 0 without a threshold
    assert boost([999, 1000, 5000], threshold=1000, amount=0.05) == [0.0, 0.05, 0.05]
    assert boost([None, True], missing=0.0) == [0.0, 1.0]
    assert boost([]) == []


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda: boost([True, "yes"]), TypeError, "values[1] must be a number, got str: 'yes'"),
        (lambda: boost([1.0, math.nan]), ValueError, "values[1] must be finite, got nan"),
        (lambda: boost([None]), ValueError, "values[0] is None (pass missing="),
        (lambda: boost([1], amount=math.inf), ValueError, "amount must be finite, got inf"),
        (lambda: boost([1], threshold="10"), TypeError, "threshold must be a number, got str"),
        (lambda: boost({"a": 1}), TypeError, "values must be a sequence"),
    ],
)
def test_boost_bad_input(call: Any, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert needle in str(info.value)


def test_helpers_feed_fusion() -> None:
    """The e-commerce shape of the issue: 0.6 semantic + 0.3 business + 0.1 recency."""
    new = boost([True, False, False], amount=0.1)
    sales = boost([20, 5000, 10], threshold=1000, amount=0.05)
    business = [a + b for a, b in zip(new, sales, strict=True)]
    recency = recency_decay(["2026-11-25", "2026-01-01", "2026-11-30"], now=NOW, step_days=30)
    fusion = Fusion(relevance=0.6, signals={"business": 0.3, "recency": 0.1})
    out = fuse(fusion, [0.5, 0.5, 0.6], signals={"business": business, "recency": recency})
    assert [f.fused for f in out] == pytest.approx(
        [0.6 * 0.5 + 0.3 * 0.1 + 0.1, 0.6 * 0.5 + 0.3 * 0.05 + 0.08, 0.6 * 0.6 + 0.1]
    )
