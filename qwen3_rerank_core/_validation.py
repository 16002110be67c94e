"""Checks on user input; every error names the bad value (and its index)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_documents",
    "check_instruction",
    "check_min_score",
    "check_query",
    "check_sequence",
    "check_top_n",
]

_PREVIEW = 80


def _preview(value: object, width: int = _PREVIEW) -> str:
    """``repr(value)``, cut to ``width`` characters (ending in ``...`` when cut)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_sequence(
    value: object,
    *,
    name: str,
    what: str,
    item_types: type | tuple[type, ...] = object,
    item_kind: str = "",
) -> list[Any]:
    """A new list of ``value``, which must be a sequence (not a ``str``/``bytes``, a
    generator, a set or a dict) whose items are ``item_types``.

    Errors: ``"{name} must be {what}, got ..."`` and ``"{name}[i] must be a {item_kind},
    got ..."``, each naming the bad value. A new list, so later changes to the caller's
    sequence cannot misalign results.
    """
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}: {_preview(value)}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, item_types):
            raise TypeError(
                f"{name}[{i}] must be a {item_kind}, got {type(item).__name__}: {_preview(item)}"
            )
    return items


def _check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} is not valid Unicode text (lone surrogate at position {exc.start}): "
            f"{_preview(value)}"
        ) from None


def check_query(query: object) -> str:
    """A non-empty, non-whitespace ``str``."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}: {_preview(query)}")
    if not query.strip():
        raise ValueError(f"query must not be empty or whitespace, got {query!r}")
    _check_text("query", query)
    return query


def check_instruction(instruction: object) -> str:
    """A non-empty, non-whitespace ``str``."""
    if not isinstance(instruction, str):
        raise TypeError(
            f"instruction must be a str or None, got {type(instruction).__name__}: "
            f"{_preview(instruction)}"
        )
    if not instruction.strip():
        raise ValueError(f"instruction must not be empty or whitespace, got {instruction!r}")
    _check_text("instruction", instruction)
    return instruction


def check_documents(documents: object) -> list[str]:
    """A sequence (list, tuple, ...) of ``str``; empty strings are allowed and scored.

    Returns a new list, so later changes to the caller's sequence cannot misalign results.
    """
    docs: list[str] = check_sequence(
        documents,
        name="documents",
        what="a sequence of str (a list or tuple)",
        item_types=str,
        item_kind="str",
    )
    for i, doc in enumerate(docs):
        _check_text(f"documents[{i}]", doc)
    return docs


def check_top_n(top_n: object) -> int | None:
    """``None`` or an int >= 1."""
    if top_n is None:
        return None
    if not isinstance(top_n, int) or isinstance(top_n, bool):
        raise TypeError(f"top_n must be an int or None, got {type(top_n).__name__}: {top_n!r}")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1 or None, got {top_n!r}")
    return top_n


def check_min_score(min_score: object) -> float | None:
    """``None`` or a number in [0, 1]."""
    if min_score is None:
        return None
    if not isinstance(min_score, (int, float)) or isinstance(min_score, bool):
        raise TypeError(
            f"min_score must be a number or None, got {type(min_score).__name__}: {min_score!r}"
        )
    if math.isnan(min_score) or not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1] or None, got {min_score!r}")
    return float(min_score)
