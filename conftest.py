"""Loads the core's pytest plugin for every test of the repository (core and adapters).

``qwen3_rerank_core.pytest_plugin`` gives the tiny offline checkpoint
(``tiny_model_dir``, cached in ``.cache/fixtures`` by the ``qwen3_rerank_fixture_cache``
ini option in pyproject.toml), ``tiny_tokenizer``, ``tiny_reranker`` and
``one_torch_thread``; ``pytester`` runs the plugin in a project of its own
(tests/test_pytest_plugin.py). ``pytest_plugins`` may only be set in this top-level conftest.
:func:`pytest_sessionstart` resolves torch's VML dispatch before any test computes;
:func:`pytest_collection_modifyitems` puts the slow modules first, for CI's two workers.
"""

from __future__ import annotations

from typing import Any

pytest_plugins = ["qwen3_rerank_core.pytest_plugin", "pytester"]

#: Markers of a slow module: one of its tests has one of them (``slow`` on the module, or
#: ``vllm``: a vLLM start is 50-90 s on 2 cores).
SLOW_MARKERS = ("slow", "vllm")


def pytest_sessionstart(session: object) -> None:
    """Resolve torch's VML dispatch before any test computes (the recipe references
    too, which our backend does not load): see ``qwen3_rerank_core._backends._vml``."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        from qwen3_rerank_core._backends._vml import resolve_vml_dispatch

        resolve_vml_dispatch()


def slow_modules_first(items: list[Any]) -> list[Any]:
    """``items`` with whole modules reordered: those holding a test marked ``slow`` or
    ``vllm`` first, then the others; within each group, modules with more tests first
    (as pytest-xdist's own reordering); each module's tests keep their order.

    CI's two workers (``--dist loadscope --no-loadscope-reorder`` in scripts/test.sh) take
    modules in this order, so the minute-long ones start early and the short ones fill the
    end, instead of one worker finishing a vLLM module alone (80-100 s seen, 2026-12-07)."""
    modules: dict[str, list[Any]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def slow(tests: list[Any]) -> bool:
        return any(t.get_closest_marker(m) is not None for t in tests for m in SLOW_MARKERS)

    ordered = sorted(modules.values(), key=lambda tests: (not slow(tests), -len(tests)))
    return [item for tests in ordered for item in tests]


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Slow modules first (:func:`slow_modules_first`)."""
    items[:] = slow_modules_first(items)
