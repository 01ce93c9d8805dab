"""The layout the README draws ("How it works") is the code's: every module of symcell/ is in the README's list
of layers, imports only modules of the layers below its own, and nothing imports in a circle."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "symcell"


def readme_layers():
    """The README's fenced block of layers, top first: each line's `symcell/...` paths."""
    text = (ROOT / "README.md").read_text()
    block = text.split("The modules in layers", 1)[1].split("```", 2)[1]
    layers = [[t for t in line.split() if t.startswith("symcell/")] for line in block.splitlines()]
    return [layer for layer in layers if layer]


def unit(module):
    """symcell.backends.cpp.render -> 'symcell/backends/' (a package is one unit); symcell.ops -> 'symcell/ops.py'"""
    parts = module.split(".")
    if len(parts) == 1:
        return "symcell/__init__.py"
    if (PKG / parts[1]).is_dir():
        return f"symcell/{parts[1]}/"
    return f"symcell/{parts[1]}.py"


def imports(path):
    """Every symcell module a file imports, at the top or inside a function."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "symcell"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # from .x import y imports x; from . import a, b imports the modules a and b
                out |= {target} if node.module else {f"{target}.{a.name}" for a in node.names}
            elif node.module and node.module.split(".")[0] == "symcell":
                out.add(node.module)
    return out


def test_every_module_is_in_the_readme_and_imports_only_the_layers_below():
    layers = readme_layers()
    rank = {u: k for k, layer in enumerate(layers) for u in layer}
    units = {unit(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
             for p in PKG.rglob("*.py")}
    assert units == set(rank), f"in the code but not the README: {units - set(rank)}; " \
                               f"in the README only: {set(rank) - units}"
    wrong = []
    for path in PKG.rglob("*.py"):
        me = unit(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
        for target in imports(path):
            other = unit(target)
            if other != me and rank[other] <= rank[me]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target} ({other} is not below {me})")
    assert not wrong, "\n".join(wrong)


def test_the_operators_do_not_import_the_prebuilt_cells():
    """A traced program's prebuilt cells are found by the registry importing the module symcell names to it,
    not by the operator layer importing the cells (the old import circle)."""
    code = "import sys, symcell.ops, symcell.registry; assert 'symcell.cells' not in sys.modules; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "ok", r.stderr


def test_every_file_the_package_reads_is_in_its_wheel():
    """A file of symcell/ that is not Python (the C++ backend's sc.h) goes into a wheel only if pyproject.toml's
    package-data names it: without it, an installed (not editable) symcell built no cpp kernel."""
    # (the table's lines, `"package" = ["file", ...]`, read without tomllib, which Python 3.9 and 3.10 lack)
    section = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]\n", 1)[1].split("\n[", 1)[0]
    listed = dict((ast.literal_eval(k.strip()), ast.literal_eval(v.split("#")[0].strip()))
                  for k, v in (line.split("=", 1) for line in section.splitlines() if "=" in line and
                               not line.lstrip().startswith("#")))
    shipped = {(PKG.parent / package.replace(".", "/") / name).resolve()
               for package, names in listed.items() for name in names}
    data = {p.resolve() for p in PKG.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data <= shipped, f"not in pyproject.toml's [tool.setuptools.package-data]: {sorted(map(str, data - shipped))}"


def test_the_triton_settings_the_readme_lists_are_where_it_says():
    """`symcell.backends.triton.render.DOT_SUMS = 1` set an attribute of the render function, which the package's
    `from .render import render` had put in the module's place: a silent no-op. Every setting of the README's
    table is an attribute of the module it names."""
    import importlib
    import types

    import symcell.backends.triton as package
    text = (ROOT / "README.md").read_text()
    table = text.split("The settings, all in `symcell.backends.triton`", 1)[1].split("\n\n", 2)[1]
    names = [line.split("`")[1] for line in table.splitlines() if line.strip().startswith("| `")]
    assert len(names) == 13, names
    for name in names:
        owner = package
        for part in name.split(".")[:-1]:
            owner = getattr(owner, part)
            assert isinstance(owner, types.ModuleType), f"symcell.backends.triton.{name}: {part} is {owner!r}"
        assert hasattr(owner, name.split(".")[-1]), name
    assert package.render is importlib.import_module("symcell.backends.triton.render")
