"""The package's promises agree with each other: Pythons, CI, tox, extras, license."""

from __future__ import annotations

import ast
import configparser
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _classified_minors() -> list[int]:
    found = (
        re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c) for c in _project()["classifiers"]
    )
    return sorted(int(m.group(1)) for m in found if m)


def test_every_classified_python_is_the_floor_or_above_and_tested_by_tox_and_ci() -> None:
    minors = _classified_minors()
    assert minors, "no Python version classifiers"
    assert _project()["requires-python"] == f">=3.{minors[0]}"
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    envs = {e.strip() for e in tox["tox"]["envlist"].split(",")}
    ci = (ROOT / ".ci" / "run").read_text()
    loop = re.search(r"^for minor in ([\d ]+); do$", ci, re.MULTILINE)
    assert loop is not None
    for minor in minors:
        assert f"py3{minor}" in envs
        assert str(minor) in loop.group(1).split()


def test_ci_runs_the_readme_test_line_word_for_word() -> None:
    readme = (ROOT / "README.md").read_text()
    line = "pip install -e '.[test]' && pytest"
    assert f"\n{line}\n" in readme
    # Word for word, run in the scrubbed environment.
    assert f'scrubbed bash -c "{line}"' in (ROOT / ".ci" / "run").read_text()


def test_the_license_file_and_the_metadata_agree() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert _project()["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in _project()["classifiers"]


#: Where each third-party module the examples import comes from.
_DISTRIBUTION = {
    "openai": "openai",
    "pydantic": "openai",  # a dependency of the openai SDK
    "langchain_core": "langchain-core",
    "langchain_openai": "langchain-openai",
    "pytest": "pytest",
}


def test_one_extra_installs_what_every_example_imports() -> None:
    examples = ROOT / "examples"
    local = {p.stem for p in examples.rglob("*.py")} | {"llm_memo"}
    imported: set[str] = set()
    for path in examples.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = imported - local - set(sys.stdlib_module_names) - {"__future__"}
    unknown = third_party - set(_DISTRIBUTION)
    assert not unknown, f"say which distribution brings {sorted(unknown)}"
    extra = {re.split(r"[<>=\[; ]", r)[0] for r in _project()["optional-dependencies"]["examples"]}
    assert {_DISTRIBUTION[m] for m in third_party} <= extra
