"""The backend registry and the settings defined once.

A backend registered through the registry is usable by the facade and by both
adapters without any other change; the adapters' engine fields are
RerankConfig's own (type, default, description), so they cannot drift.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from qwen3_rerank_core import Qwen3Reranker, RerankConfig
from qwen3_rerank_core._backends import (
    Backend,
    BackendSpec,
    Group,
    backend_names,
    backend_spec,
    register_backend,
    registered_backend,
    unregister_backend,
)
from qwen3_rerank_core.adapters import ENGINE_FIELDS

BUILTIN = ("transformers", "vllm", "remote")


def overlap(query: str, document: str) -> float:
    """Share of the query's words found in the document: deterministic, in [0, 1]."""
    words = set(query.lower().split())
    return len(words & set(document.lower().split())) / len(words)


class OverlapBackend(Backend):
    """A backend with no model: p(yes) is the word overlap of query and document."""

    def __init__(self, config: RerankConfig, *, scale: float = 1.0) -> None:
        self.config = config
        self.scale = scale
        self.closed = False

    def score_groups(
        self, groups: Sequence[Group], instruction: str, *, show_progress: bool = False
    ) -> list[list[float]]:
        return [[self.scale * overlap(q, d) for d in docs] for q, docs in groups]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def overlap_backend() -> Iterator[BackendSpec]:
    spec = BackendSpec(
        "overlap", lambda: OverlapBackend, summary="word overlap (tests)", options=("scale",)
    )
    with registered_backend(spec):
        yield spec
    assert "overlap" not in backend_names()


QUERY = "capital of France"
DOCS = ["Paris is the capital of France.", "Berlin is in Germany.", "France: the capital"]
EXPECTED = [overlap(QUERY, d) for d in DOCS]  # 2/3, 0, 2/3 ... computed, not typed in


# --------------------------------------------------------------------------- registry
def test_builtin_backends_are_the_registry() -> None:
    assert backend_names() == BUILTIN
    assert RerankConfig.backend_names() == BUILTIN


def test_registered_backend_is_valid_in_config_and_facade(overlap_backend: BackendSpec) -> None:
    assert backend_names() == (*BUILTIN, "overlap")
    with Qwen3Reranker(model="none", backend="overlap") as rr:
        assert rr.score(QUERY, DOCS) == pytest.approx(EXPECTED)
        assert [r.index for r in rr.rerank(QUERY, DOCS)] == [0, 2, 1]
    rr = Qwen3Reranker(model="none", backend="overlap", backend_options={"scale": 0.5})
    assert rr.score(QUERY, DOCS) == pytest.approx([0.5 * s for s in EXPECTED])


def test_unregistered_backend_is_rejected_again(overlap_backend: BackendSpec) -> None:
    unregister_backend("overlap")
    with pytest.raises(ValueError, match=r"'transformers', 'vllm', 'remote'; got 'overlap'"):
        RerankConfig(backend="overlap")
    register_backend(overlap_backend)  # the fixture unregisters it


def test_registry_refuses_bad_changes(overlap_backend: BackendSpec) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backend(overlap_backend)
    with pytest.raises(ValueError, match="built-in backend 'remote'"):
        unregister_backend("remote")
    with pytest.raises(KeyError, match="'nothing'"):
        unregister_backend("nothing")
    with pytest.raises(TypeError, match="BackendSpec"):
        register_backend("overlap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identifier"):
        BackendSpec("has space", lambda: OverlapBackend, summary="x")


def test_spec_checks_options_and_required_settings() -> None:
    spec = BackendSpec(
        "needy",
        lambda: OverlapBackend,
        summary="needs a base_url",
        requires={"base_url": "http://127.0.0.1:9"},
        options=("scale",),
    )
    with registered_backend(spec):
        with pytest.raises(ValueError, match=r"backend='needy' needs base_url, e.g. 'http://"):
            RerankConfig(backend="needy")
        rr = Qwen3Reranker(backend="needy", base_url="http://h:1", backend_options={"colour": 1})
        with pytest.raises(
            TypeError, match=r"takes only the backend_option 'scale', got \['colour'\]"
        ):
            rr.score(QUERY, DOCS)


def test_compile_is_a_setting_of_the_backends_that_declare_it(
    overlap_backend: BackendSpec,
) -> None:
    # overlap_backend does not declare ``compiles``: compile=True is refused for it.
    with pytest.raises(ValueError, match="compile=True is a setting of the transformers backend"):
        RerankConfig(backend=overlap_backend.name, compile=True)
    spec = BackendSpec("compiler", lambda: OverlapBackend, summary="compiles", compiles=True)
    with registered_backend(spec):
        assert RerankConfig(backend="compiler", compile=True).compile is True
    assert [n for n in ("transformers", "vllm", "remote") if backend_spec(n).compiles] == [
        "transformers"
    ]


def test_import_failure_names_the_install_hint() -> None:
    def missing() -> Any:
        raise ImportError("No module named 'onnxruntime'")

    spec = BackendSpec("onnx", missing, summary="x", install='pip install "x[onnx]"')
    with registered_backend(spec):
        from qwen3_rerank_core import MissingDependencyError

        with pytest.raises(MissingDependencyError, match=r'pip install "x\[onnx\]".*onnxruntime'):
            Qwen3Reranker(backend="onnx").score(QUERY, DOCS)


# --------------------------------------------------------------------------- adapters
def _llama_index() -> Any:
    pytest.importorskip("llama_index.core")
    from llama_index.postprocessor.qwen3_rerank import QwenRerank

    return QwenRerank


def _langchain() -> Any:
    pytest.importorskip("langchain_core")
    from langchain_qwen3_rerank import QwenRerank

    return QwenRerank


ADAPTERS = [pytest.param(_llama_index, id="llama_index"), pytest.param(_langchain, id="langchain")]


def test_registered_backend_in_llama_index(overlap_backend: BackendSpec) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    rerank = _llama_index()(model="none", backend="overlap", top_n=2)
    assert rerank.backend == "overlap" and rerank.reranker.config.backend == "overlap"
    nodes = [
        NodeWithScore(node=TextNode(text=d, id_=f"n{i}"), score=0.1) for i, d in enumerate(DOCS)
    ]
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["n0", "n2"]
    assert [n.score for n in out] == pytest.approx([EXPECTED[0], EXPECTED[2]])


def test_registered_backend_in_langchain(overlap_backend: BackendSpec) -> None:
    from langchain_core.documents import Document

    rerank = _langchain()(model="none", backend="overlap")
    docs = [Document(page_content=d, id=f"d{i}") for i, d in enumerate(DOCS)]
    out = rerank.compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["d0", "d2", "d1"]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [EXPECTED[0], EXPECTED[2], EXPECTED[1]]
    )


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_refuse_an_unregistered_backend(adapter: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"'transformers', 'vllm', 'remote'; got 'overlap'"):
        adapter()(model="none", backend="overlap")


def _same_up_to_framework_types(hint: Any) -> Any:
    """A type with the adapters' documented translations undone: list -> tuple[X, ...]
    (pydantic fields take lists), SecretStr -> str (secrets stay hidden)."""
    from pydantic import SecretStr

    if hint is SecretStr:
        return str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return tuple[args[0], ...]  # type: ignore[valid-type]
    if origin is typing.Annotated:
        return _same_up_to_framework_types(args[0])
    if args and origin in (typing.Union, type(int | None)):
        return frozenset(_same_up_to_framework_types(a) for a in args)
    return hint


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("name", ENGINE_FIELDS)
def test_engine_fields_are_rerank_configs(adapter: Any, name: str) -> None:
    """Each engine field has RerankConfig's type, default and description."""
    config_field = {f.name: f for f in dataclasses.fields(RerankConfig)}[name]
    adapter_field = adapter().model_fields[name]
    assert adapter_field.default == config_field.default
    assert adapter_field.default == getattr(RerankConfig(), name)
    assert adapter_field.description == config_field.metadata["doc"] != ""
    config_type = typing.get_type_hints(RerankConfig)[name]
    assert _same_up_to_framework_types(adapter_field.rebuild_annotation()) == (
        _same_up_to_framework_types(config_type)
    )
    if not config_field.repr:  # a secret: never serialized
        assert adapter_field.exclude is True


def test_every_setting_is_described() -> None:
    for f in dataclasses.fields(RerankConfig):
        assert RerankConfig.field_doc(f.name) == f.metadata["doc"], f.name
        assert f.metadata["doc"].strip(), f.name


# --------------------------------------------------------------------------- progress
def test_progress_bar_counts_documents(capsys: pytest.CaptureFixture[str]) -> None:
    from qwen3_rerank_core._backends._base import progress_bar

    pytest.importorskip("tqdm")
    with progress_bar(5, True, desc="Scoring") as advance:
        advance(2)
        advance(3)
    err = capsys.readouterr().err
    assert "Scoring" in err and "5/5" in err
    with progress_bar(0, True, desc="x") as advance, progress_bar(4, False, desc="y") as off:
        advance(1)
        off(1)
    assert capsys.readouterr().err == ""
