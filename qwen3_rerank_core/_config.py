"""The frozen, validated configuration of a :class:`~qwen3_rerank_core.Qwen3Reranker`."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias
from urllib.parse import urlparse

from ._backends._registry import backend_names, backend_spec
from ._cache import CacheStore, is_cache_store

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MODEL",
    "DTYPES",
    "PROMPT_FORMATS",
    "BackendName",
    "CacheSetting",
    "RerankConfig",
    "check_cache",
]

DEFAULT_MODEL = "Qwen/Qwen3-Reranker-0.6B"
PROMPT_FORMATS: tuple[str, ...] = ("client", "server")
#: Valid ``dtype`` names (besides ``None``).
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")

#: The name of a registered backend (built in: ``"transformers"``, ``"vllm"``,
#: ``"remote"``); the registry, not this type, decides which names are valid.
BackendName: TypeAlias = str
PromptFormat = Literal["client", "server"]
#: ``RerankConfig.cache``: ``None`` (off), ``"memory"``, a SQLite file path or a store object.
CacheSetting: TypeAlias = str | os.PathLike[str] | CacheStore | None
#: Scores the ``"memory"`` cache keeps by default (about 30 MB).
DEFAULT_CACHE_SIZE = 100_000


def _doc(text: str) -> dict[str, str]:
    """A field's metadata: its description, which the adapters show as theirs."""
    return {"doc": text}


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_positive_float(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_optional_str(
    name: str, value: object, *, allow_blank: bool = False, secret: bool = False
) -> None:
    if value is None:
        return
    shown = "" if secret else f": {value!r}"  # a secret is never echoed, even a bad one
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}{shown}")
    if not allow_blank and not value.strip():
        got = "" if secret else f", got {value!r}"
        raise ValueError(f"{name} must not be empty or whitespace{got}")


def check_cache(cache: object) -> CacheSetting:
    """``cache`` if it is a valid ``RerankConfig.cache``: ``None``, ``"memory"``, a
    non-empty ``str`` or ``os.PathLike`` path, or a store with ``mget``/``mset``."""
    if cache is None or is_cache_store(cache):
        return cache  # type: ignore[return-value]
    path = os.fspath(cache) if isinstance(cache, os.PathLike) else cache
    if not isinstance(path, str):
        raise TypeError(
            'cache must be None, "memory", a file path or a store with mget/mset '
            f"(a LangChain BaseStore[str, bytes]), got {type(cache).__name__}"
        )
    if not path.strip():
        raise ValueError('cache must be "memory" or a file path, got an empty string')
    return cache  # type: ignore[return-value]


@dataclass(frozen=True)
class RerankConfig:
    """Settings of a reranker, checked once when the object is built.

    Unknown keys are rejected (``RerankConfig.from_dict`` lists the valid ones),
    and the backend is always the one you name: it is never guessed from the
    model name.

    Example::

        >>> from qwen3_rerank_core import RerankConfig
        >>> cfg = RerankConfig(model="/models/Qwen3-Reranker-0.6B", max_length=4096)
        >>> cfg.backend, cfg.max_length
        ('transformers', 4096)
        >>> cfg.replace(max_length=1024).max_length
        1024
    """

    model: str = field(
        default=DEFAULT_MODEL,
        metadata=_doc(
            "Hub id or local folder of a Qwen3-Reranker checkpoint "
            "(for ``remote``: the served model name)."
        ),
    )
    backend: BackendName = field(
        default="transformers",
        metadata=_doc(
            "A registered backend: ``transformers`` (local), ``vllm`` (in-process "
            "``vllm.LLM``) or ``remote`` (a vLLM server)."
        ),
    )
    instruction: str | None = field(
        default=None,
        metadata=_doc("Task instruction, overridable per call; ``None``: ``DEFAULT_INSTRUCTION``."),
    )
    max_length: int = field(
        default=8192,
        metadata=_doc("Most tokens in one prompt; long documents are cut at their end to fit."),
    )

    # local backends
    device: str | None = field(
        default=None,
        metadata=_doc(
            "``cuda``, ``cuda:1``, ``mps``, ``cpu``...; ``None``: CUDA, else Apple MPS, else CPU."
        ),
    )
    dtype: str | None = field(
        default=None,
        metadata=_doc(
            "``float32``, ``bfloat16``, ``float16`` or ``auto``; ``None``: bf16 on CUDA; on CPU "
            "the checkpoint's bf16 where the CPU computes it natively, else fp32 "
            "(``docs/scoring.md``)."
        ),
    )
    max_batch_tokens: int | None = field(
        default=None,
        metadata=_doc(
            "Token budget of one forward pass (padded length x batch size); ``None``: chosen "
            "for the device and the model's shape (``docs/benchmarks.md``)."
        ),
    )
    max_batch_size: int = field(default=64, metadata=_doc("Most documents in one forward pass."))
    show_progress: bool = field(
        default=False, metadata=_doc("Show a tqdm progress bar over batches.")
    )
    reuse_prefix: bool = field(
        default=True,
        metadata=_doc(
            "Run the shared prefix (system prompt, instruction, query) once per query "
            "and reuse its KV cache."
        ),
    )
    coalesce_calls: bool = field(
        default=True,
        metadata=_doc(
            "Concurrent calls share forward passes (cross-call batching, local backends: "
            "``docs/serving.md``); ``False``: each call runs its own, scored as if alone."
        ),
    )
    local_files_only: bool = field(
        default=False,
        metadata=_doc("Never contact the model hub; load from the local cache or folder only."),
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=_doc("``sdpa``, ``flash_attention_2`` or ``eager`` attention; ``None`` picks."),
    )
    compile: bool = field(
        default=False,
        metadata=_doc(
            "Run the lean forward's layers under ``torch.compile`` (transformers backend): "
            "faster calls (CPU bf16: ``docs/benchmarks.md``) after a one-off compile at the "
            "first calls (tens of seconds; needs a C++ compiler on CPU)."
        ),
    )

    # remote backend
    base_url: str | tuple[str, ...] | None = field(
        default=None,
        metadata=_doc("URL of a vLLM server, or several replicas (round-robin, fail-over)."),
    )
    api_key: str | None = field(
        default=None,
        metadata=_doc("Bearer token for the server; never shown in reprs, logs or errors."),
        repr=False,
    )
    timeout: float = field(default=60.0, metadata=_doc("Seconds to wait for one HTTP request."))
    max_retries: int = field(
        default=3,
        metadata=_doc("Retries on 429/5xx and transport errors (exponential backoff with jitter)."),
    )
    max_docs_per_request: int = field(
        default=64,
        metadata=_doc("Documents per HTTP request; longer lists are split and merged by index."),
    )
    max_concurrency: int = field(
        default=8, metadata=_doc("Requests in flight at once for one call.")
    )
    prompt_format: PromptFormat = field(
        default="client",
        metadata=_doc(
            "``client``: the client formats prompts; ``server``: the server's chat template does."
        ),
    )

    # score cache (docs/serving.md)
    cache: CacheSetting = field(
        default=None,
        metadata=_doc(
            'Score cache: ``None`` (off), ``"memory"`` (an in-process LRU of '
            "``cache_size`` scores), a SQLite file path shared by threads and processes, "
            "or a store with ``mget``/``mset`` (LangChain ``BaseStore[str, bytes]``)."
        ),
    )
    cache_size: int = field(
        default=DEFAULT_CACHE_SIZE,
        metadata=_doc('Most scores the ``"memory"`` cache keeps (least recently used go first).'),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must be a non-empty str, got {self.model!r}")
        spec = backend_spec(self.backend)  # ValueError naming the registered backends
        _check_optional_str("instruction", self.instruction)
        _check_int("max_length", self.max_length, 16)
        _check_optional_str("device", self.device)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(
                f"dtype must be one of {', '.join(map(repr, DTYPES))} or None; got {self.dtype!r}"
            )
        if self.max_batch_tokens is not None:
            _check_int("max_batch_tokens", self.max_batch_tokens, 1)
        _check_int("max_batch_size", self.max_batch_size, 1)
        for flag in (
            "show_progress",
            "reuse_prefix",
            "coalesce_calls",
            "local_files_only",
            "compile",
        ):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        _check_optional_str("attn_implementation", self.attn_implementation)
        if self.compile and not spec.compiles:
            raise ValueError(
                f"compile=True is a setting of the transformers backend, not of "
                f"backend={self.backend!r} (vLLM compiles its own forward)"
            )
        self._check_base_url()
        _check_optional_str("api_key", self.api_key, secret=True)
        _check_positive_float("timeout", self.timeout)
        _check_int("max_retries", self.max_retries, 0)
        _check_int("max_docs_per_request", self.max_docs_per_request, 1)
        _check_int("max_concurrency", self.max_concurrency, 1)
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"prompt_format must be one of {', '.join(map(repr, PROMPT_FORMATS))}; "
                f"got {self.prompt_format!r}"
            )
        check_cache(self.cache)
        _check_int("cache_size", self.cache_size, 1)
        spec.check_config(self)

    def _check_base_url(self) -> None:
        url = self.base_url
        if url is None:
            return
        if isinstance(url, list):
            url = tuple(url)
            object.__setattr__(self, "base_url", url)
        urls = (url,) if isinstance(url, str) else url
        if not isinstance(urls, tuple) or not urls:
            raise TypeError(f"base_url must be a URL or a non-empty list of URLs, got {url!r}")
        for u in urls:
            if not isinstance(u, str):
                raise TypeError(f"base_url must be a str or a list of str, got {u!r}")
            parsed = urlparse(u)
            if "@" in parsed.netloc:
                # Credentials in a URL end up in reprs and in httpx's request log.
                shown = parsed._replace(netloc="***@" + parsed.netloc.rsplit("@", 1)[1]).geturl()
                raise ValueError(
                    "base_url must not hold credentials ('user:password@'); pass the "
                    f"server's key as api_key (sent as a Bearer token), got {shown!r}"
                )
            try:
                # .port raises ValueError on a non-numeric or out-of-range port
                port_ok = parsed.port is None or parsed.port > 0
            except ValueError:
                port_ok = False
            if (
                parsed.scheme not in ("http", "https")
                or not parsed.hostname
                or not port_ok
                or any(c.isspace() or not c.isprintable() for c in u)
            ):
                raise ValueError(
                    f"base_url must be an http(s) URL like 'http://host:8000', got {u!r}"
                )

    @property
    def base_urls(self) -> tuple[str, ...]:
        """``base_url`` as a tuple (empty when unset)."""
        if self.base_url is None:
            return ()
        return (self.base_url,) if isinstance(self.base_url, str) else self.base_url

    @staticmethod
    def backend_names() -> tuple[str, ...]:
        """Names of the registered backends (the valid values of ``backend``)."""
        return backend_names()

    @classmethod
    def field_doc(cls, name: str) -> str:
        """The description of the setting ``name``."""
        doc: str = _FIELDS[name].metadata["doc"]
        return doc

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every setting."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RerankConfig:
        """Build from a mapping, rejecting unknown keys with the list of valid ones."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise TypeError(
                f"unknown RerankConfig key(s): {', '.join(map(repr, unknown))}; "
                f"valid keys are: {', '.join(cls.field_names())}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> RerankConfig:
        """A copy with some settings changed (validated like a new one)."""
        # Shallow: dataclasses.asdict would deep-copy a cache store object.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return RerankConfig.from_dict({**values, **changes})


_FIELDS = {f.name: f for f in dataclasses.fields(RerankConfig)}
