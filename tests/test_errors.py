"""Every error of the core issue names the variable and the sizes."""
import math

import numpy as np
import pytest
import torch

import symcell
from symcell import cat, split, tanh


def test_torch_function_on_a_symbol():
    with pytest.raises(TypeError, match=r"torch\.sigmoid was called on the symbolic tensor 'h'"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={})
        def Bad(x, h):
            return torch.sigmoid(h)


def test_matmul_size_mismatch_names_the_matrix_and_the_vector():
    with pytest.raises(ValueError, match=r"W @ cat\(h, x\): W has shape \(H, H\) but cat\(h, x\) has size H\+I"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "H")})
        def Bad(x, h, W):
            return tanh(W @ cat(h, x))


def test_pointwise_size_mismatch():
    with pytest.raises(ValueError, match=r"h \+ x.*h has size H but x has size I"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"})
        def Bad(x, h):
            return h + x


def test_undeclared_name():
    with pytest.raises(TypeError, match=r"argument\(s\) \['U'\] are not declared"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
        def Bad(x, h, W, U):
            return W @ x


def test_declared_name_missing_from_the_function():
    with pytest.raises(TypeError, match=r"declared name\(s\) \['b'\] are not arguments"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I"), "b": ("H",)})
        def Bad(x, h, W):
            return W @ x


def test_wrong_number_of_returned_states():
    with pytest.raises(ValueError, match=r"returned 1 value\(s\) but 2 state\(s\) are declared \(h, c\)"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H", "c": "H"})
        def Bad(x, h, c):
            return h + x


def test_states_returned_as_a_dict_are_named_as_the_wrong_type():
    with pytest.raises(TypeError, match=r"returned a dict; return the new states in their declared order \(h, c\), "
                                        r"as a tuple"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H", "c": "H"})
        def Bad(x, h, c):
            return {"c": c, "h": h + x}


def test_returned_state_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"new state 'h' is .* of size 2\*H, but state 'h' is declared with size H"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"})
        def Bad(x, h):
            return cat(h, x)


def test_matrix_used_elementwise_and_vector_used_as_matrix():
    with pytest.raises(TypeError, match=r"W is a 2-d parameter \(H, H\); it can only be used as `W @ v`"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")})
        def Bad1(x, h, W):
            return W * h
    with pytest.raises(TypeError, match=r"left operand of @ must be a 2-d parameter"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"b": ("H",)})
        def Bad2(x, h, b):
            return b @ h


def test_a_torch_tensor_or_the_row_vector_habit_in_a_step_says_what_to_write():
    """a global tensor in a step, or x @ W as torch multiplies rows, said only that operands must be symbolic (the
    matmul's with '...' for the operand)"""
    G, GM = torch.ones(4), torch.ones(4, 4)
    define = symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")})
    for step, message in ((lambda x, h, W: G + h, r"got Tensor\); a tensor the step reads is a parameter: declare it "
                                                  r"in params= \(or pass it as an input\)$"),
                          (lambda x, h, W: GM @ h, r"^a tensor of shape \(4, 4\) @ h: the left operand of @ must be a "
                                                   r"2-d parameter \(a tensor the step reads is a parameter"),
                          (lambda x, h, W: x @ W, r"^x @ W: write W @ x \(the matrix on the left")):
        with pytest.raises(TypeError, match=message):
            define(step)


def test_python_control_flow_on_a_symbol():
    with pytest.raises(TypeError, match=r"h is symbolic"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"})
        def Bad(x, h):
            return h if h else x


def test_unsupported_exponent_and_indexing():
    with pytest.raises(TypeError, match=r"h \*\* x: a symbolic exponent is not supported"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"})
        def Bad1(x, h):
            return h ** x
    with pytest.raises(TypeError, match=r"h\[\.\.\.\]: indexing is not supported; use symcell.split"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"})
        def Bad2(x, h):
            return h[0]
    with pytest.raises(TypeError, match=r"^h is one symbolic vector, not a sequence to iterate: Python's sum\(\), "
                                        r"list\(\) and loops over it are not supported; write symcell.sum"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"})
        def Bad3(x, h):   # (said "h[...]: indexing is not supported": Python's sum iterates)
            return sum(h) + x


def test_size_strings_read_I_and_E_as_dimensions():
    @symcell.define(inputs={"x": "E"}, state={"h": "I"}, params={"W": ("I", "E")})
    def Ok(x, h, W):
        return tanh(W @ x) + h
    cell = Ok(E=3, I=2)
    assert cell.W.shape == (2, 3)


def test_size_strings_read_the_parsers_own_names_as_dimensions():
    """the parser writes a number as Integer(2): a dimension named Integer made it say that a 'Symbol' object is
    not callable"""
    @symcell.define(inputs={"x": "Integer"}, state={"h": "Symbol"}, params={"W": ("Symbol", "2*Integer")})
    def Ok(x, h, W):
        return tanh(W @ cat(x, x)) + h
    cell = Ok(Integer=3, Symbol=2)
    assert cell.W.shape == (2, 6)


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
def Simple(x, h, W):
    a, b = split(h, 2)
    return cat(b, a) + W @ x


def test_instantiation_errors():
    with pytest.raises(TypeError, match=r"missing the dimension\(s\) \['I'\]"):
        Simple(H=4)
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['K'\]"):
        Simple(I=3, H=4, K=2)
    with pytest.raises(ValueError, match=r"split\(h, 2\)\[[01]\]: size H/2 is 3/2 for H=3, I=2; it must be a positive integer"):
        Simple(I=2, H=3)
    with pytest.raises(ValueError, match=r"dimension H must be a positive int, got 0"):
        Simple(I=2, H=0)
    for v in (3.0, "3", True):   # nn's TypeError (a ValueError before)
        with pytest.raises(TypeError, match=r"dimension H must be a positive int, got .* \((float|str|bool)\)"):
            Simple(I=2, H=v)
    import numpy as np
    assert Simple(I=np.int64(2), H=np.int32(4)).dims == {"I": 2, "H": 4}
    with pytest.raises(ValueError, match=r"backend='cuda-magic' is not available"):
        Simple(I=2, H=4, backend="cuda-magic")


def test_call_time_errors_name_the_argument_and_sizes():
    cell = Simple(I=3, H=4)
    with pytest.raises(ValueError, match=r"input 'x' has 5 features \(shape \(2, 1, 5\)\) but the cell expects 3"):
        cell(torch.randn(2, 1, 5))
    with pytest.raises(ValueError, match=r"input 'x' must be 3-d \(T, B, features\) \(a sequence.*\), got shape \(2, 3, 1, 1\)"):
        cell(torch.randn(2, 3, 1, 1))   # (2-d is one step, as nn's cells take it)
    with pytest.raises(ValueError, match=r"a step's input must be 2-d \(B, features\) or 1-d \(features,\) "
                                         r"unbatched, got shape \(\)"):
        cell.step(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"state 'h' has shape \(3, 4\) but expected \(B, 4\) = \(2, 4\)"):
        cell(torch.randn(5, 2, 3), (torch.zeros(3, 4),))
    with pytest.raises(TypeError, match=r"input 'x' has dtype torch.float64 but the parameters have dtype "
                                        r"torch.float32"):
        cell(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"state 'h' has dtype torch.float64"):
        cell(torch.randn(5, 2, 3), (torch.zeros(2, 4, dtype=torch.float64),))
    with pytest.raises(ValueError, match=r"input 'x' is on meta but the parameters are on cpu"):
        cell(torch.randn(5, 2, 3, device="meta"))
    with pytest.raises(ValueError, match=r"state must be a tuple of 1 tensor\(s\) \(h\), got 2"):
        cell(torch.randn(5, 2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(TypeError, match=r"input 'x' has dtype torch.int64; a floating dtype is needed"):
        cell(torch.ones(5, 2, 3, dtype=torch.long))


def _readout(outputs):
    def R(x, h, W):
        return tanh(W @ x + h), h * 2
    return symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")}, outputs=outputs)(R)


@pytest.mark.parametrize("outputs,error,message", [
    ({"y": "2*H"}, ValueError, r"the output 'y' is \(h \* 2\) of size H, but output 'y' is declared with size 2\*H"),
    ({"y": None}, ValueError, r"outputs: 'y' is not a state, so it needs a size, e.g. outputs=\{'y': 'H'\}"),
    ({"W": "H"}, ValueError, r"outputs: 'W' is already declared as an input or parameter"),
    ({"h": "2*H", "y": "H"}, ValueError, r"outputs: 'h' is a state of size H, not '2\*H'"),
    (["y"], ValueError, r"outputs \['y'\] must name declared states \(\['h'\]\); an output that is not a state is "
                        r"declared with its size, outputs=\{'y': 'H'\}"),
    (3, TypeError, r"outputs must be a state's name, a list of them, or a dict of name -> size, got int"),
    # (ys would hold h twice, and the backward could not tell its two cotangents apart: it kept one, twice)
    (["h", "h"], ValueError, r"outputs \['h', 'h'\] names 'h' more than once"),
])
def test_outputs_that_are_not_states_are_checked(outputs, error, message):
    with pytest.raises(error, match=message):
        _readout(outputs)


def test_an_output_that_is_not_a_state_must_be_returned_after_the_states():
    with pytest.raises(ValueError, match=r"returned 1 value\(s\) but 1 state\(s\) are declared \(h\), then 1 "
                                         r"output\(s\) \(y\)"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")}, outputs={"y": "H"})
        def R(x, h, W):
            return tanh(W @ x + h)


def test_an_output_that_is_not_a_state_is_in_ys_and_not_in_the_state():
    R = _readout({"y": "H", "h": None})
    cell = R(I=3, H=4, backend="reference")
    (y, h_seq), (h,) = cell(torch.randn(5, 2, 3))
    assert y.shape == h_seq.shape == (5, 2, 4) and h.shape == (2, 4)
    torch.testing.assert_close(y[1:], 2 * h_seq[:-1])   # y_t = 2 h_{t-1}
    assert list(cell.state_sizes) == ["h"] and len(cell.step(torch.randn(2, 3))) == 1
    with pytest.raises(ValueError, match=r"state must be a tuple of 1 tensor\(s\) \(h\), got 2"):
        cell(torch.randn(5, 2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))


@pytest.mark.parametrize("params,step,error,message", [
    ({"R": ("G", "H", "H")}, lambda x, h, R: R @ h, ValueError,
     r"params 'R': the number of blocks of a 3-d parameter must be a number .*got G"),
    ({"R": (2, "H", "H")}, lambda x, h, R: R @ h, ValueError,
     r"R @ h: R has 2 blocks of shape \(H, H\), so it takes a vector of size 2\*H, but h has size H"),
    ({"R": (2, "H", "H/2")}, lambda x, h, R: R + h, TypeError,
     r"R is a 3-d parameter \(2, H, H/2\); it can only be used as `R @ v`, a block-diagonal matmul"),
    ({"R": (2, "H", "H/2")}, lambda x, h, R: split(R, 2)[0] @ h, TypeError,
     r"split\(R\): R is a 3-d parameter; `R @ v` applies its blocks already"),
    ({"W": ("2*H", "H")}, lambda x, h, W: split(W, [1, 2])[0] @ h, ValueError,
     r"split\(W, \[1, 2\]\): the sizes add up to 3 but W has size 2\*H"),
    ({"W": ("2*H", "H")}, lambda x, h, W: split(W, 2)[0] @ x, ValueError,
     r"W_0 @ x: W_0 \(rows 0:H of W, from split\) has shape \(H, H\) but x has size I"),
    ({"W": ("2*H", "H", "H", "H")}, lambda x, h, W: h, ValueError, r"params 'W': shape must be 1-d .*, 2-d .* or 3-d"),
])
def test_blocks_and_row_splits_are_checked(params, step, error, message):
    names = ", ".join(params)
    fn = eval(f"lambda x, h, {names}: step(x, h, {names})", {"step": step})  # noqa: S307 - named parameters
    fn.__name__ = "Cell"
    with pytest.raises(error, match=message):
        symcell.define(inputs={"x": "I"}, state={"h": "H"}, params=params)(fn)


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I + H"), "b": ("H",)})
def Affine(x, h, W, b):
    return tanh(W @ cat(x, h) + b)


@pytest.mark.parametrize("backend", [b for b in ("reference", "cpp")
                                     if symcell.backends.get(b).usable(torch.device("cpu"))])
def test_the_parameters_a_call_runs_with_are_checked_whatever_the_backend(backend):
    """torch.func.functional_call (or a reassigned attribute) hands the scan parameters the module never checked:
    the reference backend ran a W with a column too many, its last one ignored"""
    cell = Affine(I=2, H=3, backend=backend).double()
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    params = dict(cell.named_parameters())
    for name, bad, error, match in [
            ("W", torch.zeros(3, 6, dtype=torch.float64), ValueError,
             r"parameter 'W' has shape \(3, 6\), but the cell's dimensions \(I=2, H=3\) make it \(3, 5\)"),
            ("b", torch.zeros((), dtype=torch.float64), ValueError, r"parameter 'b' has shape \(\), .* make it \(3,\)"),
            ("b", torch.zeros(3, dtype=torch.int64), TypeError, r"parameter 'b' has dtype torch.int64"),
            ("W", torch.zeros(3, 5), TypeError, r"parameter 'b' has dtype torch.float64 but parameter 'W' has "
                                                r"torch.float32")]:
        with pytest.raises(error, match=match):
            torch.func.functional_call(cell, {**params, name: bad}, (x,))


def test_names_a_module_or_its_constructor_already_uses_are_refused_at_definition():
    with pytest.raises(ValueError, match=r"a parameter may not be named 'forward': it becomes the module's attribute"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"forward": ("H", "I")})
        def Shadows(x, h, forward):
            return tanh(forward @ x + h)
    with pytest.raises(ValueError, match=r"a dimension may not be named 'dtype': a cell or symcell.RNN takes dtype= "
                                         r"for itself"):
        @symcell.define(inputs={"x": "dtype"}, state={"h": "H"}, params={"W": ("H", "dtype")})
        def Dims(x, h, W):
            return tanh(W @ x + h)


def test_names_the_cpp_backend_cannot_print_are_refused_at_definition():
    # (scalar_t, int64_t: names the generated code uses itself; they passed, and the build failed at the first call)
    for decl, step in (({"inputs": {"new": "H"}, "state": {"h": "H"}}, lambda new, h: new + h),
                       ({"inputs": {"x": "H"}, "state": {"int": "H"}}, lambda x, int: x + int),
                       ({"inputs": {"x": "H"}, "state": {"scalar_t": "H"}}, lambda x, scalar_t: x + scalar_t),
                       ({"inputs": {"int64_t": "H"}, "state": {"h": "H"}}, lambda int64_t, h: int64_t + h)):
        with pytest.raises(ValueError, match=r"is a C\+\+ keyword or macro, or a name the cpp backend's generated "
                                             r"code uses itself"):
            symcell.define(**decl)(step)


def test_equality_of_symbolic_values_is_refused_not_taken_as_identity():
    """x == h was Python's identity: the bool False, so `1.0 * (x == h)` traced as the constant 0"""
    for op in ("==", "!="):
        with pytest.raises(TypeError, match=r"x == or != \.\.\.: equality of symbolic values is not supported"):
            @symcell.define(inputs={"x": "H"}, state={"h": "H"})
            def Ties(x, h):
                return h + 1.0 * eval(f"x {op} h")


def test_lengths_must_be_integers():
    cell = Affine(I=2, H=3, backend="reference")
    x = torch.randn(4, 3, 2)
    for bad, what in (([4.0, 2.5, 1.9], "float 4.0"), ([True, False, True], "bool True"), (3, None)):
        with pytest.raises(TypeError, match=rf"lengths must be {'integers, got ' + what if what else 'a sequence'}"):
            cell(x, lengths=bad)
    # (a range is a sequence of ints, as pack_padded_sequence takes it)
    assert torch.equal(cell(x, lengths=range(4, 1, -1))[0], cell(x, lengths=[4, 3, 2])[0])


def test_a_star_import_leaves_pythons_abs_and_sum_to_python_values():
    scope = {}
    exec("from symcell import *\nvalues = abs(-3), sum([1, 2, 3]), sum([0.5], 1)", scope)
    assert scope["values"] == (3, 6, 1.5)


def test_a_prebuilt_class_whose_arguments_choose_its_equations_says_so():
    """SLSTM's cell depends on num_heads: the class has none to explain or stack (it raised AttributeError on
    None, and symcell.RNN said it was not made with symcell.define)"""
    from symcell.cells import SLSTM, slstm_cell
    for call in (lambda: SLSTM.gradients(), lambda: symcell.RNN(SLSTM, I=3, H=4)):
        with pytest.raises(TypeError, match=r"SLSTM's equations depend on its constructor's arguments.*"
                                            r"symcell.cells.slstm_cell\(num_heads\)"):
            call()
    assert SLSTM(3, 4).gradients() == slstm_cell(1).gradients()


def test_scan_names_what_it_takes():
    """symcell.scan of a class, an RNN or an nn module: a TypeError saying what scan takes (was an AttributeError
    on '_binding'); reverse must be a bool (reverse="yes" ran reversed)"""
    cell = Affine(I=2, H=3, backend="reference")
    xs = torch.randn(4, 2, 2)
    for bad in (Affine, torch.nn.GRU(2, 3), symcell.RNN(Affine, I=2, H=3, backend="reference")):
        with pytest.raises(TypeError, match="symcell.scan: cell must be an instance of a cell made with symcell"):
            symcell.scan(bad, xs)
    for bad in ("yes", None, 1):
        with pytest.raises(TypeError, match="symcell.scan: reverse must be a bool"):
            symcell.scan(cell, xs, reverse=bad)
    torch.testing.assert_close(symcell.scan(cell, xs, reverse=True)[0], cell(xs.flip(0))[0].flip(0))


def _defines(body, **decl):
    body.__name__ = "Cell"
    return symcell.define(**(decl or dict(inputs={"x": "H"}, state={"h": "H"})))(body)


@pytest.mark.parametrize("body, error, message", [
    (lambda x, h: x // 2 + h, TypeError, r"x: //, %, round, floor, ceil and trunc of symbolic values are not"),
    (lambda x, h: x % 2 + h, TypeError, r"x: //, %, round"),
    (lambda x, h: round(x) + h, TypeError, r"x: //, %, round"),
    (lambda x, h: ((x > 0) & x) + h, TypeError, r"& combines conditions \(comparisons such as h > 0\), got x; "
                                                  r"for numbers write \* \(and\), maximum \(or\)"),
    (lambda x, h: (1 | (x > 0)) + h, TypeError, r"\| combines conditions .*got 1"),
    (lambda x, h: ~x + h, TypeError, r"~x: ~ negates a condition"),
    # (these said "object of type 'Sym' has no len()", numpy's "does not support ufuncs", and showed Sym(...))
    (lambda x, h: split(h, len(h)) + x, TypeError, r"len\(h\): h is one symbolic vector a row, of size H.*symcell.split"),
    (lambda x, h: np.tanh(h) + x, TypeError, r"numpy.tanh was called on the symbolic tensor 'h'.*Use symcell's: sigmoid, "
                                              r"tanh"),
    (lambda x, h: symcell.sigmoid(h) ** (2 * x), TypeError, r"^sigmoid\(h\) \*\* \(2 \* x\): a symbolic exponent is "
                                                           r"not supported; .* write exp\(\(2 \* x\) \* log\(sigmoid\(h\)\)\)$"),
    (lambda x, h: (h + x) ** torch.tensor(2.0), TypeError, r"^\(h \+ x\) \*\* tensor\(2.\): .*write float\(t\)"),
    (lambda x, h: split(h, [1, 2])[0] + x, ValueError, r"^split\(h, \[1, 2\]\): the sizes add up to 3 but h has size H$"),
    (lambda x, h: split(h, 0)[0] + x, ValueError, r"^split\(h, 0\): the number of chunks must be positive$"),
    (lambda x, h: np.ones(3) * h, TypeError, r"^cannot apply '\*' to array\(\[1\., 1\., 1\.\]\) and h \(size H\)"),
    (lambda x, h: split(h + x, 2)[0] + split(h + x, 3)[0], ValueError, r"split\(\(h \+ x\), 2\)\[0\] has size H/2 but "
                                                                     r"split\(\(h \+ x\), 3\)\[0\] has size H/3"),
])
def test_operators_python_has_but_a_cell_has_not_say_so(body, error, message):
    """(they gave Python's "unsupported operand type(s)", naming neither the value nor what to write)"""
    with pytest.raises(error, match=message):
        _defines(body)


def test_numpy_numbers_and_0d_arrays_on_either_side_are_numbers():
    """(np.array(0.5) * h worked, through numpy's operator; h * np.array(0.5) was refused)"""
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    want = _defines(lambda x, h: 0.5 * h + x - 2.0 / (1 + symcell.clamp(h, -0.5, 0.5) ** 2))(
        H=3, backend="reference").double()(x)[0]
    for body in (lambda x, h: h * np.array(0.5) + x - np.array(2.0) / (
                     1 + symcell.clamp(h, np.array(-0.5), np.array(0.5)) ** np.array(2)),
                 lambda x, h: np.array(0.5) * h + x - np.float32(2.0) / (
                     np.int64(1) + symcell.clamp(h, np.float64(-0.5), 0.5) ** np.int64(2))):
        torch.testing.assert_close(_defines(body)(H=3, backend="reference").double()(x)[0], want, rtol=0, atol=0)


def test_conditions_combine_with_and_or_not_as_torch_bool_tensors_do():
    import numpy as np

    cell = _defines(lambda x, h: symcell.where((x > 0) & (h > 0), h ** np.int64(2), x * np.float32(0.5))
                    + symcell.where((x > 0) | ~(h > 0.1), 1.0, -1.0) * 0.1)(H=3, backend="reference").double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    ys, _ = cell(x)
    h, want = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(5):
        one = torch.ones_like(h)
        h = (torch.where((x[t] > 0) & (h > 0), h ** 2, x[t] * 0.5)
             + torch.where((x[t] > 0) | ~(h > 0.1), one, -one) * 0.1)
        want.append(h)
    torch.testing.assert_close(ys, torch.stack(want), rtol=1e-12, atol=0)


@pytest.mark.parametrize("decl, body, message", [
    (dict(inputs={"x": "H/0"}, state={"h": "H"}), lambda x, h: h, r"inputs 'x': size 'H/0' divides by zero"),
    (dict(inputs={"x": "lambda"}, state={"h": "H"}), lambda x, h: h,
     r"size 'lambda' names the dimension 'lambda', a Python keyword"),
    (dict(inputs={"x": "self"}, state={"h": "H"}), lambda x, h: h, r"a dimension may not be named 'self'"),
    (dict(inputs={"x": "H"}, state={"h": "H"}), lambda x, h: cat(*reversed(split(h, ["K", "H-K"]))) + x,
     r"the step's sizes use the dimension\(s\) \['K'\], which no input, state or parameter declares"),
    (dict(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")}), lambda x, h, W: W,
     r"the new state 'h' must be a symbolic vector, got the 2-d parameter W \(H, H\)"),
    (dict(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")}), lambda x, h, W: cat(W, h),
     r"cat: every part must be a symbolic vector, got the 2-d parameter W \(H, H\)"),
])
def test_declarations_no_binding_could_satisfy_are_refused_at_definition(decl, body, message):
    """(each was accepted, then failed at every instantiation, or said "size zoo", "invalid syntax", "got multiple
    values for argument 'self'", "<symcell.frontend.Matrix object at 0x...>")"""
    with pytest.raises((ValueError, TypeError), match=message):
        _defines(body, **decl)


def test_warnings_name_the_line_of_the_callers_code(monkeypatch):
    """warnings.warn's fixed stacklevels named symcell/cache.py (a cache folder is chosen some calls deep) and
    torch's Module.__call__ (backend='auto' falling back as a module runs): each names the caller's line now"""
    import warnings

    from symcell import cache, module, registry
    from symcell.cache import BuildError

    def where(call):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        return [(w.filename, str(w.message)[:20]) for w in caught]

    assert where(lambda: symcell.cells.LSTM(3, 4, dropout=0.5)) == [(__file__, "LSTM: dropout=0.5 ac")]

    monkeypatch.setattr(cache, "_roots", {})
    monkeypatch.setenv("SYMCELL_CACHE_DIR", "/proc/symcell-cache")   # not writable: the temporary fallback
    assert where(cache.cache_dir) == [(__file__, "symcell: the cache d")]

    cell = symcell.cells.LSTMCell(3, 4, backend="auto")
    built = registry.kernel_for

    def no_cpp(key):
        if key != cell._binding.keys["reference"]:
            raise BuildError("no compiler here")
        return built(key)
    monkeypatch.setattr(registry, "kernel_for", no_cpp)
    monkeypatch.setattr(module, "_fallback_warned", set())
    monkeypatch.setattr(module, "_unbuildable", set())
    assert where(lambda: cell(torch.randn(2, 3))) == [(__file__, "symcell: the cpp bac")]
    # a failed build is remembered: later calls go to the reference backend at once (each built it again, 25 s)
    tried = []
    monkeypatch.setattr(registry, "kernel_for", lambda key: tried.append(key) or no_cpp(key))
    assert where(lambda: cell(torch.randn(2, 3))) == [] and tried and set(tried) == {cell._binding.keys["reference"]}


def test_slstm_heads_as_nn_sizes_and_an_uneven_split_says_what_divides():
    """num_heads=np.int64(2) was refused (nn takes numpy's integers as sizes); slstm_cell(4) at H=6 said only that
    a block's size H/4 is 3/2"""
    import numpy as np

    from symcell.cells import SLSTM, slstm_cell
    assert SLSTM(3, 4, np.int64(2)).num_heads == 2 and slstm_cell(np.int64(2)) is slstm_cell(2)
    for bad, error in ((True, TypeError), (0, ValueError), (-1, ValueError), (2.0, TypeError), ("2", TypeError)):
        with pytest.raises(error, match=r"SLSTM: num_heads must be a positive int, got"):
            slstm_cell(bad)
    with pytest.raises(ValueError, match=r"hidden_size \(6\) must be a multiple of num_heads \(4\)"):
        SLSTM(3, np.int64(6), 4)
    with pytest.raises(ValueError, match=r"SLSTM: hidden_size \(6\) must be a multiple of num_heads \(4\)"):
        SLSTM(3, 6, 4)
    with pytest.raises(ValueError, match=r"size H/4 is 3/2 for H=6, I=3; it must be a positive integer "
                                         r"\(H a multiple of 4\)"):
        symcell.RNN(slstm_cell(4), I=3, H=6)


@pytest.mark.cpp
def test_rnn_texts_of_a_cell_without_parameters_and_of_the_class():
    """symcell.RNN(...).source() of a cell with no parameters raised a bare StopIteration (it took the device of
    the first parameter); symcell.RNN.gradients() on the class, an AttributeError"""
    @symcell.define(inputs={"x": "H"}, state={"h": "H"})
    def NoParam(x, h):
        return tanh(x + 0.5 * h)
    stack = symcell.RNN(NoParam, H=4, num_layers=2)
    assert stack.source() == NoParam(H=4).source()
    assert "tanh" in stack.gradients()
    with pytest.raises(TypeError, match=r"RNN stacks the cell it is given: call gradients\(\) on an instance"):
        symcell.RNN.gradients()


def test_dimensions_named_as_symcell_rnn_arguments_are_refused():
    """a dimension named dropout, num_layers, bidirectional or cell passed define, and symcell.RNN then took the
    value as its own argument (dropout must be in [0, 1]) or said the dimension was missing"""
    for dim in ("dropout", "num_layers", "bidirectional", "cell"):
        with pytest.raises(ValueError, match=rf"a dimension may not be named '{dim}': a cell or symcell.RNN takes"):
            symcell.define(inputs={"x": dim}, state={"h": "H"}, params={"W": ("H", dim)})(
                lambda x, h, W: tanh(W @ x + h))


def test_a_cells_own_reset_parameters_starts_spec_initial_as_symcell_rnn_does():
    """spec.initial (a gain's 1) was applied by symcell.RNN stacking a cell, not by the cell itself"""
    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I"), "gain": ("H",)})
    def Gained(x, h, W, gain):
        return tanh(gain * (W @ x) + h)
    Gained.spec.initial["gain"] = 1.0
    assert torch.equal(Gained(I=3, H=4, backend="reference").gain, torch.ones(4))
    assert torch.equal(symcell.RNN(Gained, I=3, H=4, backend="reference").gain_l0, torch.ones(4))


def test_tensor_methods_and_math_on_symbols_say_what_to_write():
    """x.chunk(2) said "'Sym' object has no attribute 'chunk'", W.T "'Matrix' object has no attribute 'T'", and
    math.log(x) only that x was symbolic"""
    import math
    for body, error, message in (
            (lambda x, h, W: x.chunk(2)[0], AttributeError, r"x is a symbolic value of the cell, without tensor "
                                                            r"methods such as \.chunk: write split\(v, k\)"),
            (lambda x, h, W: W.T @ x, AttributeError, r"W is a symbolic value .* \.T: write W @ v"),
            (lambda x, h, W: math.log(x), TypeError, r"math's functions and float\(\) need a number; write symcell's "
                                                     r"\(symcell.log")):
        with pytest.raises(error, match=message):
            symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")})(body)


def test_spec_initial_names_parameters_and_numbers():
    """a misspelt name in spec.initial was a bare KeyError from a cell's reset_parameters, and ignored by
    symcell.RNN"""
    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I"), "gain": ("H",)})
    def Gain(x, h, W, gain):
        return tanh(gain * (W @ x) + h)
    Gain.spec.initial["gian"] = 1.0
    for make in (lambda: Gain(I=3, H=4, backend="reference"), lambda: symcell.RNN(Gain, I=3, H=4)):
        with pytest.raises(ValueError, match=r"Gain.spec.initial names 'gian', which is not a parameter of the cell "
                                             r"\(\['W', 'gain'\]\)"):
            make()
    Gain.spec.initial.clear()
    Gain.spec.initial["gain"] = "one"
    with pytest.raises(TypeError, match=r"Gain.spec.initial\['gain'\] must be a number, got 'one'"):
        Gain(I=3, H=4, backend="reference")


def test_a_wrong_number_of_states_is_the_error_nn_raises_too():
    """a plain ValueError, where nn.LSTM raises a RuntimeError and nn.LSTMCell given a bare tensor a TypeError"""
    from symcell.cells import LSTM, LSTMCell
    x, h = torch.randn(2, 2, 3), torch.zeros(1, 2, 4)
    for call in (lambda: LSTM(3, 4, backend="reference")(x, (h, h, h)),
                 lambda: LSTMCell(3, 4, backend="reference")(x[0], (h[0], h[0], h[0])),
                 lambda: LSTMCell(3, 4, backend="reference")(x[0], h[0])):
        for error in (RuntimeError, TypeError, ValueError):
            with pytest.raises(error, match=r"state must be (a tuple of )?2 tensor\(s\) \(h, c\), got [13]"):
                call()


def test_a_defined_cell_class_says_how_to_make_it():
    """help() on a class define made showed (*, spec=None, ..., **dims) and the step's docstring alone; its
    dimensions by position met Python's "takes 1 positional argument but 3 were given"; another cell's spec= was
    taken, and ran that cell's equations under this one's name"""
    import inspect
    assert str(inspect.signature(Simple)) == "(*, H, I, batch_first=False, backend='auto', device=None, dtype=None)"

    class Square(Simple):   # (a subclass with its own __init__ shows its own)
        def __init__(self, size, scale=1.0):
            super().__init__(I=size, H=size)
    assert str(inspect.signature(Square)) == "(size, scale=1.0)"
    assert ("A recurrent cell made by symcell.define: Simple(H=..., I=...) is a torch.nn.Module (symcell.Cell).\n"
            "Inputs: x (I). States: h (H). Outputs (ys): h. Parameters: W (H, I).") in Simple.__doc__
    with pytest.raises(TypeError, match=r"Simple takes its dimensions by name: Simple\(H=\.\.\., I=\.\.\.\), got 2 "
                                        r"by position"):
        Simple(2, 3)
    from symcell.cells import LLTM
    with pytest.raises(TypeError, match=r"Simple: spec= is for a Cell subclass that chooses its equations"):
        Simple(spec=LLTM.spec, I=2, H=4)


def test_a_cells_sizes_are_copies_and_functions_take_their_arguments_by_name():
    """cell.dims and state_sizes were the binding's own dicts: changed in place, the repr said H=7 with W still
    (4, 2), and a changed state size failed the next call inside a matmul"""
    cell = Simple(I=2, H=4, backend="reference")
    cell.dims["H"] = 7
    cell.state_sizes["h"] = 5
    cell.input_sizes["x"] = 9
    assert cell.dims == {"H": 4, "I": 2} and cell(torch.randn(3, 1, 2))[0].shape == (3, 1, 4)

    @symcell.define(inputs={"x": "H"}, state={"h": "H"})
    def Named(x, h):
        return symcell.maximum(a=x, b=h) + symcell.sigmoid(v=x)
    x, h = torch.randn(2, 1, 3), torch.randn(1, 3)
    want = torch.maximum(x[0], h) + torch.sigmoid(x[0])
    torch.testing.assert_close(Named(H=3, backend="reference")(x, h)[0][0], want)
    import inspect
    assert str(inspect.signature(symcell.maximum)) == "(a, b)" and str(inspect.signature(symcell.tanh)) == "(v)"


def test_a_missing_input_is_a_shape_error():
    """(a plain ValueError, where a missing state is a ShapeError, which nn-style code catches as a RuntimeError)"""
    @symcell.define(inputs={"x": "H", "u": "H"}, state={"h": "H"})
    def Two(x, u, h):
        return symcell.tanh(x + u) + 0.5 * h
    cell = Two(H=3, backend="reference")
    with pytest.raises(symcell.ShapeError, match=r"Two: expected 2 input\(s\) \(x, u\), got 1"):
        cell(torch.randn(4, 2, 3))
    with pytest.raises(RuntimeError, match=r"expected 2 input\(s\)"):
        cell.step(torch.randn(2, 3))


def test_a_step_may_take_the_parameters_it_does_not_name_as_keywords():
    """(def step(x, h, W, **P) was refused: "declared name(s) ['U0', 'U1'] are not arguments of the step function",
    though the trace calls it by keyword, as a step over a list of layers wants)"""
    params = {"W": ("H", "I"), **{f"U{k}": ("H", "H") for k in range(2)}}

    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params=params)
    def Layers(x, h, W, **P):
        for k in range(2):
            h = symcell.tanh(P[f"U{k}"] @ h + (W @ x if k == 0 else 0))
        return h
    cell = Layers(I=2, H=3, backend="reference")
    x = torch.randn(4, 1, 2)
    h, want = torch.zeros(1, 3), []
    for t in range(4):
        h = torch.tanh(h @ cell.U0.t() + x[t] @ cell.W.t())
        h = torch.tanh(h @ cell.U1.t())
        want.append(h)
    torch.testing.assert_close(cell(x)[0], torch.stack(want))


def test_dtensor_parameters_are_refused_saying_what_to_do():
    """(the reference backend ran the scan on DTensors and failed in its own bookkeeping: "Attempted to access the
    data pointer on an invalid python storage"; FSDP's fully_shard gathers plain tensors for each forward)"""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_module
    from torch.testing._internal.distributed.fake_pg import FakeStore
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=1)
    try:
        m = distribute_module(symcell.cells.GRU(3, 4, backend="reference"), init_device_mesh("cpu", (1,)))
        with pytest.raises(TypeError, match=r"GRU: parameter 'weight_ih_l0' is a DTensor .* fully_shard"):
            m(torch.randn(2, 1, 3))
    finally:
        dist.destroy_process_group()


@pytest.mark.cpp
def test_the_cpp_operators_size_message_names_where_t_and_b_come_from():
    """A saved-tensor hook that hands back a wrong x made the backward's message blame d_ys, whose sizes were right:
    T and B are the first sequence's (x), and the message now says so"""
    cell = symcell.cells.LSTM(3, 4, backend="cpp")
    x = torch.randn(5, 2, 3, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t[:4] if t.shape == x.shape else t):
        y, _ = cell(x)
    with pytest.raises(ValueError, match=r"d_ys\[0\] \(\w+\), with T and B from xs\[0\] \(x\), must have sizes "
                                         r"\[4, 2, 4\], got \[5, 2, 4\]"):
        y.sum().backward()


def test_a_numpy_array_or_nested_list_as_input_is_refused_as_not_a_tensor():
    """a cell's call and symcell.scan iterated a numpy array (or a nested list) as a tuple of inputs: "expected 1
    input(s) (x), got 5" for an array of shape (5, 3, 4)"""
    cell = symcell.cells.LLTM(4, 8, backend="reference")
    for call in (lambda: cell(np.zeros((5, 3, 4), np.float32)), lambda: symcell.scan(cell, np.zeros((5, 3, 4)))):
        with pytest.raises(TypeError, match=r"^LLTM: the input must be a tensor \(x\), got ndarray \(torch.from_numpy "
                                            r"makes one\)$"):
            call()
    with pytest.raises(TypeError, match=r"^LLTM: the input must be a tensor \(x\), got a list whose item 0 is of type "
                                        r"list$"):
        cell([[[1.0] * 4] * 3] * 5)
    with pytest.raises(TypeError, match=r"got a list whose item 1 is of type ndarray \(torch.from_numpy makes one\)$"):
        cell([torch.zeros(5, 3, 4), np.zeros(3)])
    with pytest.raises(symcell.errors.ShapeError, match=r"^LLTM: expected 1 input\(s\) \(x\), got 2$"):
        cell([torch.zeros(5, 3, 4)] * 2)


def test_a_cell_name_that_is_not_one_printable_line_is_refused():
    """the name heads the generated code in a comment: a newline in it ended the comment, and the reference backend
    ran the rest as code (NameError; any statement there would have run), the cpp build failed"""
    for name in ("two\nlines", "x\rimport os", "tab\there"):
        with pytest.raises(ValueError, match=r"define: a cell's name must be one line of printable characters"):
            symcell.define(inputs={"x": "H"}, state={"h": "H"}, name=name)(lambda x, h: tanh(x + h))
    odd = symcell.define(inputs={"x": "H"}, state={"h": "H"}, name="my cell-2")(lambda x, h: tanh(x + h))
    assert "# symcell reference backend: my cell-2" in odd(H=2, backend="reference").source()


_LINEAR = dict(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H"), "w": ("H",)})


@pytest.mark.parametrize("body, error, message", [
    # * and @ bind equally, from the left: the scaling reached the matrix (said "it can only be used as `W @ v`")
    (lambda x, h, W, w: 0.5 * W @ h + x, TypeError,
     r"^0\.5 \* W: W is a 2-d parameter \(H, H\), used only as `W @ v` \(where an `@ v` follows, Python reads "
     r"`0\.5 \* W @ v` as "
     r"`\(0\.5 \* W\) @ v`.*write `0\.5 \* \(W @ v\)`"),
    (lambda x, h, W, w: -W @ h + x, TypeError, r"^-W: .*write `-\(W @ v\)`"),
    (lambda x, h, W, w: h * W @ x, TypeError, r"^h \* W: .*write `h \* \(W @ v\)`"),
    # (the same product with no @ after it: the message says where an @ follows; it explained one never written)
    (lambda x, h, W, w: h + w * W, TypeError, r"^w \* W: W is a 2-d parameter \(H, H\), used only as `W @ v` "
                                              r"\(where an `@ v` follows"),
    (lambda x, h, W, w: W / 2 @ x + h, TypeError, r"^W / 2: .*write `\(W @ v\) / 2`"),
    # (showed the class Sym where the vector is)
    (lambda x, h, W, w: w @ h + x, TypeError, r"^w @ h: the left operand of @ must be a 2-d parameter \(w is a 1-d "
                                               r"parameter of size H, used elementwise: w \* h\)"),
    # torch's habits (said "cat: every part must be a symbolic vector, got (Sym(x (size H)), ...", and Python's
    # "got an unexpected keyword argument 'dim'")
    (lambda x, h, W, w: W @ cat((x, h), 1)[:1], TypeError, r"^cat\(\(x, h\), 1\): cat joins symbolic vectors along "
                                                          r"their features and takes no dimension: write cat\(x, h\)"),
    (lambda x, h, W, w: cat([x, h], dim=-1), TypeError, r"^cat\(\) got dim=: a step sees each row"),
    (lambda x, h, W, w: h / symcell.sum(h, dim=-1) + x, TypeError, r"^sum\(\) got dim=: .*as keepdim=True would\)"),
    (lambda x, h, W, w: h / symcell.mean(h, keepdim=True) + x, TypeError,
     r"^mean\(\) got keepdim=: .*drop the argument"),
    (lambda x, h, W, w: split(h, 2, dim=-1)[0] + x, TypeError, r"^split\(\) got dim=: .*splits a vector's features"),
])
def test_torch_habits_in_a_step_say_what_to_write(body, error, message):
    with pytest.raises(error, match=message):
        _defines(body, **_LINEAR)


def test_a_scalar_parameter_on_the_left_of_a_matmul_is_named_as_one_value():
    # (said "s is a 1-d parameter of size 1": it was declared with the shape ())
    with pytest.raises(TypeError, match=r"^s @ h: the left operand of @ must be a 2-d parameter \(s is a parameter "
                                        r"of one value, used elementwise: s \* h\)"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"s": ()})
        def Bad(x, h, s):
            return s @ h + x


def test_declaration_mistakes_name_what_to_write():
    # (said "define() missing 1 required positional argument: 'state'")
    with pytest.raises(TypeError, match=r"^symcell.define takes the cell's declarations and returns the decorator: "
                                        r"write @symcell.define\(inputs="):
        @symcell.define
        def Cell(x, h):
            return h
    with pytest.raises(TypeError, match=r"^define\(\) missing the argument 'state'"):
        symcell.define(inputs={"x": "H"})
    # (said "'NoneType' object is not iterable", naming no parameter)
    for spec in (None, 4.0):
        with pytest.raises(TypeError, match=rf"^params 'a': a parameter's shape is a tuple of sizes .*got {spec}$"):
            symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"a": spec})(lambda x, h, a: h)
    # (torch's "Only Tensors of floating point and complex dtype can require gradients": nn's RuntimeError still)
    for make in (lambda: symcell.cells.LSTMCell(3, 4, dtype=torch.int64),
                 lambda: symcell.cells.GRU(3, 4, dtype="float32")):
        with pytest.raises(RuntimeError, match=r"\(\): dtype must be a floating torch.dtype \(torch.float32, .*got "):
            make()


@pytest.mark.parametrize("body", [
    lambda x, h, W, w: W @ x / math.sqrt(W.shape[1]) + h,          # (said "Cannot convert expression to float")
    lambda x, h, W, w: W @ x * W.shape[1] ** -0.5 + h,             # ("... Python numbers (got Pow)")
    lambda x, h, W, w: W @ x / np.sqrt(W.shape[1]) + h,            # (numpy's "loop of ufunc does not support ...")
    lambda x, h, W, w: W @ x + h * len(range(W.shape[0])),         # ("'Symbol' object cannot be interpreted ...")
])
def test_a_size_used_as_a_number_in_a_step_says_it_has_no_value(body):
    with pytest.raises(TypeError, match=r"^Cell: .*\(a size the step read, a parameter's shape or a vector's size, "
                                        r"is a dimension such as H, which has no value while symcell traces the step"):
        _defines(body, **_LINEAR)


def test_a_type_error_of_the_step_that_is_not_a_size_is_left_as_it_is():
    with pytest.raises(TypeError, match=r"^cannot apply '\+' to 'a' and h \(size H\)"):
        _defines(lambda x, h, W, w: h + "a", **_LINEAR)


def test_a_cell_called_inside_another_step_says_to_call_its_step_function():
    """(said "Inner takes its dimensions by name: Inner(H=..., I=...), got 3 by position")"""
    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")})
    def Inner(x, h, W):
        return tanh(W @ x) + h
    for body in (lambda x, h, W, w: Inner(x, h, W) * w, lambda x, h, W, w: Inner(x=x, h=h, W=W) * w):
        with pytest.raises(TypeError, match=r"^Inner is a cell, the torch.nn.Module class symcell.define made of a "
                                            r"step function, called here on the symbolic values of another step"):
            _defines(body, **_LINEAR)


def test_a_sympy_symbol_as_a_size_is_the_dimension_of_its_name():
    """(a user's sympy.Symbol("H") was another symbol than the H of "H+I": "W has shape (H, H+I) but cat(h, x) has
    size H+I")"""
    import sympy
    H = sympy.Symbol("H")

    @symcell.define(inputs={"x": "I"}, state={"h": H}, params={"W": (H, H + sympy.Symbol("I")), "b": (H,)})
    def Cell(x, h, W, b):
        return tanh(W @ cat(h, x) + b)
    cell = Cell(I=3, H=4, backend="reference")
    xs = torch.randn(5, 2, 3)
    h, want = torch.zeros(2, 4), []
    for x in xs:
        h = torch.tanh(torch.cat((h, x), 1) @ cell.W.T + cell.b)
        want.append(h)
    torch.testing.assert_close(cell(xs)[0], torch.stack(want))
    for bad in (sympy.Integer(0), sympy.Rational(1, 2)):
        with pytest.raises(ValueError, match=rf"^state 'h': size must be a positive integer, got {bad}$"):
            symcell.define(inputs={"x": "I"}, state={"h": bad})(lambda x, h: h)
    # (as the same text in a string: an undefined function of H was let through, and a keyword named no keyword)
    with pytest.raises(ValueError, match=r"^state 'h': cannot parse size 'f\(H\)'"):
        symcell.define(inputs={"x": "H"}, state={"h": sympy.Function("f")(H)})(lambda x, h: h)
    with pytest.raises(ValueError, match=r"^state 'h': size 'lambda' names the dimension 'lambda', a Python keyword"):
        symcell.define(inputs={"x": "H"}, state={"h": sympy.Symbol("lambda")})(lambda x, h: h)


def test_a_block_of_a_split_matrix_says_whose_rows_it_is():
    """(said "W_1 @ h: W_1 has shape (H, H+I)": a name the user never wrote)"""
    with pytest.raises(ValueError, match=r"^W_1 @ h: W_1 \(rows H:2\*H of W, from split\) has shape \(H, H\+I\) but "
                                         r"h has size H$"):
        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("2*H", "H+I")})
        def Cell(x, h, W):
            a, b = split(W, 2)
            return tanh(a @ cat(h, x) + b @ h)


def test_a_format_of_a_symbol_says_it_has_no_value_yet():
    """(said "unsupported format string passed to Sym.__format__")"""
    with pytest.raises(TypeError, match=r"^h: format '\.3f' needs a value, and h has none: it is symbolic while "
                                        r"the cell is defined"):
        _defines(lambda x, h, W, w: print(f"{h:.3f}") or h + x, **_LINEAR)
    with pytest.raises(TypeError, match=r"^W is a 2-d parameter \(H, H\); it can only be used as `W @ v`"):
        _defines(lambda x, h, W, w: print(f"{W:.2f}") or h + x, **_LINEAR)
    seen = []   # (a format without a spec is the expression, as print(h) shows it)
    _defines(lambda x, h, W, w: seen.append(f"{h}") or h + x, **_LINEAR)
    assert seen == ["Sym(h (size H))"]
