"""Release metadata of the three distributions: one version each, honest dependency ranges
(lower bounds = constraints-oldest.txt), license, URLs, classifiers, changelog, docs.

The wheels themselves are built, checked and installed by scripts/test_wheels.sh; the oldest
versions are installed and tested by scripts/setup_oldest_env.sh + scripts/test.sh.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

import qwen3_rerank_core

REPO = Path(__file__).resolve().parents[1]
CORE = REPO
ADAPTERS = [
    REPO / "integrations" / "llama-index-postprocessor-qwen3-rerank",
    REPO / "integrations" / "langchain-qwen3-rerank",
]
PROJECTS = [CORE, *ADAPTERS]
CONSTRAINTS = REPO / "constraints-oldest.txt"


def _pyproject(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((folder / "pyproject.toml").read_text())
    return data["project"]  # type: ignore[no-any-return]


def _runtime_requirements(folder: Path) -> list[Requirement]:
    """Dependencies plus the backend extras (not test/bench/demo tools)."""
    project = _pyproject(folder)
    lines = list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    for extra in ("transformers", "vllm"):
        lines += extras.get(extra, [])
    return [Requirement(line) for line in lines]


def _oldest_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{CONSTRAINTS.name}: {line!r} is not an exact pin"
            pins[name.strip().lower()] = Version(version.strip())
    return pins


def _lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def test_core_version_is_defined_once_and_read_by_the_metadata() -> None:
    project = _pyproject(CORE)
    assert "version" not in project and "version" in project["dynamic"]
    setuptools = tomllib.loads((CORE / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "qwen3_rerank_core.__version__"}
    assert qwen3_rerank_core.__version__ == importlib.metadata.version("qwen3-rerank-core")
    Version(qwen3_rerank_core.__version__)  # a valid PEP 440 version


def test_adapters_are_released_with_the_core_and_require_its_minor_series() -> None:
    core = Version(qwen3_rerank_core.__version__)
    next_minor = Version(f"{core.major}.{core.minor + 1}")
    for folder in ADAPTERS:
        project = _pyproject(folder)
        assert Version(project["version"]) == core, folder.name
        dependencies = [Requirement(line) for line in project["dependencies"]]
        (req,) = [r for r in dependencies if r.name == "qwen3-rerank-core"]
        assert req.specifier.contains(core), (folder.name, str(req))
        assert not req.specifier.contains(next_minor), (folder.name, str(req))
        assert _lower_bound(req) is not None, (folder.name, str(req))


def test_lower_bounds_are_exactly_the_oldest_tested_pins() -> None:
    pins = _oldest_pins()
    seen: set[str] = set()
    for folder in PROJECTS:
        for req in _runtime_requirements(folder):
            name = req.name.lower()
            if name not in pins:
                continue
            seen.add(name)
            assert _lower_bound(req) == pins[name], (
                f"{folder.name}: {req} does not start at {name}=={pins[name]} ({CONSTRAINTS.name})"
            )
    assert seen == set(pins), f"pins that are nobody's lower bound: {set(pins) - seen}"
    for name in ("torch", "transformers", "tokenizers", "httpx"):
        assert name in pins, f"{name} has no tested lower bound"
    assert {"llama-index-core", "langchain-core"} <= set(pins)


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    for folder in PROJECTS:
        for req in _runtime_requirements(folder):
            if req.name == "qwen3-rerank-core" and req.extras:
                continue  # an adapter's backend extra: the bounds are on its plain requirement
            assert _lower_bound(req) is not None, f"{folder.name}: {req} has no lower bound"


@pytest.mark.skipif(
    os.environ.get("QWEN3_RERANK_OLDEST") != "1", reason="only in the oldest run (.venv-oldest)"
)
def test_oldest_environment_has_exactly_the_pinned_versions() -> None:
    for name, version in _oldest_pins().items():
        installed = Version(importlib.metadata.version(name))
        assert installed.public == version.public, f"{name} {installed}, pinned {version}"


def test_license_is_apache_2_in_the_repo_and_each_distribution() -> None:
    text = (REPO / "LICENSE").read_text()
    assert re.match(r"\s*Apache License\s+Version 2\.0, January 2004", text)
    assert "END OF TERMS AND CONDITIONS" in text
    for folder in PROJECTS:
        assert (folder / "LICENSE").read_text() == text, folder.name
        project = _pyproject(folder)
        assert project["license"] == "Apache-2.0"
        assert project["license-files"] == ["LICENSE"]


def test_metadata_has_urls_classifiers_and_typing() -> None:
    for folder in PROJECTS:
        project = _pyproject(folder)
        assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(project["urls"])
        classifiers = project["classifiers"]
        assert "Typing :: Typed" in classifiers
        assert not any(c.startswith("License ::") for c in classifiers), "SPDX license only"
        floor = Version(project["requires-python"].removeprefix(">="))
        versions = [
            Version(c.rsplit(" ", 1)[-1])
            for c in classifiers
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
        ]
        assert versions and min(versions) == floor, (folder.name, versions)


def test_changelog_has_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{qwen3_rerank_core.__version__}] - " in changelog
    assert "## [Unreleased]" in changelog


def test_installation_doc_states_the_tested_ranges() -> None:
    doc = (REPO / "docs" / "installation.md").read_text()
    table = doc.split("| Dependency |", 1)[1].split("\n\n", 1)[0]
    for name, version in _oldest_pins().items():
        rows = [line for line in table.splitlines() if line.startswith(f"| `{name}` |")]
        assert rows, f"docs/installation.md has no row for {name}"
        assert f"`{version}`" in rows[0], (name, version, rows[0])
    assert "qwen3-rerank-core>=0.1.0,<0.2" in doc
