"""The package's shape (docs/architecture.md): imported once, no import cycles, each sub-package imports only
what its docstring allows."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "plugins" / "gradeflow"

# What each sub-package may import (besides itself); every docstring of a sub-package says the same.
ALLOWED = {
    "core": set(),
    "lifecycle": {"core"},
    "intake": {"core", "lifecycle"},
    "grading": {"core", "lifecycle"},
    "review": {"core", "lifecycle", "intake"},
    "release": {"core", "lifecycle"},
    "admin": {"core", "lifecycle", "intake", "grading", "release"},
    "airflow": {"core", "lifecycle", "intake", "grading", "review", "release", "admin"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every gradeflow module `name` imports, at module level or inside a function (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t not in (name, "gradeflow")}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_lives_in_a_sub_package_with_a_docstring_that_states_its_job():
    modules = _modules()
    top = [n for n in modules if n.count(".") == 1 and modules[n].name != "__init__.py"]
    assert not top, f"modules outside a sub-package: {top}"
    for name, path in modules.items():
        assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no module docstring"
    for sub in ALLOWED:
        doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text()))
        assert "May import:" in doc, f"gradeflow.{sub} does not say what it may import"
    assert {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED)


def test_no_import_cycles():
    graph = _graph()
    # a package imports its own modules to re-export them: that edge is not a dependency
    edges = {n: {t for t in ts if not t.startswith(n + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if not state.get(target):
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if not state.get(node):
            visit(node)


def test_sub_packages_import_only_what_their_layer_allows():
    wrong = []
    for name, targets in _graph().items():
        sub = name.split(".")[1] if name.count(".") else None
        if sub is None:
            continue
        for target in targets:
            other = target.split(".")[1]
            if other != sub and other not in ALLOWED[sub]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The checker itself: two modules importing each other are reported."""
    fake = tmp_path / "gradeflow"
    (fake / "core").mkdir(parents=True)
    (fake / "__init__.py").write_text('"""x"""\n')
    (fake / "core" / "__init__.py").write_text('"""x"""\n')
    (fake / "core" / "a.py").write_text('"""a"""\nfrom gradeflow.core import b\n')
    (fake / "core" / "b.py").write_text('"""b"""\ndef f():\n    from gradeflow.core import a\n')
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()


def test_airflows_plugin_loader_does_not_import_the_package_a_second_time(tmp_path):
    """Airflow imports every .py under plugins/ by bare name unless .airflowignore keeps it out: module state
    (the lock watchdog, the schema check) would then exist twice (sys.modules["db"] beside gradeflow.core.db)."""
    code = (
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "plugins_manager.ensure_plugins_loaded()\n"
        "import gradeflow.core.db, gradeflow.airflow.tasks\n"
        "root = sys.argv[1]\n"
        "print(json.dumps(sorted(n for n, m in list(sys.modules.items())\n"
        "    if (getattr(m, '__file__', None) or '').startswith(root) and not n.startswith('gradeflow'))))\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code, str(PKG)], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert (ROOT / "plugins" / ".airflowignore").read_text().count("gradeflow/") == 1
