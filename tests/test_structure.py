"""The structure issue's measurable end state, kept true: no module of the package over 500
lines, no function over 80 lines (tables are data, not functions), no import cycle between the
package's modules (imports inside functions included), and no library module importing a
command module.

Read from the source with ``ast``; nothing is imported, so this runs in milliseconds.
"""

import ast
import os
import re

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_resnet")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, os.path.dirname(PACKAGE)), path


def _module_name(relative):
    parts = relative[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = dict(_modules())


@pytest.mark.parametrize("relative", sorted(MODULES))
def test_module_is_short_and_its_functions_too(relative):
    with open(MODULES[relative]) as f:
        source = f.read()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{relative}: over {MAX_MODULE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{relative}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _imports(relative, path):
    """Package modules that ``relative`` imports anywhere: at module level and inside
    functions (a deferred import still ties the two modules together), resolved to names."""
    with open(path) as f:
        tree = ast.parse(f.read())
    here = _module_name(relative)
    package = here if relative.endswith("__init__.py") else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    names = {_module_name(r) for r in MODULES}
    return {n for n in found if n in names and n != here}


GRAPH = {_module_name(r): _imports(r, p) for r, p in MODULES.items()}


def _cycles(graph):
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list.
    A package importing its own submodule is not an edge: that is how packages are built."""
    edges = {n: sorted(m for m in graph[n] if not m.startswith(n + ".")) for n in graph}
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_no_import_cycle_even_through_function_level_imports():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _command_modules():
    """The modules ``keras-resnet`` dispatches to (``cli.COMMANDS``), and ``__main__``."""
    with open(os.path.join(PACKAGE, "cli.py")) as f:
        source = f.read()
    named = set(re.findall(r'\(\s*"[\w-]+",\s*"(keras_resnet[\w.]*)",', source))  # COMMANDS rows
    return {n for n in named if n in GRAPH} | {"keras_resnet.__main__"}


def test_library_modules_never_import_command_modules():
    """Commands call the library, never the reverse: a library module that imports a
    command module (its parser, its error classes) ties the library to argparse."""
    commands = _command_modules()
    assert {"keras_resnet.cli", "keras_resnet.training.cli"} <= commands
    wrong = sorted(f"{m} imports {sorted(GRAPH[m] & commands)}"
                   for m in GRAPH if m not in commands and GRAPH[m] & commands)
    assert not wrong, "; ".join(wrong)
