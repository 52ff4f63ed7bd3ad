"""The package's structure, checked: the import-linter contracts of pyproject.toml (layers, no circles, only train
imports train), private names kept private, and function-local imports only where they say why."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tokenwave"
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install '.[test]')")


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    res = _lint(ROOT, ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("audio/upward.py", "import tokenwave.tasks.base\n", "Layers"),          # a low layer reaching up
    ("serve/uses_train.py", "import tokenwave.train.trainer\n", "Only train"),  # inference importing training
])
def test_contracts_catch_a_violation(tmp_path, module, line, contract):
    """The same contracts on a copy of the package with one bad import added must fail, naming the contract."""
    shutil.copytree(PACKAGE, tmp_path / "tokenwave", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "tokenwave" / module).write_text(line)
    res = _lint(tmp_path, tmp_path)
    assert res.returncode != 0
    assert f"{contract}" in res.stdout and "BROKEN" in res.stdout


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for path, src in _sources():
        me = _module_name(path)
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tokenwave"):
                if node.module != me:
                    bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_function_local_imports_say_why():
    """An import inside a function is for a torch-free ``tokenwave --help`` or an optional backend, and says so with a
    ``# lazy: <reason>`` comment on its line (or the line above); any other belongs at the top of the module."""
    bad = []
    for path, src in _sources():
        lines = src.splitlines()
        tree = ast.parse(src)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not _says_why(lines, node):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, f"{len(bad)} function-local imports without '# lazy: <reason>':\n" + "\n".join(bad[:80])


def _says_why(lines: list[str], node: ast.stmt) -> bool:
    """The import's own lines, or the run of imports and comments just above it (one reason for a group), hold
    ``# lazy:``."""
    if any("# lazy:" in line for line in lines[node.lineno - 1: node.end_lineno]):
        return True
    i = node.lineno - 2
    while i >= 0 and lines[i].strip().startswith(("from ", "import ", "#")):
        if "# lazy:" in lines[i]:
            return True
        i -= 1
    return False
