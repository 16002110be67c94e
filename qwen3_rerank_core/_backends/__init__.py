"""Backends: the engines that turn prompts into scores.

A backend implements :class:`Backend`. It receives inputs that the facade has
already validated (non-empty str query, a list of str documents, a resolved
instruction) and returns one p(yes) per document, in input order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend, Group

if TYPE_CHECKING:
    from .._config import RerankConfig

__all__ = ["Backend", "Group", "create_backend"]


def create_backend(config: RerankConfig, **options: Any) -> Backend:
    """Instantiate the backend named by ``config.backend`` (imports its extra lazily).

    ``options`` go to the backend's constructor: ``transport``/``http_client``/
    ``async_http_client`` for ``remote``, ``llm`` or ``vllm.LLM`` keyword
    arguments for ``vllm``, ``packed`` (bool) for ``transformers``.
    """
    if config.backend == "transformers":
        from ._transformers import TransformersBackend

        unknown = sorted(set(options) - {"packed"})
        if unknown:
            raise TypeError(
                f"the transformers backend takes only the backend_option 'packed', got {unknown}"
            )
        return TransformersBackend(config, **options)
    if config.backend == "vllm":
        from ._vllm import VLLMBackend

        return VLLMBackend(config, **options)
    if config.backend == "remote":
        from ._remote import RemoteBackend

        return RemoteBackend(config, **options)
    raise ValueError(f"unknown backend {config.backend!r}")  # pragma: no cover - config validates
