"""The adapters as a user's tools see them: typed fields that mirror RerankConfig.

- every RerankConfig setting is an adapter field (same name, type, default and
  description) unless ``adapters.NOT_ADAPTER_FIELDS`` says why not: a new setting
  without a field fails here;
- mypy (with the pydantic plugin) reports a misspelt keyword and wrong types in
  ``tests/typing/user_script.py`` and reveals the fields' declared types;
- ``inspect.signature`` and ``help()`` show every setting.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import pydoc
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from qwen3_rerank_core import RerankConfig
from qwen3_rerank_core.adapters import ENGINE_FIELDS, NOT_ADAPTER_FIELDS, AdapterSettings

REPO = Path(__file__).resolve().parents[1]
TYPING = Path(__file__).parent / "typing"
#: The fields every adapter has besides ENGINE_FIELDS.
SHARED = ("reranker", "instruction", "top_n", "min_score", "reranker_kwargs", "fusion", "signals")


def _llama_index() -> type[BaseModel]:
    module = pytest.importorskip("llama_index.postprocessor.qwen3_rerank")
    adapter: type[BaseModel] = module.QwenRerank
    return adapter


def _langchain() -> type[BaseModel]:
    module = pytest.importorskip("langchain_qwen3_rerank")
    adapter: type[BaseModel] = module.QwenRerank
    return adapter


ADAPTERS = [
    pytest.param(_llama_index, id="llama_index"),
    pytest.param(_langchain, id="langchain"),
]


# ------------------------------------------------------- fields == RerankConfig
def _comparable(hint: Any) -> Any:
    """A type with the adapters' documented translations undone: ``list[X]`` ->
    ``tuple[X, ...]`` (pydantic fields take lists), ``SecretStr`` -> ``str``
    (secrets stay hidden); a union is the set of its members."""
    if hint is SecretStr:
        return str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _comparable(args[0])
    if origin is list:
        return tuple[args[0], ...]  # type: ignore[valid-type]
    if args and origin in (typing.Union, type(int | None)):
        return frozenset(_comparable(a) for a in args)
    return hint


def field_mismatches(adapter: type[BaseModel], config: type = RerankConfig) -> list[str]:
    """How ``adapter``'s fields differ from ``config``'s settings: every setting not in
    NOT_ADAPTER_FIELDS must be a field with its type, default and description (a
    secret, one kept out of the config's repr, is never serialized)."""
    hints = typing.get_type_hints(config)
    problems = []
    for setting in dataclasses.fields(config):
        name = setting.name
        if name in NOT_ADAPTER_FIELDS:
            continue
        field = adapter.model_fields.get(name)
        if field is None:
            problems.append(f"{name}: no field (add it to AdapterSettings)")
            continue
        if _comparable(field.annotation) != _comparable(hints[name]):
            problems.append(f"{name}: type {field.annotation} != {hints[name]}")
        if field.default != setting.default:
            problems.append(f"{name}: default {field.default!r} != {setting.default!r}")
        if field.description != setting.metadata["doc"]:
            problems.append(f"{name}: description {field.description!r}")
        if not setting.repr and field.exclude is not True:
            problems.append(f"{name}: a secret, but serialized")
    return problems


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fields_are_rerank_configs(adapter: Any) -> None:
    assert field_mismatches(adapter()) == []


def test_engine_fields_follow_the_rule() -> None:
    """ENGINE_FIELDS is every setting that NOT_ADAPTER_FIELDS does not exclude, and
    each exclusion is a setting with a reason."""
    names = RerankConfig.field_names()
    assert tuple(n for n in names if n not in NOT_ADAPTER_FIELDS) == ENGINE_FIELDS
    for name, reason in NOT_ADAPTER_FIELDS.items():
        assert name in names and reason.strip(), name
    assert set(ENGINE_FIELDS) <= set(AdapterSettings.model_fields)


@dataclasses.dataclass(frozen=True)
class _GrownConfig(RerankConfig):
    """RerankConfig with a new setting and a changed description."""

    colour: int = dataclasses.field(default=1, metadata={"doc": "A new setting."})
    max_batch_size: int = dataclasses.field(default=64, metadata={"doc": "Changed."})


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_new_setting_without_a_field_is_caught(adapter: Any) -> None:
    assert field_mismatches(adapter(), _GrownConfig) == [
        "max_batch_size: description 'Most documents in one forward pass.'",
        "colour: no field (add it to AdapterSettings)",
    ]


# ----------------------------------------------------------- what mypy reports
_MYPY_LINE = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*?)(?:  \[(?P<code>[\w-]+)\])?$"
)


def _markers(script: Path, tag: str) -> dict[int, str]:
    """``{line number: text}`` of the ``# <tag>: text`` markers of ``script``."""
    out = {}
    for number, line in enumerate(script.read_text(encoding="utf-8").splitlines(), 1):
        if f"  # {tag}: " in line:
            out[number] = line.split(f"  # {tag}: ", 1)[1].strip()
    return out


def _plain(type_text: str) -> str:
    return type_text.replace("builtins.", "")  # newer mypy versions drop the prefix


def test_mypy_sees_the_fields(tmp_path: Path) -> None:
    """A misspelt keyword and wrong types are errors on the marked lines (and nothing
    else is), and reveal_type shows each field's declared type."""
    for needed in ("mypy", "llama_index.postprocessor.qwen3_rerank", "langchain_qwen3_rerank"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed")
    script = TYPING / "user_script.py"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--config-file", str(TYPING / "mypy.ini")),
            *("--cache-dir", str(tmp_path / "mypy"), "--show-error-codes", str(script)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    report = [m for m in map(_MYPY_LINE.match, run.stdout.splitlines()) if m]
    assert report, run.stdout + run.stderr
    errors = {int(m["line"]): f"[{m['code']}] {m['text']}" for m in report if m["kind"] == "error"}
    revealed = {
        int(m["line"]): m["text"].removeprefix("Revealed type is ").strip('"')
        for m in report
        if m["text"].startswith("Revealed type is ")
    }
    expected_errors = _markers(script, "E")
    assert sorted(errors) == sorted(expected_errors), run.stdout
    for line, expected in expected_errors.items():
        code, text = expected.split(" ", 1)
        assert errors[line].startswith(code) and text in errors[line], (line, errors[line])
    expected_types = {line: _plain(t) for line, t in _markers(script, "R").items()}
    assert {line: _plain(t) for line, t in revealed.items()} == expected_types
    assert run.returncode == 1


# ------------------------------------------------------------ signature, help()
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_signature_and_help_show_every_setting(adapter: Any) -> None:
    cls = adapter()
    params = inspect.signature(cls).parameters
    for name in (*ENGINE_FIELDS, *SHARED):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert params["max_length"].default == RerankConfig().max_length
    assert params["reranker"].default is None
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "max_length: int = 8192" in text  # the signature
    for name, field in cls.model_fields.items():  # the settings, described
        if field.description:
            assert f"{name}: {field.description}" in text, name
    assert {*ENGINE_FIELDS, *SHARED} <= {n for n, f in cls.model_fields.items() if f.description}
