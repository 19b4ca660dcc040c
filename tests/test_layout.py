"""The package's layout: what ``import llm_memo`` loads, import cycles, the testing API's names."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llm_memo"


def test_importing_the_library_loads_no_cli_or_testing_code() -> None:
    program = (
        "import sys, llm_memo\n"
        "print(sorted(m for m in sys.modules if m.startswith(('llm_memo.cli', 'llm_memo.testing'))"
        " or m in ('llm_memo._server', 'argparse')))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports, at any depth (lazy imports included)."""
    module = package + ("" if path.stem == "__init__" else "." + path.stem)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # level 2 leaves the package
            target = f"{package}.{node.module}" if node.module else package
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(n for n in [target, *names] if n.startswith(package) and n != module)
    return found


@pytest.mark.parametrize("subpackage", ["cli", "testing"])
def test_no_import_cycles_and_small_modules(subpackage: str) -> None:
    package = f"llm_memo.{subpackage}"
    files = sorted((PACKAGE / subpackage).glob("*.py"))
    names = {package + ("" if f.stem == "__init__" else "." + f.stem): f for f in files}
    graph = {name: {m for m in _imports(f, package) if m in names} for name, f in names.items()}
    # The package's __init__ gathers its modules; none imports it back (``__main__`` runs it).
    for name, targets in graph.items():
        assert name.endswith(".__main__") or package not in targets, f"{name} imports {package}"

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        for target in graph[name]:
            visit(target, (*path, name))

    for name in graph:
        visit(name, ())
    sizes = {f.name: len(f.read_text(encoding="utf-8").splitlines()) for f in files}
    assert max(sizes.values()) <= 400, sizes


def test_testing_api_is_public_and_the_old_module_warns() -> None:
    import llm_memo.testing

    assert llm_memo.testing.__all__ == ["FakeLLMServer", "RecordedRequest", "main"]
    sys.modules.pop("llm_memo._server", None)
    with pytest.warns(DeprecationWarning, match="llm_memo.testing"):
        old = importlib.import_module("llm_memo._server")
    assert old.FakeLLMServer is llm_memo.testing.FakeLLMServer
    sys.modules.pop("llm_memo._server", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("llm_memo.testing")
