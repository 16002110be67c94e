"""The chat template shipped for ``vllm serve --chat-template`` renders our exact prompt."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3_rerank_core._prompt import DEFAULT_INSTRUCTION, SUFFIX, format_prompt

jinja2_sandbox = pytest.importorskip("jinja2.sandbox")

TEMPLATE = (resources.files("qwen3_rerank_core") / "templates" / "qwen3_reranker.jinja").read_text(
    encoding="utf-8"
)


def render(query: str, document: str, system: str | None = None, **kwargs: Any) -> str:
    """Render like transformers' apply_chat_template (which vLLM uses)."""
    env = jinja2_sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    messages = [{"role": "query", "content": query}, {"role": "document", "content": document}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return str(env.from_string(TEMPLATE).render(messages=messages, **kwargs))


def test_default_instruction() -> None:
    assert render("q", "d") == format_prompt(DEFAULT_INSTRUCTION, "q", "d")


def test_instruction_kwarg_wins_over_system_message() -> None:
    assert render("q", "d", instruction="Mine") == format_prompt("Mine", "q", "d")
    assert render("q", "d", system="Sys") == format_prompt("Sys", "q", "d")
    assert render("q", "d", system="Sys", instruction="Mine") == format_prompt("Mine", "q", "d")


def test_keeps_both_final_newlines() -> None:
    prompt = render("q", "d")
    assert prompt.endswith("</think>\n\n")
    assert prompt.endswith(SUFFIX)


def test_ships_as_package_data() -> None:
    assert "qwen3-rerank-core" in TEMPLATE


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    instruction=text.filter(lambda s: s.strip() != ""),
    query=text,
    document=text,
)
def test_matches_format_prompt(instruction: str, query: str, document: str) -> None:
    got = render(query, document, instruction=instruction)
    assert got == format_prompt(instruction, query, document)


def test_transformers_apply_chat_template(tiny_tokenizer: Any) -> None:
    """The same through transformers, as vLLM renders it."""
    messages = [
        {"role": "query", "content": "what is 2+2? {{ not jinja }}"},
        {"role": "document", "content": "  four\n"},
    ]
    got = tiny_tokenizer.apply_chat_template(
        messages, chat_template=TEMPLATE, tokenize=False, instruction="Do maths"
    )
    assert got == format_prompt("Do maths", "what is 2+2? {{ not jinja }}", "  four\n")
