"""The layers hold: corpus (the floor) <- encoder <- retrievers <- harness (the roof). Every import counts, also those
inside functions, so an upward import fails here instead of hiding in a function body."""

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


def project_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return [(n, m) for n, m in out if m.split(".")[0] in ALLOWED]


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


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from harness.runner import run_benchmark\n")
    assert project_imports(f) == [(2, "harness.runner")]
