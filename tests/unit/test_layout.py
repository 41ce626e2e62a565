"""The package's shape: no import circle in knfleet/ (imports inside functions included), no module reaching into
another's private names, the report depending on values and not on the run, and the run's operations in rooms of
their own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "knfleet"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, tree: ast.Module, known: set[str]) -> dict[str, set[str]]:
    """The knfleet modules `name` imports (anywhere in it), each with the names it takes from them."""
    out: dict[str, set[str]] = {}
    package = name if name in {m for m in known if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()} \
        else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    out.setdefault(a.name, set())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in known:  # `from knfleet.run import smoke`: the module itself
                    out.setdefault(full, set())
                elif base in known:
                    out.setdefault(base, set()).add(a.name)
    out.pop(name, None)
    return out


def graph() -> dict[str, dict[str, set[str]]]:
    trees = modules()
    known = set(trees)
    return {name: imports_of(name, tree, known) for name, tree in trees.items()}


def test_no_import_circle_in_the_package():
    g = graph()
    # a package's __init__ is not an edge of its modules (importing knfleet.run.x runs knfleet.run first)
    edges = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in g.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_takes_another_modules_private_names():
    offenders = []
    trees = modules()
    known = set(trees)
    for name, tree in trees.items():
        for target, names in imports_of(name, tree, known).items():
            offenders += [f"{name} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
        aliases = {a.asname or a.name.rpartition(".")[2]: f"{node.module}.{a.name}" if isinstance(node, ast.ImportFrom)
                   else a.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                   for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and aliases.get(node.value.id, "") in known:
                offenders.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    assert not offenders, offenders


def test_the_report_depends_on_values_not_on_the_run():
    g = graph()
    reaching = sorted(f"{m} -> {t}" for m, deps in g.items() if m.startswith("knfleet.report") for t in deps
                      if t.startswith("knfleet.run"))
    assert not reaching, reaching


def test_the_runs_operations_live_in_rooms_of_their_own():
    lines = (PACKAGE / "run" / "operations.py").read_text().count("\n")
    assert lines <= 300, f"knfleet/run/operations.py has {lines} lines"
    for room in ("preflight", "applying", "services", "uninstall", "upgrading"):
        assert (PACKAGE / "run" / f"{room}.py").is_file(), room


def test_the_walk_sees_a_circle_and_a_private_name(tmp_path):
    """The checks above can fail: two modules that import each other, one reaching into the other's private name."""
    a = ast.parse("from knfleet.x import b\nimport knfleet.x.b as bb\nbb._helper()\n")
    b = ast.parse("def f():\n    from knfleet.x import a\n")
    known = {"knfleet.x.a", "knfleet.x.b"}
    assert imports_of("knfleet.x.a", a, known) == {"knfleet.x.b": set()}
    assert imports_of("knfleet.x.b", b, known) == {"knfleet.x.a": set()}
    assert imports_of("knfleet.x.a", ast.parse("from knfleet.x.b import _hidden\n"), known) == {
        "knfleet.x.b": {"_hidden"}}
