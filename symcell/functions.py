"""The pointwise functions a cell may use, as sympy functions with their derivative rules.

Each rule is written so that the backward is finite wherever the forward is, e.g.
    sigmoid'(x) = s * (1 - s)   with s = sigmoid(x)      (never exp(-x) / (1 + exp(-x))**2, which is inf/inf at -1e4)
    tanh'(x)    = 1 - t**2      with t = tanh(x)
    softplus'(x) = sigmoid(x)
Conventions at kinks (the same as torch's autograd):
    relu'(0) = 0                 (step(x) = 1 if x > 0 else 0)
    elu'(0)  = 1                 (elu is C1 at 0 with alpha = 1: both one-sided derivatives are 1)
`exp`, `log` and `sqrt` are sympy's own, so their derivatives are sympy's: exp, 1/x, 1/(2*sqrt(x)).
"""
import math

import sympy


def _number(x, f):
    """A function of a number is a number: sympy would keep e.g. tanh(0) (from tanh(x - x)) as a call on an
    int, which the printers would pass to torch.tanh. Exact where the value is rational, else a float."""
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


# name the user writes -> sympy constructor; this table is the whole supported set
UNARY = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": Relu,
    "elu": Elu,
    "softplus": Softplus,
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
}
