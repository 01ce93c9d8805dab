"""Golden strings of the printers (symcell/printing.py), in the manner of sympy's printer tests, and the op
table (symcell/functions.py) they read: every function spelt in every language, its derivative printable."""
import math

import pytest
import sympy
import torch

from symcell.functions import (BY_CLASS, FUNCTIONS, USER, ClampMin, Equal, Gelu, Greater, Maximum, Sigmoid, Silu,
                               Step, Tanh, Where)
from symcell.printing import cpp_str, math_str, size_str, tl_str, torch_str

x, y = sympy.symbols("x y")
H, I = sympy.Symbol("H", positive=True, integer=True), sympy.Symbol("I", positive=True, integer=True)

#  expression                      C++                                  triton                               torch
GOLDEN = [
    (x**3,                         "(x*x*x)",                           "(x*x*x)",                           "x**3"),
    (x - 1,                        "x - 1",                             "x - 1.0",                           "x - 1"),
    (1 - x,                        "1 - x",                             "1.0 - x",                           "1 - x"),
    (x**-2,                        "(1/x/x)",                           "(1.0/x/x)",                         "(1/x/x)"),
    (1 / x,                        "(1/x)",                             "(1.0/x)",                           "(1/x)"),
    (x**sympy.Rational(-5, 2),     "(1/x/x/std::sqrt(x))",              "(1.0/x/x/tl.sqrt(x))",              "(1/x/x/torch.sqrt(x))"),
    # a product's divisors one at a time: x/(y*y) left float32's range at |y| < 1e-19, x/y**1.5 at y > 5e25
    (-x / y**2,                    "-x/y/y",                            "-x/y/y",                            "-x/y/y"),
    (x * y**sympy.Rational(-3, 2), "x/y/std::sqrt(y)",                  "x/y/tl.sqrt(y)",                    "x/y/torch.sqrt(y)"),
    ((x + 1) / (2 * (y + 1)**3),   "((scalar_t(0.5))*x + scalar_t(0.5))/(y + 1)/(y + 1)/(y + 1)",
     "(x/2.0 + 0.5)/(y + 1.0)/(y + 1.0)/(y + 1.0)",                                                     "(x/2 + 0.5)/(y + 1)/(y + 1)/(y + 1)"),
    (x / (y * Sigmoid(x)),         "x/y/sc::sigmoid(x)",                "x/y/tl.sigmoid(x)",                 "x/y/torch.sigmoid(x)"),
    (x / y**5,                     "x/std::pow(y, scalar_t(5.0))",
     "x/(tl.where(y < 0, -1.0, 1.0) * tl.exp(5.0 * tl.log(tl.abs(y))))",                                "x/y**5"),
    (sympy.sqrt(x),                "std::sqrt(x)",                      "tl.sqrt(x)",                        "torch.sqrt(x)"),
    (1 / sympy.sqrt(x),            "(scalar_t(1)/std::sqrt(x))",        "(1.0 / tl.sqrt(x))",                "torch.rsqrt(x)"),
    (x**sympy.Rational(3, 2),      "std::pow(x, scalar_t(1.5))",        "tl.exp(1.5 * tl.log(x))",           "x**(1.5)"),
    (x**6,                         "std::pow(x, scalar_t(6.0))",        "tl.exp(6.0 * tl.log(tl.abs(x)))",   "x**6"),
    (x**-5,                        "std::pow(x, scalar_t(-5.0))",
     "(tl.where(x < 0, -1.0, 1.0) * tl.exp(-5.0 * tl.log(tl.abs(x))))",                                  "x**(-5)"),
    (0.25 * x,                     "scalar_t(0.25)*x",                  "0.25*x",                            "0.25*x"),
    (sympy.pi * x,                 "scalar_t(3.141592653589793)*x",     "3.141592653589793*x",               "3.141592653589793*x"),
    (sympy.Rational(1, 3),         "scalar_t(0.3333333333333333)",      "0.3333333333333333",                "0.3333333333333333"),
    (Sigmoid(x) * (1 - Sigmoid(x)), "(1 - sc::sigmoid(x))*sc::sigmoid(x)", "(1.0 - tl.sigmoid(x))*tl.sigmoid(x)",
     "(1 - torch.sigmoid(x))*torch.sigmoid(x)"),
    (Tanh(x + y),                  "sc::tanh(x + y)",                   "(2.0 * tl.sigmoid(2.0 * (x + y)) - 1.0)", "torch.tanh(x + y)"),
    (Step(x) * y,                  "y*sc::step(x)",                     "y*tl.where((x) > 0.0, 1.0, 0.0)",   "y*_step(x)"),
    (Maximum(x, 0),                "sc::maximum(x, 0)",
     "tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL)",                                              "_maximum(x, 0)"),
    (Where(Greater(x, y), x, 0.5), "sc::where(sc::gt(x, y), x, scalar_t(0.5))",
     "tl.where((tl.where((x) > (y), 1.0, 0.0)) != 0.0, x, 0.5)",                              "_where(_gt(x, y), x, 0.5)"),
    (ClampMin(x, -1),              "sc::clamp_min(x, -1)",
     "tl.maximum(x, -1.0, propagate_nan=tl.PropagateNan.ALL)",                                     "torch.clamp(x, min=-1)"),
]


@pytest.mark.parametrize("expr,cpp,triton,torch_code", GOLDEN, ids=[str(g[0]) for g in GOLDEN])
def test_code_printers(expr, cpp, triton, torch_code):
    assert cpp_str(expr) == cpp
    assert tl_str(expr) == triton
    assert torch_str(expr) == torch_code


def test_math_printer_names_functions_as_users_write_them():
    assert math_str(sympy.diff(Sigmoid(x), x)) == "(1 - sigmoid(x))*sigmoid(x)"
    assert math_str(sympy.diff(Silu(x), x)) == "(x*(1 - sigmoid(x)) + 1)*sigmoid(x)"
    assert math_str(Step(x) + Tanh(x)) == "step(x) + tanh(x)"
    # conditions read as the comparisons the user wrote; a tie of maximum splits the gradient
    assert math_str(sympy.diff(Maximum(x, y), x)) == "(x == y)/2 + (x > y)"
    assert math_str(sympy.diff(Where(Greater(x, 0), x**2, -x), x)) == "2*x*(x > 0) + (x > 0) - 1"


def test_size_printer():
    """a sum is bracketed: the C++ multiplies sizes (sizeof(scalar_t) * _dim_H - 1 copied 8 H - 1 bytes of a row
    of H - 1 doubles, into the next row)"""
    assert size_str(2 * H) == "2*_dim_H"
    assert size_str(H - 1) == "(_dim_H - 1)"
    assert size_str((I + H) / 2) == "((_dim_H + _dim_I)/2)"
    assert size_str(sympy.Integer(7)) == "7"
    assert size_str(H) == "_dim_H"


@pytest.mark.parametrize("fn", FUNCTIONS, ids=[f.name for f in FUNCTIONS])
def test_every_function_is_spelt_in_every_language_with_its_derivative(fn):
    """One table entry is the whole definition: the function and its derivative print in every language, and
    the torch spelling computes the function's value (checked against the sympy class's own value)."""
    args = sympy.symbols("x y z")[:fn.arity]
    e = fn.sympy(*args)
    for printer in (cpp_str, tl_str, torch_str, math_str):
        for expr in (e, *(sympy.diff(e, a) for a in args)):
            text = printer(expr)
            assert text and "Function" not in text and "Derivative" not in text, (fn.name, text)
    assert fn.name in math_str(e) or fn.name in ("gt", "ge", "lt", "le", "eq")
    from symcell.backends.torch_code import SCOPE
    values = (-1.7, 0.3, 2.5) if fn.name not in ("log", "sqrt") else (0.3, 2.5)
    for k, v in enumerate(values):
        vs = [values[(k + j) % len(values)] for j in range(fn.arity)]     # (x, y) = (-1.7, 0.3), (0.3, 2.5), ...
        env = {str(a): torch.tensor(u, dtype=torch.float64) for a, u in zip(args, vs)}
        got = eval(torch_str(e), {**SCOPE, **env})  # noqa: S307
        want = float(fn.sympy(*map(sympy.Float, vs)))
        assert math.isclose(float(got), want, rel_tol=1e-12, abs_tol=1e-12), (fn.name, vs)


def test_the_table_is_what_users_can_call():
    import symcell
    for name in [*USER, "clamp"]:
        assert callable(getattr(symcell, name)) and name in symcell.__all__
    for helper in ("step", "elu_grad", "gt", "clamp_min"):          # derivative helpers, operators, clamp's halves
        assert helper not in USER and not hasattr(symcell, helper)
    assert BY_CLASS["Gelu"].name == "gelu"


@pytest.mark.parametrize("fn", [f for f in FUNCTIONS if f.name in ("silu", "gelu", "erf", "softplus", "elu", "relu",
                                                                     "abs", "sign", "hardtanh", "hardsigmoid")],
                         ids=lambda f: f.name)
def test_derivatives_match_torch_autograd(fn):
    # steps of 1/8 from -6 to 6: the kinks 0, +-1 and +-3 themselves are among the points
    t = torch.linspace(-6, 6, 97, dtype=torch.float64, requires_grad=True)
    from symcell.backends.torch_code import SCOPE
    (g,) = torch.autograd.grad(eval(torch_str(fn.sympy(x)), {**SCOPE, "x": t}).sum(), t)  # noqa: S307
    d = eval(torch_str(sympy.diff(fn.sympy(x), x)), {**SCOPE, "x": t.detach()})  # noqa: S307
    # torch's hardsigmoid backward scales by 1/6 rounded to float32 (3e-8 off) whatever the dtype; ours is exact
    tol = 1e-7 if fn.name == "hardsigmoid" else 1e-12
    torch.testing.assert_close(torch.as_tensor(d, dtype=torch.float64).expand_as(g), g, rtol=tol, atol=1e-12)


def _torch_twin(name, a, b):
    return {"maximum": lambda: torch.maximum(a, b), "minimum": lambda: torch.minimum(a, b),
            "where": lambda: torch.where(a > b, a * b, b - a), "clamp": lambda: torch.clamp(a, -0.5, 0.5) * b}[name]()


@pytest.mark.parametrize("name", ["maximum", "minimum", "where", "clamp"])
def test_derivatives_of_two_operands_match_torch_at_ties_and_bounds(name):
    """Half the gradient each at a tie of maximum / minimum; where's gradient to the branch taken; clamp's 1 at
    its bounds: torch's conventions, at exactly the points where they matter."""
    from symcell.backends.torch_code import SCOPE
    from symcell.functions import ClampMax, Minimum
    a = torch.tensor([-1.0, -0.5, 0.0, 0.5, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-1.0, 0.3, 0.0, 0.5, -2.0, 1.0], dtype=torch.float64, requires_grad=True)  # ties at 0, 2, 3
    ga, gb = torch.autograd.grad(_torch_twin(name, a, b).sum(), (a, b))
    e = {"maximum": Maximum(x, y), "minimum": Minimum(x, y), "where": Where(Greater(x, y), x * y, y - x),
         "clamp": ClampMax(ClampMin(x, -0.5), 0.5) * y}[name]
    env = {**SCOPE, "x": a.detach(), "y": b.detach()}
    for sym, want in ((x, ga), (y, gb)):
        got = eval(torch_str(sympy.diff(e, sym)), env)  # noqa: S307
        torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64).expand_as(want), want,
                                   rtol=1e-15, atol=0)
    assert Equal(x, x) == 1 and Greater(x, x) == 0 and Maximum(x, x) == x and Where(Greater(x, y), y, y) == y


def test_numbers_are_numbers():
    assert Gelu(sympy.Integer(0)) == 0 and Silu(sympy.Integer(0)) == 0
    assert torch_str(Tanh(x - x)) == "0.0"
