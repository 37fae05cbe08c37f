"""The shape of the code: layers import downwards only, no import cycles, small functions, a thin command line.

Every import counts, wherever it stands: at the top of a module, inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ctcid"

#: Packages from the bottom layer to the top; a package imports only packages of lower layers.
LAYERS: list[set[str]] = [
    {"errors", "_version", "_lazy"},
    {"config", "_workers", "_runtime"},
    {"io"},
    {"synth", "segment"},
    {"detect", "features"},
    {"data"},
    {"augment"},
    {"models"},
    {"evaluate"},
    {"survival", "predict"},
    {"train"},
    {"explain", "export"},
    {"report"},
    {"workflows"},
    {"review", "bench"},
    {"cli"},
    {"__main__"},
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
#: Longest function allowed, in lines (signature and docstring included).
MAX_FUNCTION_LINES = 100
#: Longest command body allowed, in lines (after its docstring; the option declarations are not counted).
MAX_COMMAND_LINES = 30


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """ctcid modules imported by a module (the most specific module each import names), with line numbers."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "ctcid"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "ctcid":
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ctcid"


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _modules()} - {"ctcid"}
    assert packages <= set(RANK), f"add {sorted(packages - set(RANK))} to LAYERS"


def test_layers_import_downwards_only():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        src = _package(name)
        if src == "ctcid":  # the top-level facade may name anything (lazily)
            continue
        for target, line in _imports(name, path, set(modules)):
            dst = _package(target)
            if dst == src:
                continue
            if dst == "ctcid" or RANK[dst] >= RANK[src]:
                bad.append(f"{path.relative_to(SRC.parent)}:{line} imports {target} ({src} -> {dst})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = defaultdict(set)
    for name, path in modules.items():
        for target, _ in _imports(name, path, set(modules)):
            if target != name and not (path.name == "__init__.py" and target.startswith(name + ".")):
                graph[name].add(target)
    # a package __init__ stands for the submodules it re-exports: follow it to them
    for name, path in modules.items():
        if path.name == "__init__.py":
            graph[name] |= {t for t, _ in _imports(name, path, set(modules)) if t.startswith(name + ".")}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(modules):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_functions_are_short():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(SRC.parent)}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not long, "\n".join(long)


def _is_command(fn: ast.FunctionDef) -> bool:
    for dec in fn.decorator_list:
        call = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(call, ast.Attribute) and call.attr == "command":
            return True
    return False


def test_commands_are_thin():
    fat = []
    for path in sorted((SRC / "cli").glob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            if not _is_command(fn):
                continue
            body = (
                fn.body[1:]
                if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
                else fn.body
            )
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0  # docstring only: a declaration
            if lines > MAX_COMMAND_LINES:
                fat.append(f"{path.name}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not fat, "\n".join(fat)


@pytest.mark.parametrize("package", sorted(RANK))
def test_every_module_declares_its_public_names(package: str):
    for path in sorted((SRC / package).rglob("*.py")) if (SRC / package).is_dir() else [SRC / f"{package}.py"]:
        if (path.name.startswith("_") and path.name != "__init__.py") or package in ("cli", "__main__"):
            continue
        tree = ast.parse(path.read_text())
        names = {
            t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        }
        assert "__all__" in names, f"{path.relative_to(SRC.parent)} has no __all__"


def test_the_top_level_names_resolve():
    import ctcid

    for name in ctcid.__all__:
        assert getattr(ctcid, name) is not None, name
    with pytest.raises(AttributeError):
        ctcid.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", ["ctcid.models", "ctcid.augment", "ctcid.train"])
def test_lazy_packages_resolve_every_name_from_its_submodule(package: str):
    import importlib

    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        value = getattr(pkg, name)
        defined_in = getattr(value, "__module__", None)
        assert defined_in is None or defined_in.startswith(package + "."), (name, defined_in)
        assert name in dir(pkg)
    with pytest.raises(AttributeError, match="no_such_name"):
        pkg.no_such_name  # noqa: B018


def test_lazy_exports_must_match_the_public_names():
    from ctcid._lazy import lazy_exports

    with pytest.raises(ValueError, match="differ from __all__"):
        lazy_exports("json", {"decoder": ["JSONDecodeError"]}, ["JSONDecodeError", "loads"])


def test_the_command_line_and_options_load_without_torch():
    """``ctcid --help`` and every command's options load no deep-learning stack: torch, timm and Lightning come
    in with the first command that trains or predicts."""
    import subprocess
    import sys

    code = (
        "import sys, ctcid.cli.main, ctcid.train.config, ctcid.evaluate, ctcid.models.calibration; "
        "print(sorted(m for m in ('torch', 'timm', 'lightning', 'torchvision', 'captum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
