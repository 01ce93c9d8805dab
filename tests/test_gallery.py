"""The README's gallery runs as written: every cell in it defines, instantiates and passes gradcheck in float64
(against finite differences: an independent check) on the reference backend."""
import re
from pathlib import Path

import torch

import symcell
from zoo import gradcheck_scan, random_inputs

README = Path(__file__).resolve().parents[1] / "README.md"


def gallery():
    text = README.read_text().split("## A gallery of cells", 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_every_cell_of_the_gallery_defines_runs_and_gradchecks():
    scope = {}
    exec(compile(gallery(), "README gallery", "exec"), scope)  # noqa: S102 - the README's own code
    cells = {n: c for n, c in scope.items() if isinstance(c, type) and issubclass(c, symcell.Cell)}
    assert {"sLSTM", "LayerNormLSTM", "LogMinGRU", "CfC", "HardGRU"} <= set(cells)
    for name, cls in cells.items():
        dims = {d: 4 for d in cls.spec.ir.dims}
        torch.manual_seed(0)
        cell = cls(**dims, backend="reference").double()
        xs, states = random_inputs(cell, T=3, B=2, seed=1)
        assert gradcheck_scan(cell, xs, states), name


def test_every_cell_of_the_gallery_hears_its_input_from_the_default_state():
    """A cell whose output stays the same whatever its input, from the state a module starts in when given none,
    cannot learn: the gallery's MinimalGRU once fed x only to its gates, and from h = 0 stayed 0."""
    scope = {}
    exec(compile(gallery(), "README gallery", "exec"), scope)  # noqa: S102 - the README's own code
    cells = {n: c for n, c in scope.items() if isinstance(c, type) and issubclass(c, symcell.Cell)}
    for name, cls in cells.items():
        torch.manual_seed(0)
        cell = cls(**{d: 4 for d in cls.spec.ir.dims}, backend="reference").double()
        xs, _ = random_inputs(cell, T=3, B=2, seed=1)
        xs = [x.detach().requires_grad_() for x in xs]
        ys, _ = symcell.scan(cell, tuple(xs))
        ys = ys[0] if isinstance(ys, tuple) else ys
        (g,) = torch.autograd.grad(ys.square().sum(), xs[0])
        assert g.abs().max() > 0, name
