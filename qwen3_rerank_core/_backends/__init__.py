"""Backends: the engines that turn prompts into scores.

A backend implements :class:`Backend`. It receives inputs that the facade has
already validated (non-empty str query, a list of str documents, a resolved
instruction) and returns one p(yes) per document, in input order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Backend, Group

if TYPE_CHECKING:
    from .._config import RerankConfig

__all__ = ["Backend", "Group", "create_backend"]


def create_backend(config: RerankConfig) -> Backend:
    """Instantiate the backend named by ``config.backend`` (imports its extra lazily)."""
    if config.backend == "transformers":
        from ._transformers import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "vllm":
        from ._vllm import VLLMBackend

        return VLLMBackend(config)
    if config.backend == "remote":
        from ._remote import RemoteBackend

        return RemoteBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")  # pragma: no cover - config validates
