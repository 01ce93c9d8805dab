"""The pipeline in one place: its passes run in order, SYMCELL_DEBUG=1 shows each product and the source, and the
products are made once per cell and binding (the registry's one memo)."""
import pytest
import torch

import symcell
from symcell import pipeline, registry
from symcell.cells import GRUCell

STAGES = ["trace", "bind_ir", "rewrite", "hoist", "materialize", "allocate_values", "form_regions", "derive", "plan",
          "lower_to_kernel", "source (reference", "tangent_forward", "tangent_backward", "source (reference"]


def test_symcell_debug_prints_every_stage_in_order_and_the_source(monkeypatch, capsys):
    monkeypatch.setenv("SYMCELL_DEBUG", "1")
    lowered = pipeline.lower(GRUCell.spec.ir, {"I": 3, "H": 4})
    reference = symcell.backends.get("reference")
    program = pipeline.backend_program(lowered, reference)
    source, _ = pipeline.build(program, reference, {"I": 3, "H": 4}, program.scans)
    second, _ = pipeline.build(program, reference, {"I": 3, "H": 4}, pipeline.second_order(program))
    err = capsys.readouterr().err
    heads = [line[len("--- symcell "):].split(":")[0].rstrip(" -") for line in err.splitlines()
             if line.startswith("--- symcell ")]
    assert heads == STAGES
    assert "weight_ih_x = x @ weight_ih.T" in err                    # the schedule as gradients() shows it
    assert "scan backward (reverse)" in err and "d_h_new <- d_h" in err   # the kernel program
    assert "scan tangent_forward" in err and "_v_d_h_new <- _v_d_h" in err   # the second-order scans
    assert source in err and second in err


def test_without_symcell_debug_nothing_is_printed(monkeypatch, capsys):
    monkeypatch.delenv("SYMCELL_DEBUG", raising=False)
    pipeline.lower(GRUCell.spec.ir, {"I": 3, "H": 4})
    assert capsys.readouterr().err == ""


def test_products_are_made_once_per_cell_and_binding():
    spec = GRUCell.spec
    a = registry.lowered(spec.hash, {"I": 2, "H": 3})
    assert registry.lowered(spec.hash, {"H": 3, "I": 2}) is a
    assert registry.lowered(spec.hash) is not a and registry.lowered(spec.hash) is registry.lowered(spec.hash)
    # gradients() reads the symbolic products instead of running the passes again
    text = GRUCell.gradients()
    assert "weight_ih_x = x @ weight_ih.T" in text


def test_the_fake_shapes_are_read_from_the_program():
    from symcell.ops import _shapes
    cell = GRUCell(3, 4, backend="reference")
    key = cell._kernel_key(torch.device("cpu"))
    assert _shapes(key, 5, 2, save=False) == [(5, 2, 4), (2, 4)]
    assert _shapes(key, 5, 2, save=True) == [(5, 2, 4), (2, 4), (5, 2, 12), (5, 2, 12)]
    ys, finals, res = cell._kernel(torch.device("cpu")).forward((torch.randn(5, 2, 3),), (torch.zeros(2, 4),),
                                                                tuple(cell.parameters()), True)
    assert [tuple(t.shape) for t in (*ys, *finals, *res)] == _shapes(key, 5, 2, save=True)


def test_a_deep_chain_of_pointwise_functions_derives_with_the_plain_elimination(monkeypatch, tmp_path):
    """autodiff.TREE_LIMIT: sympy's 'basic' optimizations walk expressions as trees, exponential in a chain of
    functions that each use their input several times; the tree's size is counted in one pass over the distinct
    subexpressions, and past the limit the plain elimination runs alone: the gradients are as exact"""
    from symcell import autodiff, sigmoid, tanh
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path))   # (derived afresh, not from the kept derivations)
    x, h = (symcell.functions.sympy.Symbol(n) for n in "xh")
    v = x + h
    for _ in range(6):
        v = v * (v + 1)
    walk = list(symcell.functions.sympy.preorder_traversal(v))   # (the tree, as sympy walks it)
    assert autodiff._tree_size([v]) == len(walk) > 10 * len(set(walk))
    seen = []
    cse = autodiff.sympy.cse
    monkeypatch.setattr(autodiff.sympy, "cse",
                        lambda *a, **k: seen.append(k.get("optimizations", "not given")) or cse(*a, **k))
    monkeypatch.setattr(autodiff, "TREE_LIMIT", 100)

    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, name="DeepChain")
    def DeepChain(x, h):
        v = h + x
        for _ in range(3):
            v = tanh(v * sigmoid(v) + 0.1 * v)
        return v
    cell = DeepChain(H=3, backend="reference", dtype=torch.float64)
    xs = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: cell(a, b)[0], (xs, h0))
    assert None in seen, seen


def test_symcell_debug_off_by_the_usual_words(monkeypatch):
    """SYMCELL_DEBUG=false (or no, off) turned debugging on: any value but "" and "0" did"""
    from symcell import pipeline
    for value, on in (("1", True), ("yes", True), ("0", False), ("", False), ("false", False), ("No", False),
                      (" off ", False)):
        monkeypatch.setenv("SYMCELL_DEBUG", value)
        assert pipeline.debugging() is on, value


def test_a_nodes_hash_is_computed_once_not_from_its_operands_each_time():
    """(a node's hash hashed its operands anew on every call: a step whose values each use the one before a few
    times, as a highway layer's h * t + h * (1 - t), took time exponential in its depth: define 60 s at 10
    layers, 4x more a layer)"""
    import sys

    from symcell.ir import Node
    n = Node("input", (), 3, "x", "x")
    for _ in range(16):
        n = Node("pw", (n, n), 3, "add", "x + x")
    calls = []

    def count(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "__hash__":
            calls.append(1)
    sys.setprofile(count)
    try:
        hash(n)
    finally:
        sys.setprofile(None)
    assert len(calls) <= 1   # (2^17 - 1 before)

    from symcell import sigmoid, tanh

    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"A": ("H", "H"), "B": ("H", "H")})
    def Highway(x, h, A, B):
        h = h + x
        for _ in range(20):
            t = sigmoid(B @ h)
            h = tanh(A @ h) * t + h * (1 - t)
        return h
    torch.testing.assert_close(Highway(H=3, backend="reference")(torch.zeros(2, 1, 3))[0], torch.zeros(2, 1, 3))


def test_equal_steps_built_apart_compare_in_time_linear_in_their_depth():
    """(the dataclass's equality compared the operands as trees: a helper called twice on the same values made two
    equal graphs, which took time exponential in their depth to compare)"""
    from symcell.ir import Node

    def chain(depth):
        n = Node("input", (), 3, "x", "x")
        for _ in range(depth):
            n = Node("pw", (n, n), 3, "add", "x + x")
        return n
    a, b = chain(200), chain(200)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != chain(199) and Node("pw", (a, a), 3, "mul") != Node("pw", (b, b), 3, "add")


def test_a_step_too_deep_to_process_says_so():
    """(an ODE solver unrolled 600 times in one step met Python's recursion limit: a RecursionError hundreds of
    frames deep, naming nothing)"""
    from symcell import tanh

    def euler(x, h, U):
        for _ in range(steps):
            h = h + 0.1 * (tanh(U @ h + x) - h)
        return h
    for steps in (600, 3000):   # (met when the cell is made, or when it is defined)
        with pytest.raises(ValueError, match=r"processing the step of euler met Python's recursion limit: most "
                                             r"likely its chain of operations is too deep .* unroll fewer steps"):
            cell = symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"U": ("H", "H")})(euler)
            cell(H=3, backend="reference")(torch.randn(2, 1, 3))
