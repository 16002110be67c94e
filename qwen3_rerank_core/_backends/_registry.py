"""The backend registry: the one place that names each backend.

Each :class:`BackendSpec` says how to build a backend (a lazy loader, so that
torch or vLLM are imported only when that backend is used), which settings it
needs, which ``backend_options`` it takes and what to install for it. The
config's valid names, the adapters' ``backend`` field and the CLI's
``--backend`` choices are all read from here.

Example::

    >>> from qwen3_rerank_core._backends import BackendSpec, backend_names, registered_backend
    >>> backend_names()
    ('transformers', 'vllm', 'remote')
    >>> spec = BackendSpec("mine", lambda: MyBackend, summary="my engine")  # doctest: +SKIP
    >>> with registered_backend(spec):  # doctest: +SKIP
    ...     Qwen3Reranker(backend="mine").score("q", ["d"])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._errors import MissingDependencyError

if TYPE_CHECKING:
    from .._config import RerankConfig
    from ._base import Backend

# The package (``qwen3_rerank_core._backends``) re-exports the public names.

#: What a loader returns: a class or function called as ``factory(config, **options)``.
BackendFactory = Callable[..., "Backend"]


@dataclass(frozen=True)
class BackendSpec:
    """How to build one backend.

    ``load`` returns the factory (usually the backend class); it is called on
    first use, so the backend's module and its heavy imports load lazily.
    ``requires`` maps each setting the backend cannot do without to an example
    value (shown in the error when it is unset). ``options`` names the
    ``backend_options`` it takes (``None``: any, checked by the factory itself);
    names starting with ``_`` are private test hooks and always pass through.
    ``coalesce``: concurrent calls are merged into shared batches by one worker
    (:mod:`qwen3_rerank_core._coalesce`); for backends that run a model in this
    process one call at a time (transformers, vllm), not for servers that batch
    themselves (remote). Off by default for registered backends. ``compiles``: the
    backend honours ``compile=True`` (the transformers backend's lean forward);
    :class:`~qwen3_rerank_core.RerankConfig` rejects that setting for the others.
    """

    name: str
    load: Callable[[], BackendFactory]
    summary: str
    requires: Mapping[str, object] = field(default_factory=dict)
    options: tuple[str, ...] | None = ()
    install: str | None = None
    coalesce: bool = False
    compiles: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"a backend name must be an identifier, got {self.name!r}")
        object.__setattr__(self, "requires", MappingProxyType(dict(self.requires)))

    def check_config(self, config: RerankConfig) -> None:
        """Raise ``ValueError`` when a setting this backend needs is unset."""
        for setting, example in self.requires.items():
            if getattr(config, setting) is None:
                raise ValueError(f"backend={self.name!r} needs {setting}, e.g. {example!r}")

    def check_options(self, options: Mapping[str, object]) -> None:
        """Raise ``TypeError`` on a ``backend_option`` this backend does not take."""
        if self.options is None:
            return
        unknown = sorted(k for k in options if k not in self.options and not k.startswith("_"))
        if unknown:
            names = ", ".join(map(repr, self.options)) or "none"
            plural = "" if len(self.options) == 1 else "s"
            raise TypeError(
                f"the {self.name} backend takes only the backend_option{plural} {names}, "
                f"got {unknown}"
            )

    def create(self, config: RerankConfig, options: Mapping[str, Any]) -> Backend:
        """The backend for ``config`` (its module is imported now)."""
        self.check_options(options)
        try:
            factory = self.load()
        except MissingDependencyError:
            raise
        except ImportError as exc:
            hint = f": {self.install}" if self.install else ""
            raise MissingDependencyError(
                f"backend={self.name!r} could not be imported{hint} ({exc})"
            ) from exc
        return factory(config, **options)


def _transformers() -> BackendFactory:
    from ._transformers import TransformersBackend

    return TransformersBackend


def _vllm() -> BackendFactory:
    from ._vllm import VLLMBackend

    return VLLMBackend


def _remote() -> BackendFactory:
    from ._remote import RemoteBackend

    return RemoteBackend


_BUILTIN = (
    BackendSpec(
        "transformers",
        _transformers,
        summary="local",
        options=("packed", "lean"),
        install='pip install "qwen3-rerank-core[transformers]"',
        coalesce=True,
        compiles=True,
    ),
    BackendSpec(
        "vllm",
        _vllm,
        summary="in-process",
        options=None,  # ``llm=`` and any ``vllm.LLM`` keyword argument
        install='pip install "qwen3-rerank-core[vllm]"',
        coalesce=True,
    ),
    BackendSpec(
        "remote",
        _remote,
        summary="a vLLM server",
        requires={"base_url": "http://127.0.0.1:8000"},
        options=("transport", "http_client", "async_http_client"),
        install='pip install "qwen3-rerank-core"',
    ),
)
_REGISTRY: dict[str, BackendSpec] = {spec.name: spec for spec in _BUILTIN}
_LOCK = threading.Lock()


def backend_names() -> tuple[str, ...]:
    """Names of the registered backends, built-in ones first."""
    return tuple(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    """The spec registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        valid = ", ".join(map(repr, backend_names()))
        raise ValueError(f"backend must be one of {valid}; got {name!r}")
    return spec


def register_backend(spec: BackendSpec) -> None:
    """Add a backend; ``ValueError`` when its name is taken (unregister it first)."""
    if not isinstance(spec, BackendSpec):
        raise TypeError(f"register_backend takes a BackendSpec, got {type(spec).__name__}")
    with _LOCK:
        if spec.name in _REGISTRY:
            raise ValueError(f"a backend named {spec.name!r} is already registered")
        _REGISTRY[spec.name] = spec


def unregister_backend(name: str) -> BackendSpec:
    """Remove a backend registered with :func:`register_backend`; returns its spec.

    The built-in backends cannot be removed.
    """
    if name in {spec.name for spec in _BUILTIN}:
        raise ValueError(f"the built-in backend {name!r} cannot be unregistered")
    with _LOCK:
        spec = _REGISTRY.pop(name, None)
    if spec is None:
        raise KeyError(f"no backend named {name!r} is registered")
    return spec


@contextmanager
def registered_backend(spec: BackendSpec) -> Iterator[BackendSpec]:
    """Register ``spec`` for the duration of a ``with`` block (tests, plugins)."""
    register_backend(spec)
    try:
        yield spec
    finally:
        unregister_backend(spec.name)


def create_backend(config: RerankConfig, **options: Any) -> Backend:
    """Instantiate the backend named by ``config.backend`` (imports its module lazily).

    ``options`` go to the backend's constructor: ``transport``/``http_client``/
    ``async_http_client`` for ``remote``, ``llm`` or ``vllm.LLM`` keyword
    arguments for ``vllm``, ``packed`` (bool) for ``transformers``.
    """
    return backend_spec(config.backend).create(config, options)
