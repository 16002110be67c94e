"""The transformers backend scores exactly like the official model-card recipe.

The reference is ``tests/recipe.py`` (the Qwen3-Reranker model card's code,
written out independently of the package), run in fp32 on CPU with all pairs
in one left-padded batch. The package must agree within 1e-5 for every
language, instruction, truncation and batching setting.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recipe import DEFAULT_INSTRUCTION as CARD_INSTRUCTION
from recipe import PREFIX as CARD_PREFIX
from recipe import SUFFIX as CARD_SUFFIX
from recipe import OfficialRecipe, format_instruction

from qwen3_rerank_core import Qwen3Reranker
from qwen3_rerank_core._prompt import PromptEncoder

TOL = 1e-5
#: Small enough that the long documents below are truncated.
SHORT_MAX_LENGTH = 128
LONG_MAX_LENGTH = 8192
CUSTOM_INSTRUCTION = "Decide whether the document is written in the same language as the query"

LONG_EN = (
    "The Great Wall of China is a series of fortifications that were built across the "
    "historical northern borders of ancient Chinese states and Imperial China as protection "
    "against various nomadic groups from the Eurasian Steppe. "
) * 4
LONG_ZH = (
    "长城是中国古代的军事防御工程，是一道高大、坚固而且连绵不断的长垣，用以限隔敌骑的行动。" * 6
)

CASES: dict[str, tuple[str, list[str]]] = {
    "en": (
        "What is the capital of China?",
        [
            "The capital of China is Beijing.",
            "Gravity is a force that attracts two bodies towards each other.",
            LONG_EN,
            "Paris is the capital of France.",
            "Beijing",
        ],
    ),
    "zh": (
        "中国的首都是哪里？",
        [
            "中国的首都是北京。",
            "重力是一种使两个物体相互吸引的力。",
            LONG_ZH,
            "巴黎是法国的首都。",
        ],
    ),
    "ar": (
        "ما هي عاصمة مصر؟",
        [
            "القاهرة هي عاصمة مصر وأكبر مدنها.",
            "الجاذبية قوة تجذب الأجسام نحو بعضها.",
            "تقع الإسكندرية على ساحل البحر الأبيض المتوسط. " * 8,
        ],
    ),
    "ja": (
        "日本の首都はどこですか？",
        [
            "日本の首都は東京です。",
            "富士山は日本で一番高い山です。",
            "東京は日本の政治、経済、文化の中心地であり、世界有数の大都市です。" * 5,
        ],
    ),
    "de": (
        "Was ist die Hauptstadt von Deutschland?",
        [
            "Berlin ist die Hauptstadt der Bundesrepublik Deutschland.",
            "Die Straße führt über die Brücke zum Schloss.",
            "München ist die Landeshauptstadt des Freistaates Bayern. " * 8,
        ],
    ),
    "mixed": (
        "def fibonacci(n): 如何实现？ 😀",
        [
            "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
            "    return a\n",
            "Используйте рекурсию с мемоизацией. 使用记忆化递归。 नमस्ते 👍🏽",
            "   \n\t whitespace only around text \n\n",
            "x",
            "",
            "\u0338\u0301 starts with combining marks; ::: <b>tags</b> 's",
        ],
    ),
}
ALL_DOCS = [doc for _, docs in CASES.values() for doc in docs]


@pytest.fixture(scope="module")
def card_model(tiny_model_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer) loaded once, exactly as the model card loads them (fp32, CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    return model, tokenizer


def _recipe(tiny_model_dir: Path, card_model: tuple[Any, Any], max_length: int) -> OfficialRecipe:
    model, tokenizer = card_model
    return OfficialRecipe(tiny_model_dir, max_length=max_length, model=model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def recipe_short(tiny_model_dir: Path, card_model: tuple[Any, Any]) -> OfficialRecipe:
    return _recipe(tiny_model_dir, card_model, SHORT_MAX_LENGTH)


@pytest.fixture(scope="module")
def recipe_long(tiny_model_dir: Path, card_model: tuple[Any, Any]) -> OfficialRecipe:
    return _recipe(tiny_model_dir, card_model, LONG_MAX_LENGTH)


@pytest.fixture(scope="module")
def make_reranker(tiny_model_dir: Path) -> Iterator[Any]:
    """``make_reranker(**settings)``: a loaded transformers-backend reranker, one per settings."""
    cache: dict[tuple[tuple[str, Any], ...], Qwen3Reranker] = {}

    def make(**settings: Any) -> Qwen3Reranker:
        settings = {"max_length": SHORT_MAX_LENGTH, "device": "cpu", **settings}
        key = tuple(sorted(settings.items()))
        if key not in cache:
            cache[key] = Qwen3Reranker(
                model=str(tiny_model_dir), backend="transformers", **settings
            ).load()
        return cache[key]

    yield make
    for reranker in cache.values():
        reranker.close()


def _max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ token ids


def test_template_strings_equal_model_card() -> None:
    from qwen3_rerank_core import DEFAULT_INSTRUCTION
    from qwen3_rerank_core._prompt import PREFIX, SUFFIX, format_prompt

    assert (PREFIX, SUFFIX, DEFAULT_INSTRUCTION) == (CARD_PREFIX, CARD_SUFFIX, CARD_INSTRUCTION)
    assert (
        format_prompt("i", "q", "d")
        == CARD_PREFIX + format_instruction("i", "q", "d") + CARD_SUFFIX
    )


@pytest.mark.parametrize("max_length", [SHORT_MAX_LENGTH, LONG_MAX_LENGTH])
@pytest.mark.parametrize("instruction", [None, CUSTOM_INSTRUCTION])
@pytest.mark.parametrize("case", sorted(CASES))
def test_prompt_ids_equal_recipe(
    tiny_tokenizer: Any,
    tiny_model_dir: Path,
    card_model: tuple[Any, Any],
    case: str,
    instruction: str | None,
    max_length: int,
) -> None:
    query, docs = CASES[case]
    recipe = _recipe(tiny_model_dir, card_model, max_length)
    expected = recipe.token_ids([format_instruction(instruction, query, d) for d in docs])
    encoder = PromptEncoder.from_hf_tokenizer(tiny_tokenizer, max_length=max_length)
    got = encoder.encode_prompts(instruction or CARD_INSTRUCTION, query, docs)
    assert got == expected
    assert all(len(ids) <= max_length for ids in got)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    query=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
    docs=st.lists(
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300),
        min_size=1,
        max_size=4,
    ),
)
def test_prompt_ids_equal_recipe_on_arbitrary_text(
    tiny_model_dir: Path,
    card_model: tuple[Any, Any],
    tiny_tokenizer: Any,
    query: str,
    docs: list[str],
) -> None:
    max_length = 256  # arbitrary 300-character documents often need cutting
    recipe = _recipe(tiny_model_dir, card_model, max_length)
    expected = recipe.token_ids([format_instruction(None, query, d) for d in docs])
    encoder = PromptEncoder.from_hf_tokenizer(tiny_tokenizer, max_length=max_length)
    assert encoder.encode_prompts(CARD_INSTRUCTION, query, docs) == expected


def test_short_max_length_truncates(recipe_short: OfficialRecipe) -> None:
    lengths = []
    for query, docs in CASES.values():
        ids = recipe_short.token_ids([format_instruction(None, query, d) for d in docs])
        lengths.extend(len(x) for x in ids)
    assert max(lengths) == SHORT_MAX_LENGTH  # some prompts were cut ...
    assert min(lengths) < SHORT_MAX_LENGTH  # ... and some were not


def test_query_longer_than_max_length_raises(tiny_tokenizer: Any, make_reranker: Any) -> None:
    long_query = "why " * 200
    encoder = PromptEncoder.from_hf_tokenizer(tiny_tokenizer, max_length=SHORT_MAX_LENGTH)
    with pytest.raises(ValueError, match="max_length"):
        encoder.encode_prompts("instr", long_query, ["doc"])
    with pytest.raises(ValueError, match="max_length"):
        make_reranker().score(long_query, ["doc"])


# --------------------------------------------------------------------- scores


@pytest.mark.parametrize("case", sorted(CASES))
def test_scores_match_recipe(
    make_reranker: Any, recipe_short: OfficialRecipe, recipe_long: OfficialRecipe, case: str
) -> None:
    query, docs = CASES[case]
    short = make_reranker().score(query, docs)
    assert _max_diff(short, recipe_short.score(query, docs)) <= TOL
    long = make_reranker(max_length=LONG_MAX_LENGTH).score(query, docs)
    assert _max_diff(long, recipe_long.score(query, docs)) <= TOL


@pytest.mark.parametrize(
    "settings",
    [
        {"max_batch_size": 1},
        {"max_batch_size": 3},
        {},  # the defaults (64 documents, 16384 tokens) put all 22 prompts in one batch
        {"max_batch_tokens": 300},
    ],
    ids=["batch1", "batch3", "batch-all", "small-token-budget"],
)
def test_batching_does_not_change_scores(
    make_reranker: Any, recipe_short: OfficialRecipe, settings: dict[str, int]
) -> None:
    query = "Which city is a capital?"
    expected = recipe_short.score(query, ALL_DOCS)  # one left-padded batch of everything
    got = make_reranker(**settings).score(query, ALL_DOCS)
    assert _max_diff(got, expected) <= TOL


def test_custom_instruction_per_call_and_in_config(
    make_reranker: Any, recipe_short: OfficialRecipe
) -> None:
    query, docs = CASES["en"][0], ALL_DOCS
    expected = recipe_short.score(query, docs, instruction=CUSTOM_INSTRUCTION)
    per_call = make_reranker().score(query, docs, instruction=CUSTOM_INSTRUCTION)
    in_config = make_reranker(instruction=CUSTOM_INSTRUCTION).score(query, docs)
    assert _max_diff(per_call, expected) <= TOL
    assert _max_diff(in_config, expected) <= TOL
    # The instruction really is part of the prompt: scores move.
    assert _max_diff(expected, recipe_short.score(query, docs)) > 1e-4


def test_score_many_matches_recipe(make_reranker: Any, recipe_short: OfficialRecipe) -> None:
    items = [(query, docs) for query, docs in CASES.values()]
    got = make_reranker(max_batch_size=3).score_many(items)
    for (query, docs), scores in zip(items, got, strict=True):
        assert _max_diff(scores, recipe_short.score(query, docs)) <= TOL


def test_shuffled_documents_keep_their_scores(make_reranker: Any) -> None:
    # Batches of 3 in length order: a shuffle changes which documents share a batch.
    reranker = make_reranker(max_batch_size=3)
    query, docs = CASES["en"][0], ALL_DOCS[::2]
    base = reranker.score(query, docs)
    rng = random.Random(1234)
    for _ in range(2):
        order = list(range(len(docs)))
        rng.shuffle(order)
        shuffled = reranker.score(query, [docs[i] for i in order])
        assert _max_diff([base[i] for i in order], shuffled) <= TOL


def test_rerank_orders_by_recipe_score(make_reranker: Any, recipe_short: OfficialRecipe) -> None:
    query, docs = CASES["zh"]
    expected = recipe_short.score(query, docs)
    results = make_reranker().rerank(query, docs)
    assert sorted(r.index for r in results) == list(range(len(docs)))
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for r in results:
        assert r.document is docs[r.index]
        assert abs(r.score - expected[r.index]) <= TOL


def test_recipe_sub_batches_agree(recipe_short: OfficialRecipe) -> None:
    query, docs = CASES["de"][0], ALL_DOCS[1::3]
    whole = recipe_short.score(query, docs)
    assert _max_diff(whole, recipe_short.score(query, docs, batch_size=1)) <= TOL


def test_recipe_last_position_shortcut_is_exact(
    tiny_model_dir: Path, card_model: tuple[Any, Any], recipe_short: OfficialRecipe
) -> None:
    model, tokenizer = card_model
    literal = OfficialRecipe(
        tiny_model_dir,
        max_length=SHORT_MAX_LENGTH,
        model=model,
        tokenizer=tokenizer,
        full_logits=True,
    )
    query, docs = CASES["ja"]
    assert _max_diff(literal.score(query, docs), recipe_short.score(query, docs)) <= 1e-6


def test_fixture_scores_are_spread(recipe_short: OfficialRecipe) -> None:
    scores = [s for query, docs in CASES.values() for s in recipe_short.score(query, docs)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    # A random model gives random-looking scores, but they must not all sit at 0.5,
    # or parity within 1e-5 would prove little.
    assert max(scores) - min(scores) > 0.2
    assert sum(abs(s - 0.5) > 0.05 for s in scores) >= len(scores) // 2


@pytest.mark.parametrize(
    "settings",
    [{}, {"max_batch_size": 3}, {"max_batch_tokens": 300}],
    ids=["one-row", "rows-of-3", "small-token-budget"],
)
def test_packed_rows_give_the_recipe_scores(
    tiny_model_dir: Path, recipe_short: OfficialRecipe, settings: dict[str, int]
) -> None:
    """Packed rows (the flash-attention path on CUDA) score like the recipe.

    On CPU the same code runs with SDPA, which transformers gives a block-diagonal
    causal mask for the packed row; on CUDA with flash-attention it is varlen.
    """
    query = "Which city is a capital?"
    expected = recipe_short.score(query, ALL_DOCS)
    with Qwen3Reranker(
        model=str(tiny_model_dir),
        max_length=SHORT_MAX_LENGTH,
        device="cpu",
        backend_options={"packed": True},
        **settings,
    ) as rr:
        got = rr.score(query, ALL_DOCS)
        assert rr._backend._packed and not rr._backend._reuse_prefix  # type: ignore[attr-defined]
        many = rr.score_many([(query, ALL_DOCS[:3]), ("fruit", ALL_DOCS)])
    assert _max_diff(got, expected) <= TOL
    assert _max_diff(many[0], expected[:3]) <= TOL
    assert _max_diff(many[1], recipe_short.score("fruit", ALL_DOCS)) <= TOL
