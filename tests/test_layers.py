"""The layers hold: corpus (the floor) <- encoder <- retrievers <- harness (the roof, a library) <- harness/cli (the
command side). Every import counts, also those inside functions, so an upward import fails here instead of hiding
in a function body."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "corpus": set(),
    "encoder": {"corpus"},
    "retrievers": {"corpus", "encoder"},
    "harness": {"corpus", "encoder", "retrievers"},
}


CLI = ROOT / "harness" / "cli"
UI = {"rich", "typer"}  # terminal rendering and command parsing: the command side's alone


def all_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def project_imports(path: Path) -> list[tuple[int, str]]:
    return [(n, m) for n, m in all_imports(path) if m.split(".")[0] in ALLOWED]


def violations() -> list[str]:
    bad = []
    for pkg, allowed in ALLOWED.items():
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, module in project_imports(path):
                top = module.split(".")[0]
                if top != pkg and top not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {pkg} imports {module}")
    return bad


def test_imports_point_down():
    assert violations() == []


def library_ui_imports() -> list[str]:
    """Imports of rich, typer or harness.cli by any project module outside harness/cli/."""
    bad = []
    for pkg in ALLOWED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if CLI in path.parents:
                continue
            for line, module in all_imports(path):
                if module.split(".")[0] in UI or module == "harness.cli" or module.startswith("harness.cli."):
                    bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return bad


def test_no_module_outside_harness_cli_imports_rich_or_typer():
    assert library_ui_imports() == []


def test_the_ui_checker_sees_a_library_module_importing_rich(tmp_path, monkeypatch):
    (tmp_path / "harness" / "cli").mkdir(parents=True)
    (tmp_path / "harness" / "lib.py").write_text("def f():\n    from rich.table import Table\n")
    (tmp_path / "harness" / "cli" / "render.py").write_text("import rich\nimport typer\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "CLI", tmp_path / "harness" / "cli")
    assert library_ui_imports() == ["harness/lib.py:2: imports rich.table"]


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from harness.runner import run_benchmark\n")
    assert project_imports(f) == [(2, "harness.runner")]


# ---- the cache root: passed in, read from the environment only at the CLI edge ---------------------------------------

# the modules that may call harness.cli.home.default_home: the command side
def at_edge(path: Path) -> bool:
    return CLI in path.parents


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (they may talk about $VERSEBENCH_HOME; only code counts)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def environment_reads(path: Path, root: Path = ROOT) -> list[str]:
    """Where a module names VERSEBENCH_HOME in code, or calls `default_home` / the old `paths.home`."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    where = path.relative_to(root).as_posix()
    docs, bad = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "VERSEBENCH_HOME" in node.value \
                and id(node) not in docs:
            bad.append(f"{where}:{node.lineno}: names VERSEBENCH_HOME")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            # `default_home()` however reached; a bare `home()` (the old reader); never `Path.home()`
            if name == "default_home" or (name == "home" and isinstance(node.func, ast.Name)):
                bad.append(f"{where}:{node.lineno}: calls {name}()")
    return bad


def test_floor_and_middle_never_read_the_cache_root_from_the_environment():
    bad = [b for pkg in ("corpus", "encoder", "retrievers") for p in sorted((ROOT / pkg).rglob("*.py"))
           for b in environment_reads(p)]
    assert bad == []


def test_only_the_cli_edge_asks_for_the_default_cache_root():
    calls = [b for p in sorted((ROOT / "harness").rglob("*.py")) if not at_edge(p)
             for b in environment_reads(p) if "calls" in b]
    assert calls == []


def test_the_checker_sees_an_environment_read_and_a_default_home_call(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""$VERSEBENCH_HOME in a docstring is fine."""\nimport os\n\n\ndef f():\n'
                 '    return os.environ["VERSEBENCH_HOME"], default_home()\n')
    assert sorted(environment_reads(f, tmp_path)) == ["m.py:6: calls default_home()",
                                                      "m.py:6: names VERSEBENCH_HOME"]
