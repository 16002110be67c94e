"""Backends: the engines that turn prompts into scores.

A backend implements :class:`Backend`. It receives inputs that the facade has
already validated (non-empty str query, a list of str documents, a resolved
instruction) and returns one p(yes) per document, in input order. Each backend
is named once, in the registry (:mod:`._registry`): :func:`register_backend`
adds one, :func:`registered_backend` for the length of a ``with`` block.
"""

from __future__ import annotations

from ._base import Backend, Group
from ._registry import (
    BackendSpec,
    backend_names,
    backend_spec,
    create_backend,
    register_backend,
    registered_backend,
    unregister_backend,
)

__all__ = [
    "Backend",
    "BackendSpec",
    "Group",
    "backend_names",
    "backend_spec",
    "create_backend",
    "register_backend",
    "registered_backend",
    "unregister_backend",
]
