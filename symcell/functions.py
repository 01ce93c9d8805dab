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
    abs'(0)  = 0                 (sign(0) = 0)
    maximum(a, b), minimum(a, b): at a tie each operand gets half the gradient
    clamp(x, lo, hi): gradient 1 at the bounds themselves (lo <= x <= hi)
    hardtanh, hardsigmoid: gradient 0 at their corners (-1 < x < 1, -3 < x < 3 strictly)
A comparison (a > b, ...) is a condition: a 0/1 number here, so its derivative is 0 and where(c, a, b) has
derivatives c and 1 - c; where prints as a select, so the branch not taken never reaches the value (inf * 0).
`exp`, `log`, `sqrt` and `erf` are sympy's own, so their derivatives are sympy's; a power's is the power rule,
p * b**(p - 1) * b' (diff: sympy's divides by b).
"""
import math
import operator
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


def _numbers(args, f):
    """f of several arguments, when every one is a number (see _number)"""
    if not all(a.is_Number for a in args):
        return None
    v = f(*[float(a) for a in args])
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


class Condition(sympy.Function):
    """a > b (and the others): 1 where it holds, else 0; constant almost everywhere, so its derivative is 0."""
    nargs = 2
    holds = None

    @classmethod
    def eval(cls, a, b):
        if a == b:   # the same expression: decided whatever its value
            return sympy.Integer(int(cls.holds(0.0, 0.0)))
        return _numbers((a, b), lambda u, v: 1.0 if cls.holds(u, v) else 0.0)

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class Greater(Condition):
    holds = staticmethod(lambda u, v: u > v)


class GreaterEqual(Condition):
    holds = staticmethod(lambda u, v: u >= v)


class Less(Condition):
    holds = staticmethod(lambda u, v: u < v)


class LessEqual(Condition):
    holds = staticmethod(lambda u, v: u <= v)


class Equal(Condition):
    holds = staticmethod(lambda u, v: u == v)


class Where(sympy.Function):
    """where(c, a, b): a where the condition c holds, else b. c is a condition (0/1, see Condition)."""
    nargs = 3

    @classmethod
    def eval(cls, c, a, b):
        if c.is_Number:
            return a if c != 0 else b
        if a == b:
            return a

    def fdiff(self, argindex=1):
        c = self.args[0]   # (a mask that is not 0/1, masked's, selects where it is not 0)
        on = c if indicator(c) else Where(c, sympy.Integer(1), sympy.Integer(0))
        return (sympy.Integer(0), on, 1 - on)[argindex - 1]


class Maximum(sympy.Function):
    nargs = 2

    @classmethod
    def eval(cls, a, b):
        return a if a == b else _numbers((a, b), max)

    def fdiff(self, argindex=1):
        a, b = self.args    # torch's rule: a tie splits the gradient evenly
        return (Greater(a, b) if argindex == 1 else Less(a, b)) + Equal(a, b) / 2


class Minimum(sympy.Function):
    nargs = 2

    @classmethod
    def eval(cls, a, b):
        return a if a == b else _numbers((a, b), min)

    def fdiff(self, argindex=1):
        a, b = self.args
        return (Less(a, b) if argindex == 1 else Greater(a, b)) + Equal(a, b) / 2


class ClampMin(sympy.Function):
    """max(x, lo), the lower half of clamp: gradient 1 at the bound (torch's clamp)."""
    nargs = 2

    @classmethod
    def eval(cls, x, lo):
        return _numbers((x, lo), lambda u, v: v if u < v else u)

    def fdiff(self, argindex=1):
        x, lo = self.args
        return GreaterEqual(x, lo) if argindex == 1 else Less(x, lo)


class ClampMax(sympy.Function):
    """min(x, hi), the upper half of clamp: gradient 1 at the bound."""
    nargs = 2

    @classmethod
    def eval(cls, x, hi):
        return _numbers((x, hi), lambda u, v: v if u > v else u)

    def fdiff(self, argindex=1):
        x, hi = self.args
        return LessEqual(x, hi) if argindex == 1 else Greater(x, hi)


class SignOf(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: (v > 0) - (v < 0))

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class AbsOf(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, abs)

    def fdiff(self, argindex=1):
        return SignOf(self.args[0])


class Hardtanh(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: min(max(v, -1.0), 1.0))

    def fdiff(self, argindex=1):
        x = self.args[0]
        return Greater(x, -1) * Less(x, 1)


class Hardsigmoid(sympy.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        return _number(x, lambda v: min(max(v + 3.0, 0.0), 6.0) / 6.0)

    def fdiff(self, argindex=1):
        x = self.args[0]
        return Greater(x, -3) * Less(x, 3) / 6


def indicator(e):
    """whether e is 0 or 1 everywhere: a condition, a step, 1 - one of them, a product of them"""
    if isinstance(e, (Step, Condition)):
        return True
    if e.is_Mul or (e.is_Pow and e.exp.is_Integer and e.exp > 0):
        return all(indicator(a) for a in (e.args if e.is_Mul else (e.base,)))
    return e.is_Add and len(e.args) == 2 and sympy.Integer(1) in e.args and indicator(1 - e)


def mask(e):
    """whether e is 0 wherever its conditions are: an indicator, or a sum of them times numbers (maximum's
    derivative, x > y + (x == y) / 2)"""
    return indicator(e) or e.is_Add and all(
        indicator(a) or (a.is_Mul and len(a.args) == 2 and a.args[0].is_Number and indicator(a.args[1]))
        for a in e.args)


class PowerOf(sympy.Function):
    """b**e while an expression is differentiated (diff): the power rule's e * b**(e - 1) * b'. sympy's own rule
    for a power is b**e * e * b' / b, which it simplifies to the power rule where b is the variable (x**2.5) but
    not where b is a product or a power ((a * a)**1.5: 3 a**2**1.5 / a), 0/0 where a factor is 0 (a zero state, a
    padding row), where torch's pow backward is 0."""

    def fdiff(self, argindex=1):
        b, e = self.args
        return e * b ** (e - 1) if argindex == 1 else self * sympy.log(b)


def diff(expr, sym):
    """d expr / d sym, as sympy.diff, with the power rule for every power that is not an integer one (PowerOf)"""
    powers = expr.replace(lambda e: e.is_Pow and not e.exp.is_Integer, lambda e: PowerOf(*e.args))
    return sympy.diff(powers, sym).replace(PowerOf, lambda b, e: b ** e)


def masked(expr):
    """Each product with mask factors as where(their product, the other factors (and those of the masks that are
    not 0/1), 0), bottom up: a derivative rule's mask selects, as torch's backward does, rather than multiplies
    (the gradient of sqrt(relu(x)) where x < 0 is step(x) / (2 sqrt(relu(x))): 0 * inf, NaN, multiplied; 0,
    selected)."""
    def rule(m):
        masks = [a for a in m.args if mask(a)]
        rest = [a for a in m.args if not mask(a)]
        if not masks or all(a.is_Number for a in rest):
            return m
        value = sympy.Mul(*[a for a in masks if not indicator(a)], *rest)
        return Where(sympy.Mul(*masks), value, sympy.Integer(0))
    return expr.replace(lambda e: e.is_Mul, rule)


# torch helpers the reference spellings call (named in the generated code, bound in its scope)
def _step(v):
    # relu'(x): 1 where x > 0, else 0 (torch's convention at the kink)
    return (v > 0).to(v.dtype)


def _elu_grad(v):
    # elu'(x) = 1 for x > 0, exp(x) otherwise; exp of min(x, 0) so the branch not taken cannot overflow
    return torch.where(v > 0, torch.ones_like(v), torch.exp(torch.clamp(v, max=0)))


def _dtype_of(*args):
    return next(a.dtype for a in args if isinstance(a, torch.Tensor))


def _cond(holds):
    def condition(a, b):
        return holds(a, b).to(_dtype_of(a, b))    # 0/1 in the operands' dtype, as the derivative rules read it
    condition.__name__ = f"_{holds.__name__}"
    return condition


# the operators, not torch.gt & co: either side may be a Python number (0 < h)
_gt, _ge, _lt, _le, _eq = (_cond(f) for f in (operator.gt, operator.ge, operator.lt, operator.le, operator.eq))


def _where(c, a, b):
    # a Python number as a branch takes the condition's dtype (torch.where would give float32 for two numbers)
    return torch.where(c != 0, a, b).to(c.dtype)


def _maximum(a, b):
    if not isinstance(b, torch.Tensor):
        a, b = b, a
    return torch.maximum(b, torch.as_tensor(a, dtype=b.dtype))


def _minimum(a, b):
    if not isinstance(b, torch.Tensor):
        a, b = b, a
    return torch.minimum(b, torch.as_tensor(a, dtype=b.dtype))


@dataclass(frozen=True)
class Function:
    """One pointwise function. Spellings are format strings over the printed arguments {x}, {y}, {z}."""
    name: str                  # what the user writes (symcell.<name>) and gradients() prints
    sympy: Any                 # the sympy function: its class (or sympy's own exp/log/sqrt/erf)
    torch: str                 # torch code; `_F` is torch.nn.functional
    cpp: str                   # C++ over scalar_t
    triton: str                # triton.language, interpreter-safe
    user: bool = True          # False: a derivative helper, or reached through an operator (a > b) or clamp
    torch_helper: Optional[Callable] = None   # a function the torch spelling calls
    arity: int = 1
    triton_helper: Optional[str] = None       # a @triton.jit function the triton spelling calls (its source)


# triton's maximum and minimum drop a NaN by default (maximum(NaN, 0) is 0: a diverging run's NaN became a number);
# torch's, and sc.h's, give NaN
_TL_MAX = "tl.maximum({x}, {y}, propagate_nan=tl.PropagateNan.ALL)"
_TL_MIN = "tl.minimum({x}, {y}, propagate_nan=tl.PropagateNan.ALL)"

# torch's softplus (x above 20) with log1p, which triton.language lacks outside libdevice (and the interpreter has
# no libdevice): log(u) * e / (u - 1) with u = 1 + e rounded is log1p(e) to a few ulps (Goldberg, "What every
# computer scientist should know about floating-point arithmetic", thm. 4). log(1 + exp(x)) was 0 below x = -17
_TL_SOFTPLUS = '''@triton.jit
def _softplus(x):
    e = tl.exp(tl.minimum(x, 20.0, propagate_nan=tl.PropagateNan.ALL))
    u = 1.0 + e
    return tl.where(x > 20.0, x, tl.where(u == 1.0, e, tl.log(u) * (e / (u - 1.0))))
'''

FUNCTIONS = (
    Function("sigmoid", Sigmoid, "torch.sigmoid({x})", "sc::sigmoid({x})", "tl.sigmoid({x})"),
    Function("tanh", Tanh, "torch.tanh({x})", "sc::tanh({x})", "(2.0 * tl.sigmoid(2.0 * ({x})) - 1.0)"),
    Function("relu", Relu, "torch.relu({x})", "sc::relu({x})", "tl.where(({x}) < 0.0, 0.0, ({x}))"),
    Function("elu", Elu, "_F.elu({x})", "sc::elu({x})",
             "tl.where(({x}) > 0.0, ({x}), tl.exp(" + _TL_MIN.format(x="{x}", y="0.0") + ") - 1.0)"),
    Function("softplus", Softplus, "_F.softplus({x})", "sc::softplus({x})",
             "_softplus({x})", triton_helper=_TL_SOFTPLUS),
    Function("silu", Silu, "_F.silu({x})", "sc::silu({x})", "(({x}) * tl.sigmoid({x}))"),
    Function("gelu", Gelu, "_F.gelu({x})", "sc::gelu({x})", "(0.5 * ({x}) * (1.0 + tl.erf(0.7071067811865476 * ({x}))))"),
    Function("exp", sympy.exp, "torch.exp({x})", "sc::exp({x})", "tl.exp({x})"),
    Function("log", sympy.log, "torch.log({x})", "sc::log({x})", "tl.log({x})"),
    Function("sqrt", sympy.sqrt, "torch.sqrt({x})", "std::sqrt({x})", "tl.sqrt({x})"),
    Function("erf", sympy.erf, "torch.erf({x})", "std::erf({x})", "tl.erf({x})"),
    Function("step", Step, "_step({x})", "sc::step({x})", "tl.where(({x}) > 0.0, 1.0, 0.0)", user=False,
             torch_helper=_step),
    Function("elu_grad", EluGrad, "_elu_grad({x})", "sc::elu_grad({x})",
             "tl.where(({x}) > 0.0, 1.0, tl.exp(" + _TL_MIN.format(x="{x}", y="0.0") + "))", user=False,
             torch_helper=_elu_grad),
    Function("abs", AbsOf, "torch.abs({x})", "std::abs({x})", "tl.abs({x})"),
    Function("sign", SignOf, "torch.sign({x})", "sc::sign({x})",
             "tl.where(({x}) > 0.0, 1.0, tl.where(({x}) < 0.0, -1.0, 0.0))"),
    Function("hardtanh", Hardtanh, "_F.hardtanh({x})", "sc::hardtanh({x})",
             _TL_MIN.format(x=_TL_MAX.format(x="{x}", y="-1.0"), y="1.0")),
    Function("hardsigmoid", Hardsigmoid, "_F.hardsigmoid({x})", "sc::hardsigmoid({x})",
             _TL_MIN.format(x=_TL_MAX.format(x="(({x}) + 3.0) / 6.0", y="0.0"), y="1.0")),
    Function("maximum", Maximum, "_maximum({x}, {y})", "sc::maximum({x}, {y})", _TL_MAX,
             torch_helper=_maximum, arity=2),
    Function("minimum", Minimum, "_minimum({x}, {y})", "sc::minimum({x}, {y})", _TL_MIN,
             torch_helper=_minimum, arity=2),
    Function("where", Where, "_where({x}, {y}, {z})", "sc::where({x}, {y}, {z})",
             "tl.where(({x}) != 0.0, {y}, {z})", torch_helper=_where, arity=3),
    Function("clamp_min", ClampMin, "torch.clamp({x}, min={y})", "sc::clamp_min({x}, {y})",
             _TL_MAX, user=False, arity=2),
    Function("clamp_max", ClampMax, "torch.clamp({x}, max={y})", "sc::clamp_max({x}, {y})",
             _TL_MIN, user=False, arity=2),
) + tuple(Function(name, cls, f"{helper.__name__}({{x}}, {{y}})", f"sc::{name}({{x}}, {{y}})",
                   f"tl.where(({{x}}) {op} ({{y}}), 1.0, 0.0)", user=False, torch_helper=helper, arity=2)
          for name, cls, helper, op in (("gt", Greater, _gt, ">"), ("ge", GreaterEqual, _ge, ">="),
                                        ("lt", Less, _lt, "<"), ("le", LessEqual, _le, "<="),
                                        ("eq", Equal, _eq, "==")))

BY_NAME = {f.name: f for f in FUNCTIONS}
# sympy class name -> entry, for the printers (sqrt is a power, printed by their _print_Pow)
BY_CLASS = {f.sympy.__name__: f for f in FUNCTIONS if isinstance(f.sympy, type)}
# what a step function may call as symcell.<name>: name -> the entry
USER = {f.name: f for f in FUNCTIONS if f.user}
# the comparisons a > b, a >= b, a < b, a <= b: the conditions where() takes
CONDITIONS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}
# names the torch spellings call, for the scope generated torch code runs in
TORCH_HELPERS = {f.torch_helper.__name__: f.torch_helper for f in FUNCTIONS if f.torch_helper}
