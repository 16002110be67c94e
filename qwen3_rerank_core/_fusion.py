"""Hybrid ranking: fuse the reranker's p(yes) with a first-stage score and caller signals.

The formula
-----------
For the ``n`` documents of one call, at 1-based input positions ``i = 1..n``::

    fused_i = w_rel * rel_i  +  w_fs * fs_i  +  sum over signals s of  w_s * sig_s_i

- ``rel_i`` is the reranker's p(yes) for document ``i``, exactly the value that
  :meth:`~qwen3_rerank_core.Qwen3Reranker.score` returns; fusion never alters it.
- ``fs_i`` is the first-stage term, normalised within the call:

  * ``mode="score"`` (min-max): ``fs_i = (x_i - min(x)) / (max(x) - min(x))`` for the
    raw first-stage scores ``x`` of the call, so ``fs_i`` is in [0, 1]; when all
    scores are equal (``n == 1`` included), ``fs_i = 1.0`` for every document
    (all tie for the best first-stage score).
  * ``mode="rank"`` (reciprocal rank fusion): ``fs_i = 1 / (k + r_i)`` (``k`` is
    :attr:`Fusion.rrf_k`, default 60). Without scores, ``r_i = i``, the input
    position (the first stage's order). With scores, ``r_i = 1 +`` the number of
    documents whose score is strictly higher (competition ranking: tied scores
    share a rank and the same term).
  * ``mode="auto"`` (the default): ``"score"`` when first-stage scores are given,
    ``"rank"`` when they are not.

- ``sig_s_i`` is the caller's value of signal ``s`` for document ``i``, taken as
  given: the caller scales it (:func:`recency_decay` and :func:`boost` build
  common ones). ``True``/``False`` count as 1.0/0.0.
- The weights ``w_rel`` (:attr:`Fusion.relevance`, default 1.0), ``w_fs``
  (:attr:`Fusion.first_stage`, default 0.0) and ``w_s`` (:attr:`Fusion.signals`)
  are any finite numbers; they need not sum to 1 and may be negative (a penalty).
- The terms are added with :func:`math.fsum` (exactly rounded, so the order of
  the terms does not matter).

Results are ordered by ``fused_i`` descending, ties by input position;
``min_score`` is a floor on ``rel_i`` (p(yes)), then ``top_n`` keeps the first
results. ``Fusion()`` (the defaults) gives ``fused_i == rel_i``: the plain
reranker order. With ``k = 60`` the rank term is at most 1/61 (~0.016), so it
needs a much larger weight than a min-max term to move the order.

Example::

    >>> from qwen3_rerank_core import Fusion, fuse
    >>> fusion = Fusion(relevance=0.6, first_stage=0.3, signals={"new": 0.1})
    >>> out = fuse(fusion, [0.9, 0.5, 0.7], first_stage_scores=[12.0, 20.0, 4.0],
    ...            signals={"new": [0.0, 1.0, 1.0]})
    >>> [round(f.fused, 4) for f in out]
    [0.69, 0.7, 0.52]
    >>> [round(f.first_stage, 4) for f in out]  # min-max of 12, 20, 4
    [0.5, 1.0, 0.0]
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from types import MappingProxyType
from typing import Literal, cast

__all__ = [
    "FirstStageMode",
    "FusedScore",
    "Fusion",
    "FusionInputs",
    "boost",
    "fuse",
    "prepare_call",
    "prepare_fusion",
    "prepare_fusion_many",
    "recency_decay",
]

FirstStageMode = Literal["auto", "score", "rank"]
_MODES: tuple[str, ...] = ("auto", "score", "rank")
_DAY_SECONDS = 86400.0


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(name: str, value: object, *, allow_bool: bool = False) -> float:
    """``value`` as a finite float; the error names ``name`` and the value."""
    if isinstance(value, bool) and allow_bool:
        return 1.0 if value else 0.0
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r:.80}")
    number = float(cast(float, value))
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _sequence(name: str, values: object, n: int | None = None) -> list[object]:
    if isinstance(values, (str, bytes, bytearray)) or not isinstance(values, Sequence):
        raise TypeError(
            f"{name} must be a sequence (a list or tuple), got {type(values).__name__}: "
            f"{values!r:.80}"
        )
    out = list(values)
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} values for {n} documents")
    return out


# ------------------------------------------------------------------ the config
@dataclass(frozen=True)
class Fusion:
    """The weights of the fused score (see the module docstring for the formula).

    Args:
        relevance: weight of the reranker's p(yes).
        first_stage: weight of the normalised first-stage term.
        signals: signal name -> weight; every call must give values for exactly
            these names.
        mode: ``"auto"``, ``"score"`` (min-max of the first-stage scores) or
            ``"rank"`` (reciprocal rank fusion).
        rrf_k: ``k`` of the rank term ``1 / (k + rank)``; a number >= 0.

    Example::

        >>> Fusion(relevance=0.7, first_stage=0.3).spec
        'relevance=0.7,first_stage=0.3,mode=auto,k=60'
        >>> Fusion.from_spec("relevance=0.5,first_stage=2,mode=rank,k=10").rrf_k
        10.0
    """

    relevance: float = 1.0
    first_stage: float = 0.0
    signals: Mapping[str, float] = field(default_factory=dict)
    mode: FirstStageMode = "auto"
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "relevance", _finite("Fusion relevance weight", self.relevance))
        set_(self, "first_stage", _finite("Fusion first_stage weight", self.first_stage))
        if not isinstance(self.signals, Mapping):
            raise TypeError(
                f"Fusion signals must be a mapping of name -> weight, got "
                f"{type(self.signals).__name__}: {self.signals!r:.80}"
            )
        weights: dict[str, float] = {}
        for name, weight in self.signals.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"Fusion signal names must be non-empty str, got {name!r}")
            weights[name] = _finite(f"Fusion weight of signal {name!r}", weight)
        set_(self, "signals", MappingProxyType(weights))
        if self.mode not in _MODES:
            raise ValueError(f"Fusion mode must be one of {', '.join(_MODES)}; got {self.mode!r}")
        rrf_k = _finite("Fusion rrf_k", self.rrf_k)
        if rrf_k < 0:
            raise ValueError(f"Fusion rrf_k must be >= 0, got {self.rrf_k!r}")
        set_(self, "rrf_k", rrf_k)

    def __reduce__(self) -> tuple[type[Fusion], tuple[object, ...]]:
        # pickle, copy and deepcopy (a mappingproxy cannot be pickled)
        return (
            type(self),
            (self.relevance, self.first_stage, dict(self.signals), self.mode, self.rrf_k),
        )

    def __hash__(self) -> int:
        return hash(
            (self.relevance, self.first_stage, tuple(self.signals.items()), self.mode, self.rrf_k)
        )

    @property
    def spec(self) -> str:
        """The settings as ``key=value`` pairs, the format :meth:`from_spec` reads."""
        parts = [f"relevance={self.relevance:g}", f"first_stage={self.first_stage:g}"]
        parts += [f"signal.{name}={w:g}" for name, w in self.signals.items()]
        parts += [f"mode={self.mode}", f"k={self.rrf_k:g}"]
        return ",".join(parts)

    @classmethod
    def from_spec(cls, spec: str) -> Fusion:
        """Parse ``"relevance=0.7,first_stage=0.3[,signal.NAME=W][,mode=rank][,k=60]"``.

        Keys left out keep their defaults; an unknown or repeated key is an error.
        """
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"a fusion spec must be a non-empty str, got {spec!r}")
        values: dict[str, str] = {}
        for part in (p.strip() for p in spec.split(",")):
            key, sep, value = (s.strip() for s in part.partition("="))
            if not sep or not key or not value:
                raise ValueError(f"fusion spec {spec!r}: expected key=value, got {part!r}")
            if key in values:
                raise ValueError(f"fusion spec {spec!r}: {key!r} is given twice")
            values[key] = value
        return cls._from_spec_values(spec, values)

    @classmethod
    def _from_spec_values(cls, spec: str, values: dict[str, str]) -> Fusion:
        def number(key: str, default: float) -> float:
            text = values.pop(key, None)
            if text is None:
                return default
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"fusion spec {spec!r}: {key}={text!r} is not a number") from None

        relevance, first_stage, rrf_k = (
            number("relevance", 1.0),
            number("first_stage", 0.0),
            number("k", 60.0),
        )
        mode = values.pop("mode", "auto")
        signals = {
            k.removeprefix("signal."): number(k, 0.0)
            for k in list(values)
            if k.startswith("signal.")
        }
        if values:
            raise ValueError(
                f"fusion spec {spec!r}: unknown key {next(iter(values))!r} "
                "(keys: relevance, first_stage, signal.NAME, mode, k)"
            )
        if mode not in _MODES:
            raise ValueError(f"fusion spec {spec!r}: mode must be one of {', '.join(_MODES)}")
        return cls(relevance, first_stage, signals, cast(FirstStageMode, mode), rrf_k)


# ------------------------------------------------------------- the computation
@dataclass(frozen=True, slots=True)
class FusedScore:
    """The fused score of one document and its parts (before weighting)."""

    relevance: float
    """The reranker's p(yes), unchanged."""
    first_stage: float
    """The normalised first-stage term ``fs_i`` (min-max in [0, 1], or ``1 / (k + rank)``)."""
    signals: tuple[tuple[str, float], ...]
    """``(name, value)`` of each signal, in the order of :attr:`Fusion.signals`."""
    fused: float
    """``w_rel * relevance + w_fs * first_stage + sum(w_s * value)``: the ranking score."""

    def signal(self, name: str) -> float:
        """The value of signal ``name`` for this document."""
        for key, value in self.signals:
            if key == name:
                return value
        raise KeyError(f"no signal {name!r} (signals: {', '.join(k for k, _ in self.signals)})")


@dataclass(frozen=True, slots=True)
class FusionInputs:
    """Validated fusion inputs of one call (copies: later changes by the caller do not matter)."""

    fusion: Fusion
    first_stage: tuple[float, ...]
    """The normalised first-stage term of each document."""
    signals: tuple[tuple[str, tuple[float, ...]], ...]
    """``(name, values)`` of each signal, in the order of :attr:`Fusion.signals`."""

    def fuse(self, relevance: Sequence[float]) -> list[FusedScore]:
        """One :class:`FusedScore` per document, in input order."""
        n = len(self.first_stage)
        rel = [
            _finite(f"relevance[{i}]", v)
            for i, v in enumerate(_sequence("relevance", relevance, n))
        ]
        f = self.fusion
        out = []
        for i in range(n):
            sig = tuple((name, values[i]) for name, values in self.signals)
            terms = [f.relevance * rel[i], f.first_stage * self.first_stage[i]]
            terms += [f.signals[name] * value for name, value in sig]
            out.append(FusedScore(rel[i], self.first_stage[i], sig, math.fsum(terms)))
        return out

    def order(self, relevance: Sequence[float]) -> tuple[list[int], list[FusedScore]]:
        """Input positions by fused score descending (ties: input order), and the scores."""
        fused = self.fuse(relevance)
        return sorted(range(len(fused)), key=lambda i: (-fused[i].fused, i)), fused


def _min_max(scores: Sequence[float]) -> tuple[float, ...]:
    low, high = min(scores), max(scores)
    if high == low:
        return tuple(1.0 for _ in scores)
    if not math.isfinite(high - low):  # e.g. -1e308 and 1e308: halve to stay finite
        return tuple((s / 2 - low / 2) / (high / 2 - low / 2) for s in scores)
    return tuple((s - low) / (high - low) for s in scores)


def _rrf(scores: Sequence[float] | None, n: int, k: float) -> tuple[float, ...]:
    if scores is None:
        return tuple(1.0 / (k + rank) for rank in range(1, n + 1))
    ascending = sorted(scores)
    # rank = 1 + the number of strictly higher scores (ties share a rank)
    return tuple(1.0 / (k + 1 + n - bisect.bisect_right(ascending, s)) for s in scores)


def _first_stage_term(fusion: Fusion, n: int, first_stage_scores: object) -> tuple[float, ...]:
    if first_stage_scores is None:
        if fusion.mode == "score":
            raise ValueError('Fusion mode "score" needs first_stage_scores (one per document)')
        return _rrf(None, n, fusion.rrf_k)
    raw = _sequence("first_stage_scores", first_stage_scores, n)
    scores = [_finite(f"first_stage_scores[{i}]", v) for i, v in enumerate(raw)]
    if n == 0:
        return ()
    return _rrf(scores, n, fusion.rrf_k) if fusion.mode == "rank" else _min_max(scores)


def _signal_values(
    fusion: Fusion, n: int, signals: object
) -> Iterator[tuple[str, tuple[float, ...]]]:
    given = {} if signals is None else signals
    if not isinstance(given, Mapping):
        raise TypeError(
            f"signals must be a mapping of name -> values, got {type(given).__name__}: "
            f"{given!r:.80}"
        )
    for name in given:
        if name not in fusion.signals:
            known = ", ".join(map(repr, fusion.signals)) or "none"
            raise ValueError(
                f"signals[{name!r}] has no weight in the Fusion (weights for: {known})"
            )
    for name in fusion.signals:
        if name not in given:
            raise ValueError(f"the Fusion weighs signal {name!r} but signals= has no values for it")
        raw = _sequence(f"signals[{name!r}]", given[name], n)
        yield (
            name,
            tuple(
                _finite(f"signals[{name!r}][{i}]", v, allow_bool=True) for i, v in enumerate(raw)
            ),
        )


def prepare_fusion(
    fusion: Fusion,
    n: int,
    *,
    first_stage_scores: Sequence[float] | None = None,
    signals: Mapping[str, Sequence[float | bool]] | None = None,
) -> FusionInputs:
    """Check the fusion inputs of a call with ``n`` documents (before any scoring).

    Raises ``TypeError``/``ValueError`` naming the bad value: a first-stage score
    or signal value that is not a finite number, a list of the wrong length, a
    signal without a weight or a weight without a signal.
    """
    if not isinstance(fusion, Fusion):
        raise TypeError(
            f"fusion must be a Fusion or None, got {type(fusion).__name__}: {fusion!r:.80}"
        )
    return FusionInputs(
        fusion,
        _first_stage_term(fusion, n, first_stage_scores),
        tuple(_signal_values(fusion, n, signals)),
    )


def fuse(
    fusion: Fusion,
    relevance: Sequence[float],
    *,
    first_stage_scores: Sequence[float] | None = None,
    signals: Mapping[str, Sequence[float | bool]] | None = None,
) -> list[FusedScore]:
    """Fused scores of one call's documents, in input order (the module docstring's formula)."""
    n = len(_sequence("relevance", relevance))
    inputs = prepare_fusion(fusion, n, first_stage_scores=first_stage_scores, signals=signals)
    return inputs.fuse(relevance)


def prepare_call(
    fusion: Fusion | None, n: int, first_stage_scores: object, signals: object
) -> FusionInputs | None:
    """The facade's entry: ``None`` without fusion (then the other options must be ``None``)."""
    if fusion is None:
        if first_stage_scores is not None or signals is not None:
            raise ValueError("first_stage_scores and signals need fusion=Fusion(...)")
        return None
    return prepare_fusion(
        fusion,
        n,
        first_stage_scores=cast("Sequence[float] | None", first_stage_scores),
        signals=cast("Mapping[str, Sequence[float | bool]] | None", signals),
    )


def prepare_fusion_many(
    fusion: Fusion | None, sizes: Sequence[int], first_stage_scores: object, signals: object
) -> list[FusionInputs | None]:
    """:func:`prepare_call` for each group; per-group options are lists, one entry per group."""
    if fusion is None:
        return [prepare_call(None, n, first_stage_scores, signals) for n in sizes]
    per_scores = (
        [None] * len(sizes)
        if first_stage_scores is None
        else _sequence("first_stage_scores", first_stage_scores, None)
    )
    per_signals = [None] * len(sizes) if signals is None else _sequence("signals", signals, None)
    for name, per in (("first_stage_scores", per_scores), ("signals", per_signals)):
        if len(per) != len(sizes):
            raise ValueError(f"{name} has {len(per)} entries for {len(sizes)} items")
    out: list[FusionInputs | None] = []
    for i, n in enumerate(sizes):
        try:
            out.append(prepare_call(fusion, n, per_scores[i], per_signals[i]))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"items[{i}]: {exc}") from None
    return out


# ------------------------------------------------------------------- signals
_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
DateLike = date | datetime | str


def _to_utc(name: str, value: object) -> datetime:
    """A date, datetime or ISO string as an aware UTC datetime (naive means UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_iso(name, value)
    else:
        raise TypeError(
            f"{name} must be a date, datetime or ISO string, got {type(value).__name__}: "
            f"{value!r:.80}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _parse_iso(name: str, value: str) -> datetime:
    text = value.strip()
    match = _YEAR_MONTH.match(text)
    try:
        if match:
            return datetime(int(match[1]), int(match[2]), 1)
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        return datetime.fromisoformat(text)
    except (ValueError, IndexError):
        raise ValueError(
            f"{name} is not an ISO date or datetime (YYYY-MM-DD, YYYY-MM, "
            f"YYYY-MM-DDTHH:MM[:SS][+HH:MM|Z]): {value!r:.80}"
        ) from None


def recency_decay(
    dates: Sequence[DateLike | None],
    *,
    now: DateLike | None = None,
    half_life_days: float | None = None,
    step_days: float | None = None,
    step_factor: float = 0.8,
    missing: float | None = None,
) -> list[float]:
    """A recency signal in (0, 1] per document from its date (give one of the two shapes).

    - ``half_life_days=h``: ``0.5 ** (age_days / h)`` (1.0 today, 0.5 after ``h`` days).
    - ``step_days=s``: ``step_factor`` (default 0.8) when ``age_days > s``, else 1.0
      ("x 0.8 when older than 30 days": ``step_days=30``).

    ``age_days = (now - date)`` in days (fractions count); dates in the future have
    age 0. Dates are ``datetime.date``, ``datetime.datetime`` or ISO strings
    (``2024-03-05``, ``2024-03`` = the 1st, ``2024-03-05T10:00:00+08:00``, a final
    ``Z`` = UTC). Aware datetimes are compared in UTC; naive datetimes and dates
    are taken as UTC (a date = its midnight UTC). ``now`` defaults to the current
    UTC time. ``None`` dates are an error unless ``missing`` gives their value.

    Example::

        >>> recency_decay(["2026-11-30", "2026-10-01"], now="2026-12-01", step_days=30)
        [1.0, 0.8]
        >>> recency_decay(["2026-11-01"], now="2026-12-01", half_life_days=30)
        [0.5]
    """
    if (half_life_days is None) == (step_days is None):
        raise ValueError("give exactly one of half_life_days and step_days")
    if step_days is None:
        span = _finite("half_life_days", half_life_days)
        if span <= 0:
            raise ValueError(f"half_life_days must be > 0, got {half_life_days!r}")
    else:
        span = _finite("step_days", step_days)
        if span < 0:
            raise ValueError(f"step_days must be >= 0, got {step_days!r}")
    factor = _finite("step_factor", step_factor)
    fill = None if missing is None else _finite("missing", missing)
    when = datetime.now(timezone.utc) if now is None else _to_utc("now", now)
    out: list[float] = []
    for i, value in enumerate(_sequence("dates", dates)):
        if value is None:
            out.append(_missing_value("dates", i, fill))
            continue
        age = max(0.0, (when - _to_utc(f"dates[{i}]", value)).total_seconds() / _DAY_SECONDS)
        if step_days is None:
            out.append(0.5 ** (age / span))
        else:
            out.append(factor if age > span else 1.0)
    return out


def _missing_value(name: str, i: int, fill: float | None) -> float:
    """The value of a document whose field ``name[i]`` is ``None``: ``missing=``, else an error."""
    if fill is None:
        raise ValueError(f"{name}[{i}] is None (pass missing= to give such documents a value)")
    return fill


def boost(
    values: Sequence[bool | float | None],
    *,
    amount: float = 1.0,
    threshold: float | None = None,
    missing: float | None = None,
) -> list[float]:
    """A boost signal: ``amount`` for each document whose field counts, else 0.0.

    A ``bool`` counts when ``True``; a number counts when ``>= threshold``, or
    when ``> 0`` without a threshold (e.g. stock on hand). ``None`` is an error
    unless ``missing`` gives its value. Numbers must be finite.

    Example::

        >>> boost([True, False, True], amount=0.1)
        [0.1, 0.0, 0.1]
        >>> boost([1200, 80, None], threshold=1000, missing=0.0)
        [1.0, 0.0, 0.0]
    """
    gain = _finite("amount", amount)
    bar = None if threshold is None else _finite("threshold", threshold)
    fill = None if missing is None else _finite("missing", missing)
    out: list[float] = []
    for i, value in enumerate(_sequence("values", values)):
        if value is None:
            out.append(_missing_value("values", i, fill))
        elif isinstance(value, bool):
            out.append(gain if value else 0.0)
        else:
            number = _finite(f"values[{i}]", value)
            counts = number > 0 if bar is None else number >= bar
            out.append(gain if counts else 0.0)
    return out
