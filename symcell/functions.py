"""The pointwise functions: this table is the only place one is defined.

Each entry is the function's sympy class (its value on numbers in `eval`, its derivative in `fdiff`) and its
spelling in every language symcell prints (printing.py reads them): torch code (the reference backend and the
triton host), C++ (the cpp backend; `sc::` helpers live in backends/cpp/sc.h), triton.language (kernels; only
what Triton's interpreter has, no libdevice, so CI can run them). Adding a function is one entry here, plus a
C++ helper in sc.h where one line of C++ does not do.

Derivative rules are written so that the backward is finite wherever the forward is, e.g.
    sigmoid'(x)  = s * (1 - s)   with s = sigmoid(x)     (never exp(-x) / (1 + exp(-x))**2, inf/inf at -1e4)
    tanh'(x)     = 1 - t**2      with t = tanh(x)
    softplus'(x) = sigmoid(x)
    silu'(x)     = s * (1 + x * (1 - s))
Conventions at kinks (torch's autograd):
    relu'(0) = 0                 (step(x) = 1 if x > 0 else 0)
    elu'(0)  = 1                 (elu is C1 at 0 with alpha = 1: both one-sided derivatives are 1)
`exp`, `log`, `sqrt` and `erf` are sympy's own, so their derivatives are sympy's.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import sympy
import torch


def _number(x, f):
    """A function of a number is a number: sympy would keep e.g. tanh(0) (from tanh(x - x)) as a call on an
    int, which the printers would pass to torch.tanh. Exact where the value is an integer, else a float."""
    if not x.is_Number:
        return None
    v = f(float(x))
    return sympy.Integer(int(v)) if v == int(v) and abs(v) < 2 ** 52 else sympy.Float(v)


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0


def _softplus(v):
    return v if v > 20 else math.log1p(math.exp(v))   # torch's threshold


class Sigmoid(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return sympy.Rational(1, 2) if x == 0 else _number(x, _sigmoid)

    def fdiff(self, argindex=1):
        return self * (1 - self)


class Tanh(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, math.tanh)

    def fdiff(self, argindex=1):
        return 1 - self**2


class Step(sympy.Function):
    """Heaviside step with step(0) = 0: the derivative of relu."""
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: 1.0 if v > 0 else 0.0)

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class Relu(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: max(v, 0.0))

    def fdiff(self, argindex=1):
        return Step(self.args[0])


class EluGrad(sympy.Function):
    """d elu(x)/dx = 1 if x > 0 else exp(x) (alpha = 1)."""
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: 1.0 if v > 0 else math.exp(v))

    def fdiff(self, argindex=1):
        return (1 - Step(self.args[0])) * sympy.exp(self.args[0])


class Elu(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: v if v > 0 else math.expm1(v))

    def fdiff(self, argindex=1):
        return EluGrad(self.args[0])


class Softplus(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, _softplus)

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])


class Silu(sympy.Function):
    """x * sigmoid(x) (swish); its derivative through sigmoid itself, finite everywhere."""
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: v * _sigmoid(v))

    def fdiff(self, argindex=1):
        x, s = self.args[0], Sigmoid(self.args[0])
        return s * (1 + x * (1 - s))


_RSQRT2, _RSQRT2PI = sympy.Float(1 / math.sqrt(2.0)), sympy.Float(1 / math.sqrt(2.0 * math.pi))


class Gelu(sympy.Function):
    """x * Phi(x), Phi the standard normal CDF (torch's exact gelu, through erf)."""
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))

    def fdiff(self, argindex=1):
        x = self.args[0]   # Phi(x) + x * phi(x): 1/sqrt(2) and 1/sqrt(2 pi) as float constants, for readable code
        return (1 + sympy.erf(_RSQRT2 * x)) / 2 + _RSQRT2PI * x * sympy.exp(-x**2 / 2)


# torch helpers the reference spellings call (named in the generated code, bound in its scope)
def _step(v):
    # relu'(x): 1 where x > 0, else 0 (torch's convention at the kink)
    return (v > 0).to(v.dtype)


def _elu_grad(v):
    # elu'(x) = 1 for x > 0, exp(x) otherwise; exp of min(x, 0) so the branch not taken cannot overflow
    return torch.where(v > 0, torch.ones_like(v), torch.exp(torch.clamp(v, max=0)))


@dataclass(frozen=True)
class Function:
    """One pointwise function. Spellings are format strings over the printed argument {x}."""
    name: str                  # what the user writes (symcell.<name>) and gradients() prints
    sympy: Any                 # the sympy function: its class (or sympy's own exp/log/sqrt/erf)
    torch: str                 # torch code; `_F` is torch.nn.functional
    cpp: str                   # C++ over scalar_t
    triton: str                # triton.language, interpreter-safe
    user: bool = True          # False: a derivative helper no user writes
    torch_helper: Optional[Callable] = None   # a function the torch spelling calls


FUNCTIONS = (
    Function("sigmoid", Sigmoid, "torch.sigmoid({x})", "sc::sigmoid({x})", "tl.sigmoid({x})"),
    Function("tanh", Tanh, "torch.tanh({x})", "sc::tanh({x})", "(2.0 * tl.sigmoid(2.0 * ({x})) - 1.0)"),
    Function("relu", Relu, "torch.relu({x})", "sc::relu({x})", "tl.where(({x}) < 0.0, 0.0, ({x}))"),
    Function("elu", Elu, "_F.elu({x})", "sc::elu({x})",
             "tl.where(({x}) > 0.0, ({x}), tl.exp(tl.minimum(({x}), 0.0)) - 1.0)"),
    Function("softplus", Softplus, "_F.softplus({x})", "sc::softplus({x})",
             "tl.where(({x}) > 20.0, ({x}), tl.log(1.0 + tl.exp(tl.minimum(({x}), 20.0))))"),
    Function("silu", Silu, "_F.silu({x})", "sc::silu({x})", "(({x}) * tl.sigmoid({x}))"),
    Function("gelu", Gelu, "_F.gelu({x})", "sc::gelu({x})", "(0.5 * ({x}) * (1.0 + tl.erf(0.7071067811865476 * ({x}))))"),
    Function("exp", sympy.exp, "torch.exp({x})", "sc::exp({x})", "tl.exp({x})"),
    Function("log", sympy.log, "torch.log({x})", "sc::log({x})", "tl.log({x})"),
    Function("sqrt", sympy.sqrt, "torch.sqrt({x})", "std::sqrt({x})", "tl.sqrt({x})"),
    Function("erf", sympy.erf, "torch.erf({x})", "std::erf({x})", "tl.erf({x})"),
    Function("step", Step, "_step({x})", "sc::step({x})", "tl.where(({x}) > 0.0, 1.0, 0.0)", user=False,
             torch_helper=_step),
    Function("elu_grad", EluGrad, "_elu_grad({x})", "sc::elu_grad({x})",
             "tl.where(({x}) > 0.0, 1.0, tl.exp(tl.minimum(({x}), 0.0)))", user=False, torch_helper=_elu_grad),
)

BY_NAME = {f.name: f for f in FUNCTIONS}
# sympy class name -> entry, for the printers (sqrt is a power, printed by their _print_Pow)
BY_CLASS = {f.sympy.__name__: f for f in FUNCTIONS if isinstance(f.sympy, type)}
# what a step function may call: name -> sympy constructor
UNARY = {f.name: f.sympy for f in FUNCTIONS if f.user}
# names the torch spellings call, for the scope generated torch code runs in
TORCH_HELPERS = {f.torch_helper.__name__: f.torch_helper for f in FUNCTIONS if f.torch_helper}
