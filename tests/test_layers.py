"""The one-way layers hold: the import-linter contracts pass and catch a planted upward
import, no import cycle exists (lazy, function-level imports included), no source file
is over 450 lines, and the wheel's package list names every package folder."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from helpers.paths import REPO_ROOT

_MAX_LINES = 450


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_contracts_are_kept():
    out = _lint_imports(REPO_ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


@pytest.fixture
def tree_copy(tmp_path):
    for name in ("vidlora", "kernels"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "file, line, contract",
    [
        ("vidlora/model/spec.py", "from vidlora.runtime import patching  # planted\n", "vidlora layers"),
        ("vidlora/lora/match.py", "from vidlora.app import video  # planted\n", "vidlora layers"),
        ("vidlora/common/text.py", "def _f():\n    from vidlora.model import spec  # planted, lazy\n", "vidlora layers"),
        ("kernels/checks.py", "from vidlora import errors  # planted\n", "kernels import nothing of vidlora"),
    ],
)
def test_planted_upward_import_breaks_a_contract(tree_copy, file, line, contract):
    path = tree_copy / file
    path.write_text(path.read_text() + "\n" + line)
    out = _lint_imports(tree_copy)
    assert out.returncode != 0, out.stdout
    broken = [ln for ln in out.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), out.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def import_graph() -> grimp.ImportGraph:
    """Every import statement (function-level ones too, as grimp reads them), plus the root
    package's lazy public names (PEP 562: resolved by importlib, so no statement shows them)."""
    graph = grimp.build_graph("vidlora", "kernels", cache_dir=None)
    root = REPO_ROOT / "vidlora" / "__init__.py"
    lazy = ast.literal_eval(next(
        n.value for n in ast.parse(root.read_text()).body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in n.targets)
    ))  # fmt: skip
    for module in set(lazy.values()):
        if module in graph.modules:
            graph.add_import(importer="vidlora", imported=module)
    return graph


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle(tree_copy):
    """The check above can fail: a planted a -> b -> a cycle is found."""
    (tree_copy / "vidlora/common/text.py").write_text(
        (tree_copy / "vidlora/common/text.py").read_text() + "\nfrom vidlora.common import _planted\n"
    )
    (tree_copy / "vidlora/common/_planted.py").write_text("from vidlora.common import text\n")
    sys.path.insert(0, str(tree_copy))
    saved = {k: v for k, v in sys.modules.items() if k == "vidlora" or k.startswith(("vidlora.", "kernels"))}
    try:
        for k in saved:
            del sys.modules[k]
        graph = grimp.build_graph("vidlora", "kernels", cache_dir=None)
    finally:
        sys.path.remove(str(tree_copy))
        for k in [k for k in sys.modules if k == "vidlora" or k.startswith(("vidlora.", "kernels"))]:
            del sys.modules[k]
        sys.modules.update(saved)
    assert ["vidlora.common._planted", "vidlora.common.text"] in _cycles(graph)


def test_no_source_file_over_450_lines():
    long = []
    for folder in ("vidlora", "kernels"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            n = len(path.read_text().splitlines())
            if n > _MAX_LINES:
                long.append(f"{path.relative_to(REPO_ROOT)} ({n})")
    assert not long, "split by concern: " + ", ".join(long)


def test_wheel_lists_every_package():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = config["package-dir"]
    found = {".".join(p.parent.relative_to(REPO_ROOT).parts) for p in (REPO_ROOT / "vidlora").rglob("__init__.py")}
    for name, folder in mapped.items():
        found |= {name + "".join("." + part for part in p.parent.relative_to(REPO_ROOT / folder).parts)
                  for p in (REPO_ROOT / folder).rglob("__init__.py")}  # fmt: skip
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
