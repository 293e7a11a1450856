"""The package layout follows the data path (docs/architecture.md): no module imports from a
folder later in the flow, and every module opens with a docstring that says its one job."""
from __future__ import annotations

import ast
from pathlib import Path

WM = Path(__file__).resolve().parents[1] / "wm"

# data path order: a package may import only from itself and from packages earlier in this list
FLOW = ["utils", "textworld", "language", "data", "vision", "rollout", "world", "rewards", "rl",
        "tasks", "evaluation", "planning", "stages", "cli"]


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "wm" else None


def import_edges() -> list[tuple[str, str, int, str]]:
    """(file, imported module, line, importing package) for every ``wm.*`` import (lazy ones too)."""
    edges = []
    for path in sorted(WM.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("wm."):
                    edges.append((str(path.relative_to(WM.parent)), name, node.lineno,
                                  path.relative_to(WM).parts[0]))
    return edges


def back_edges() -> list[str]:
    order = {p: i for i, p in enumerate(FLOW)}
    bad = []
    for file, module, line, src in import_edges():
        dst = _package(module)
        if src not in order or dst is None:
            continue
        if dst not in order:
            bad.append(f"{file}:{line} imports {module}: package wm.{dst} is not in the flow")
        elif order[dst] > order[src]:
            bad.append(f"{file}:{line} imports {module} (wm.{src} -> later wm.{dst})")
    return bad


def test_every_package_is_in_the_flow():
    packages = {p.name for p in WM.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(FLOW), f"add these packages to FLOW: {sorted(packages - set(FLOW))}"


def test_no_import_runs_against_the_flow():
    bad = back_edges()
    assert not bad, "imports against the data path:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_imports(tmp_path):
    # the walker must find imports inside functions, or the check above could not fail
    edges = import_edges()
    lazy = [e for e in edges if e[1] == "wm.rollout.sampler" and e[0].startswith("wm/tasks/")]
    assert lazy, "expected the lazy Sampler import in wm/tasks/video.py to be seen"


def test_every_module_has_a_docstring():
    missing = [str(p.relative_to(WM.parent)) for p in sorted(WM.rglob("*.py"))
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, f"modules without a docstring saying their job: {missing}"


def test_no_long_module():
    long = [f"{p.relative_to(WM.parent)} ({n} lines)" for p in sorted(WM.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 330]
    assert not long, f"split these modules by job: {long}"
