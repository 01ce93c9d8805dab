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
import sympy


class Sigmoid(sympy.Function):
    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)


class Tanh(sympy.Function):
    nargs = 1

    def fdiff(self, argindex=1):
        return 1 - self**2


class Step(sympy.Function):
    """Heaviside step with step(0) = 0: the derivative of relu."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class Relu(sympy.Function):
    nargs = 1

    def fdiff(self, argindex=1):
        return Step(self.args[0])


class EluGrad(sympy.Function):
    """d elu(x)/dx = 1 if x > 0 else exp(x) (alpha = 1)."""
    nargs = 1

    def fdiff(self, argindex=1):
        return (1 - Step(self.args[0])) * sympy.exp(self.args[0])


class Elu(sympy.Function):
    nargs = 1

    def fdiff(self, argindex=1):
        return EluGrad(self.args[0])


class Softplus(sympy.Function):
    nargs = 1

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
