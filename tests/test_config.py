"""RerankConfig: frozen, validated at construction, unknown keys rejected."""

from __future__ import annotations

import dataclasses

import pytest

from qwen3_rerank_core import Qwen3Reranker, RerankConfig


def test_defaults() -> None:
    cfg = RerankConfig()
    assert cfg.model == "Qwen/Qwen3-Reranker-0.6B"
    assert cfg.backend == "transformers"
    assert cfg.instruction is None
    assert cfg.max_length == 8192


def test_frozen() -> None:
    cfg = RerankConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_length = 5  # type: ignore[misc]


def test_unknown_key_is_rejected_with_valid_keys() -> None:
    with pytest.raises(TypeError, match=r"'max_lenght'.*valid keys are:.*max_length"):
        Qwen3Reranker(model="m", max_lenght=10)
    with pytest.raises(TypeError, match="'colour'"):
        RerankConfig.from_dict({"colour": "red"})


def test_unknown_backend_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'transformers', 'vllm', 'remote'.*'onnx'"):
        RerankConfig(backend="onnx")  # type: ignore[arg-type]


def test_backend_is_never_guessed_from_model_name() -> None:
    assert RerankConfig(model="http://127.0.0.1:8000").backend == "transformers"
    assert RerankConfig(model="my-org/vllm-Qwen3-Reranker").backend == "transformers"


@pytest.mark.parametrize(
    ("key", "value", "exc", "needle"),
    [
        ("model", "", ValueError, "model"),
        ("max_length", 0, ValueError, "max_length"),
        ("max_length", "512", TypeError, "'512'"),
        ("max_length", True, TypeError, "max_length"),
        ("max_batch_tokens", 0, ValueError, "max_batch_tokens"),
        ("max_batch_size", -1, ValueError, "-1"),
        ("instruction", "  ", ValueError, "instruction"),
        ("instruction", 3, TypeError, "instruction"),
        ("dtype", "float64", ValueError, "'float64'"),
        ("timeout", 0, ValueError, "timeout"),
        ("timeout", float("nan"), ValueError, "timeout"),
        ("max_retries", -1, ValueError, "max_retries"),
        ("max_docs_per_request", 0, ValueError, "max_docs_per_request"),
        ("max_concurrency", 0, ValueError, "max_concurrency"),
        ("prompt_format", "both", ValueError, "'both'"),
        ("base_url", "localhost:8000", ValueError, "'localhost:8000'"),
        ("base_url", "ftp://h/x", ValueError, "ftp"),
        ("base_url", [], TypeError, "base_url"),
        ("show_progress", "yes", TypeError, "show_progress"),
    ],
)
def test_bad_values_are_named(key: str, value: object, exc: type[Exception], needle: str) -> None:
    with pytest.raises(exc, match=needle):
        RerankConfig.from_dict({key: value})


def test_remote_needs_base_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        RerankConfig(backend="remote")


def test_base_url_list_becomes_tuple() -> None:
    cfg = RerankConfig(backend="remote", base_url=["http://a:1", "http://b:2"])  # type: ignore[arg-type]
    assert cfg.base_urls == ("http://a:1", "http://b:2")
    assert hash(cfg)  # frozen and hashable


def test_api_key_not_in_repr() -> None:
    cfg = RerankConfig(backend="remote", base_url="http://a:1", api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(cfg)
    assert "sk-secret-123" not in repr(Qwen3Reranker(cfg))


def test_config_and_kwargs() -> None:
    cfg = RerankConfig(model="a", max_length=100)
    assert Qwen3Reranker(cfg).config is cfg
    rr = Qwen3Reranker(cfg, max_length=200)
    assert rr.config.max_length == 200 and rr.config.model == "a"
    assert Qwen3Reranker("some/model").config.model == "some/model"
    with pytest.raises(TypeError, match="RerankConfig"):
        Qwen3Reranker(42)  # type: ignore[arg-type]


def test_replace_validates() -> None:
    with pytest.raises(ValueError, match="max_length"):
        RerankConfig().replace(max_length=-3)
