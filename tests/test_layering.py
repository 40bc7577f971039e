"""The package is layered: no import cycle, no `digseg` import hidden in a function (the CLI apart), and every
module's notebook comes after the notebooks of the modules it imports, so the notebooks run in numeric order."""
import ast, re
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1]/"digseg"
MODULES = sorted(p for p in PKG.glob("*.py") if p.name not in ("_modidx.py", "__init__.py"))


def digseg_imports(path: Path):
    "[(imported module, nested in a function or class?)] of one module."
    tree, found = ast.parse(path.read_text()), []
    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                if child.level == 1: mods = [child.module] if child.module else [a.name for a in child.names]
                elif child.module and child.module.split(".")[0] == "digseg":
                    mods = [child.module.split(".")[1]] if "." in child.module else [a.name for a in child.names]
                else: mods = []
                found.extend((m, nested) for m in mods)
            elif isinstance(child, ast.Import):
                found.extend((a.name.split(".")[1], nested) for a in child.names if a.name.startswith("digseg."))
            visit(child, inner)
    visit(tree, False)
    return found


def notebook_of(path: Path):
    m = re.search(r"File to edit: \.\./nbs/(\S+?\.ipynb)", path.read_text()[:2000])
    assert m, f"{path.name} names no source notebook"
    return m.group(1)


GRAPH = {p.stem: sorted({m for m, _ in digseg_imports(p)} - {p.stem}) for p in MODULES}


def test_the_parser_sees_imports(tmp_path):
    "A check that could not fail is no check: the parser finds what we know is there."
    assert "config" in GRAPH["pipeline"] and "pipeline" in GRAPH["evaluate"]
    p = tmp_path/"probe.py"
    p.write_text("from .a import x\ndef f():\n    from digseg.b import y\n    import digseg.c\n")
    assert digseg_imports(p) == [("a", False), ("b", True), ("c", True)]


def test_no_function_local_digseg_imports():
    hidden = [f"{p.name}: {m}" for p in MODULES if p.stem != "cli" for m, nested in digseg_imports(p) if nested]
    assert not hidden, f"imports hidden in functions (move them to the module's import cell): {hidden}"


def test_no_import_cycle():
    state, stack = {}, []
    def dfs(m):
        state[m] = "open"; stack.append(m)
        for n in GRAPH.get(m, []):
            if state.get(n) == "open": pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state: dfs(n)
        state[m] = "done"; stack.pop()
    for m in GRAPH:
        if m not in state: dfs(m)


def test_notebooks_run_in_numeric_order():
    nb = {p.stem: notebook_of(p) for p in MODULES}
    late = [f"{m} ({nb[m]}) imports {d} ({nb[d]})" for m, deps in GRAPH.items() for d in deps if d in nb and nb[d] > nb[m]]
    assert not late, f"a notebook imports a module whose notebook comes after it: {late}"
