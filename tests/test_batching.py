"""plan_batches: longest first, within the token budget, nothing lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qwen3_rerank_core._backends._transformers import plan_batches, plan_packs

#: Prompt lengths, a token budget and a batch size, as ``plan_batches`` / ``plan_packs`` take them.
plans = given(
    st.lists(st.integers(1, 300), max_size=60),
    st.integers(1, 2000),
    st.integers(1, 16),
)


def check_each_index_once(groups: list[list[int]], count: int, size: int) -> None:
    """``groups`` hold each of ``count`` indices once, in groups of 1 to ``size``."""
    assert sorted(i for g in groups for i in g) == list(range(count))
    assert all(1 <= len(g) <= size for g in groups)


@plans
def test_batches_cover_everything_once(lengths: list[int], budget: int, size: int) -> None:
    batches = plan_batches(lengths, max_batch_tokens=budget, max_batch_size=size)
    check_each_index_once(batches, len(lengths), size)
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * width <= budget
    widths = [lengths[b[0]] for b in batches]
    assert widths == sorted(widths, reverse=True)


def test_example() -> None:
    assert plan_batches([5, 10, 3, 10], max_batch_tokens=20, max_batch_size=8) == [[1, 3], [0, 2]]


@plans
def test_packs_cover_everything_once(lengths: list[int], budget: int, size: int) -> None:
    packs = plan_packs(lengths, max_batch_tokens=budget, max_batch_size=size)
    check_each_index_once(packs, len(lengths), size)
    for p in packs:
        assert len(p) == 1 or sum(lengths[i] for i in p) <= budget


def test_pack_example() -> None:
    # No padding: 10 + 10 fill a row of 20, then 5 + 3.
    assert plan_packs([5, 10, 3, 10], max_batch_tokens=20, max_batch_size=8) == [[1, 3], [0, 2]]
    assert plan_packs([5, 10, 3, 10], max_batch_tokens=18, max_batch_size=8) == [[1], [3, 0, 2]]
