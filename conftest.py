"""Loads the core's pytest plugin for every test of the repository (core and adapters).

``qwen3_rerank_core.pytest_plugin`` gives the tiny offline checkpoint
(``tiny_model_dir``, cached in ``.cache/fixtures`` by the ``qwen3_rerank_fixture_cache``
ini option in pyproject.toml), ``tiny_tokenizer``, ``tiny_reranker`` and
``one_torch_thread``; ``pytester`` runs the plugin in a project of its own
(tests/test_pytest_plugin.py). ``pytest_plugins`` may only be set in this top-level conftest.
:func:`pytest_sessionstart` resolves torch's VML dispatch before any test computes.
"""

pytest_plugins = ["qwen3_rerank_core.pytest_plugin", "pytester"]


def pytest_sessionstart(session: object) -> None:
    """Resolve torch's VML dispatch before any test computes (the recipe references
    too, which our backend does not load): see ``qwen3_rerank_core._backends._vml``."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        from qwen3_rerank_core._backends._vml import resolve_vml_dispatch

        resolve_vml_dispatch()
