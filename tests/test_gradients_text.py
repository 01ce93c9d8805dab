"""gradients() shows the schedule and the derived backward equations a reader can check by hand."""
import re

import pytest

import symcell
from symcell import cat, elu, sigmoid, split, tanh


@symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                params={"W": ("3*H", "H+I"), "b": ("3*H",)})
def LLTM(x, h, c, W, b):
    i, o, z = split(W @ cat(h, x) + b, 3)
    c = c + sigmoid(i) * elu(z)
    h = tanh(c) * sigmoid(o)
    return h, c


def test_lltm_gradients_text():
    text = LLTM.gradients()
    lines = [line.strip() for line in text.splitlines()]
    # forward: W @ cat(h, x) is one matmul of two column blocks, accumulated into one buffer
    assert "W_hx = h @ W[:, 0:H].T + x @ W[:, H:H+I].T" in lines
    assert "c_new = c + elu(W_hx_2 + b_2)*sigmoid(W_hx_0 + b_0)" in lines
    # backward: the transposed matmuls, the weight gradients deferred to one GEMM, the bias summed over the batch
    assert "d_h += d_W_hx @ W[:, 0:H]" in lines
    assert "d_x += d_W_hx @ W[:, H:H+I]      (over all T*B rows in one GEMM after the loop)" in lines
    assert "d_W[:, 0:H] += d_W_hx.T @ h      (summed over all steps in one GEMM after the loop)" in lines
    assert "d_W[:, H:H+I] += d_W_hx.T @ x      (summed over all steps in one GEMM after the loop)" in lines
    assert any(line.startswith("d_b[0:H] += ") and line.endswith("(summed over the batch)") for line in lines)
    # the carry: dc_prev = dc_new + tanh'(c_new) * o * dh_new, one common subexpression (sympy's CSE numbers
    # them; the tests do not pin the numbers)
    assert any(re.fullmatch(r"d_c \+= _c\d+", line) for line in lines)
    # sigmoid' is written through sigmoid itself (s*(1-s)) and elu' through its own rule
    (s,) = [m.group(1) for line in lines for m in [re.fullmatch(r"(_c\d+) = sigmoid\(W_hx_0 \+ b_0\)", line)] if m]
    assert any(re.fullmatch(rf"_c\d+ = -_c\d+\*_c\d+\*\({s} - 1\)", line) for line in lines)
    assert "elu_grad(" in text
    assert "exp(-" not in text


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"U": ("H", "I"), "V": ("H", "H")})
def Hoisted(x, h, U, V):
    return tanh(U @ x) * sigmoid(V @ h)


def test_a_matmul_on_inputs_alone_is_hoisted_before_the_loop():
    lines = [line.strip() for line in Hoisted.gradients().splitlines()]
    before = lines.index("forward, before the loop (depends on no state: all T*B rows at once):")
    assert lines[before + 1] == "U_x = x @ U.T"
    assert "d_U += d_U_x.T @ x      (over all T*B rows)" in lines


def test_gradients_on_the_class_and_on_an_instance_agree():
    assert LLTM.gradients() == LLTM(I=2, H=3).gradients()


def test_infinities_read_as_written():
    """an infinity the user wrote printed as sympy's oo"""
    @symcell.define(inputs={"x": "H"}, state={"h": "H"})
    def Capped(x, h):
        return tanh(x + h) + symcell.minimum(h, float("inf")) + symcell.maximum(x, -float("inf"))
    text = Capped.gradients()
    assert "minimum(h, inf)" in text and "maximum(x, -inf)" in text and "oo" not in text


def test_blocks_of_a_split_parameter_are_named_in_the_text():
    """split(U, 2)'s blocks appeared as U_0 and U_1 with nothing saying what they were (and, beside a parameter of
    the user's named W_0, a block of W as W_0_1)"""
    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("2*H", "H"), "W_0": ("H", "H")})
    def Clash(x, h, W, W_0):
        a, b = split(W, 2)
        return tanh(a @ h + x) + b @ sigmoid(h) + W_0 @ tanh(h)
    lines = [line.strip() for line in Clash.gradients().splitlines()]
    at = lines.index("blocks of rows (a 3-d parameter's first two dimensions as one):")
    assert lines[at + 1:at + 3] == ["W_0_1 = W[0:H]", "W_1 = W[H:2*H]"]


def test_a_long_forward_region_names_its_common_subexpressions():
    """the forward printed each output whole: an sLSTM's h_new was one line of 1006 characters (the backward
    already named its shared terms _c0, ...)"""
    from symcell.cells import SLSTM
    lines = SLSTM(3, 4, 2).gradients().splitlines()
    forward = lines[:next(k for k, line in enumerate(lines) if "backward, each step" in line)]
    assert any(line.strip().startswith("_f0 = ") for line in forward)
    assert max(len(line) for line in forward) < 200
    assert "c_new = c + elu(W_hx_2 + b_2)*sigmoid(W_hx_0 + b_0)" in [line.strip() for line in LLTM.gradients().splitlines()]


def test_constants_cannot_be_read_as_a_variable_of_the_cell():
    """gradients() printed pi and E as sympy spells them, beside a parameter named pi: sqrt(pi) with two meanings; a
    state named inf printed as the constant. pi and e print as math's; inf and nan name no variable"""
    import sympy

    from symcell.printing import MathPrinter
    assert MathPrinter().doprint(sympy.pi * sympy.Symbol("pi") + sympy.E) == "math.pi*pi + math.e"
    for name in ("inf", "nan"):
        step = eval(f"lambda x, {name}: symcell.tanh(x + {name})", {"symcell": symcell})
        with pytest.raises(ValueError, match=rf"the name '{name}' is reserved for generated code"):
            symcell.define(inputs={"x": "H"}, state={name: "H"})(step)
