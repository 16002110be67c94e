"""For programs built on the library (the CLI, the examples): fail fast when the hub is offline.

Without a reachable model hub, ``huggingface_hub`` retries each file for ~25 s
before the load fails. :func:`check_hub` finds out in a few seconds instead:
a hub id that is in the local Hugging Face cache is then loaded from there
(``local_files_only=True``), one that is not raises :class:`HubUnreachableError`
with a one-line message saying how to pass a local folder. It never picks
another model: the library has no fallback, and programs decide what to do
(the quickstart alone runs its pipeline on a random-weight checkpoint,
:data:`TINY_RANDOM`, under a banner).

Example::

    >>> from qwen3_rerank_core.offline import check_hub
    >>> check_hub("./my-local-folder")  # a folder: nothing to check
    False
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._checkpoint import looks_like_path
from ._errors import ModelLoadError

__all__ = [
    "HUB_TIMEOUT",
    "TINY_RANDOM",
    "HubUnreachableError",
    "check_hub",
    "hub_reachable",
    "tiny_random_model",
]

logger = logging.getLogger("qwen3_rerank_core")

#: Seconds to wait for the hub to answer before calling it unreachable.
HUB_TIMEOUT = 3.0
#: The ``--model`` name of the tiny random-weight checkpoint (offline smoke tests).
TINY_RANDOM = "tiny-random"


class HubUnreachableError(ModelLoadError):
    """The model hub cannot be reached and the model is not in the local cache."""


def _offline_env() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """Whether the hub endpoint (``$HF_ENDPOINT``) answers HTTP within ``timeout`` seconds."""
    import httpx

    try:
        httpx.head(_endpoint(), timeout=timeout)  # honours HTTPS_PROXY like huggingface_hub
    except httpx.HTTPError:
        return False
    return True


def _cached(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def check_hub(model: str, *, timeout: float = HUB_TIMEOUT) -> bool:
    """Whether ``model`` must be loaded with ``local_files_only=True``.

    ``False`` for a local folder (or path) and for a hub id while the hub answers.
    ``True`` for a hub id in the local cache while the hub is unreachable or
    ``HF_HUB_OFFLINE`` is set. Raises :class:`HubUnreachableError` for a hub id
    that is neither reachable nor cached (within ``timeout`` seconds).
    """
    if Path(os.path.expanduser(model)).exists() or looks_like_path(model):
        return False
    offline = _offline_env()
    if not offline and hub_reachable(timeout):
        return False
    if _cached(model):
        logger.info("the hub is unreachable; loading %s from the local cache", model)
        return True
    why = "is switched off (HF_HUB_OFFLINE)" if offline else "cannot be reached"
    name = model.rsplit("/", 1)[-1]
    raise HubUnreachableError(
        f"the model hub {_endpoint()} {why} and {model!r} is not in the local cache: "
        f"pass a local folder with --model /path/to/{name} (or set QWEN3_RERANK_MODEL), "
        f"or try the pipeline with --model {TINY_RANDOM} (random weights, meaningless scores)"
    )


def tiny_random_model() -> str:
    """Folder of the tiny random-weight checkpoint (built once, see
    :func:`qwen3_rerank_core.testing.tiny_checkpoint`); its scores mean nothing."""
    from .testing import tiny_checkpoint

    return str(tiny_checkpoint())
