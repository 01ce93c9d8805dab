"""Printers: sympy expressions as readable math (gradients()), torch code (reference), C++ (cpp); a line writer."""
from contextlib import contextmanager

import sympy
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import precedence
from sympy.printing.str import StrPrinter

# sympy function class name -> the name a reader knows
_MATH_NAMES = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Elu": "elu", "Softplus": "softplus",
               "Step": "step", "EluGrad": "elu_grad", "exp": "exp", "log": "log"}


class MathPrinter(StrPrinter):
    def _print_Function(self, expr):
        name = _MATH_NAMES.get(type(expr).__name__, type(expr).__name__)
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    _print_exp = _print_log = _print_Function


class TorchPrinter(StrPrinter):
    """Prints a pointwise expression as torch code; leaves are tensors of matching or broadcastable shape."""
    _CALLS = {"Sigmoid": "torch.sigmoid", "Tanh": "torch.tanh", "Relu": "torch.relu", "Elu": "_F.elu",
              "Softplus": "_F.softplus", "exp": "torch.exp", "log": "torch.log",
              "Step": "_step", "EluGrad": "_elu_grad"}

    def _print_Function(self, expr):
        return f"{self._CALLS[type(expr).__name__]}({self._print(expr.args[0])})"

    _print_exp = _print_log = _print_Function

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        if expr.is_number:
            return repr(float(expr))
        if e == sympy.Rational(1, 2):
            return f"torch.sqrt({self._print(base)})"
        if e == -sympy.Rational(1, 2):
            return f"torch.rsqrt({self._print(base)})"
        if e == -1:
            return f"1/{self.parenthesize(base, sympy.printing.precedence.PRECEDENCE['Pow'])}"
        return super()._print_Pow(expr, rational)

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    def doprint(self, expr):
        if getattr(expr, "is_number", False):
            return repr(float(expr))
        return super().doprint(expr)


math_str = MathPrinter().doprint
torch_str = TorchPrinter().doprint


class CppPrinter(C99CodePrinter):
    """Pointwise expressions in `scalar_t` arithmetic: constants are cast, so float code never promotes to double;
    small integer powers are products; the functions are sc:: helpers the kernel prelude defines."""
    _CALLS = {"Sigmoid": "sc::sigmoid", "Tanh": "sc::tanh", "Relu": "sc::relu", "Elu": "sc::elu",
              "Softplus": "sc::softplus", "exp": "sc::exp", "log": "sc::log", "Step": "sc::step",
              "EluGrad": "sc::elu_grad"}

    def _print_Function(self, expr):
        return f"{self._CALLS[type(expr).__name__]}({self._print(expr.args[0])})"

    _print_exp = _print_log = _print_Function

    def _print_Pow(self, expr):
        base, e = expr.args
        if expr.is_number:
            return f"scalar_t({float(expr)!r})"
        b = self.parenthesize(base, precedence(expr))
        if e == sympy.Rational(1, 2):
            return f"std::sqrt({self._print(base)})"
        if e == -sympy.Rational(1, 2):
            return f"(scalar_t(1)/std::sqrt({self._print(base)}))"
        if e.is_Integer and 1 <= e <= 4:
            return "(" + "*".join([b] * int(e)) + ")"
        if e.is_Integer and -4 <= e <= -1:
            return "(scalar_t(1)/(" + "*".join([b] * int(-e)) + "))"
        return f"std::pow({self._print(base)}, scalar_t({float(e)!r}))"

    def _print_Rational(self, expr):
        return f"scalar_t({float(expr)!r})"

    def _print_Float(self, expr):
        return f"scalar_t({float(expr)!r})"

    def _print_Integer(self, expr):
        return f"scalar_t({int(expr)})"


class SizePrinter(C99CodePrinter):
    """Integer size expressions (2*H, (I + H)/2) in int64_t arithmetic; exact because sizes are validated
    to be integers, and a quotient is printed once over a common denominator."""

    def doprint(self, expr, assign_to=None):
        num, den = sympy.fraction(sympy.together(sympy.sympify(expr)))
        text = super().doprint(sympy.expand(num))
        return text if den == 1 else f"(({text})/{int(den)})"

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Symbol(self, expr):
        # dimensions live in the generated code as _dim_<name>: user names cannot start with "_"
        return f"_dim_{expr.name}"


cpp_str = CppPrinter().doprint
size_str = SizePrinter().doprint


class Writer:
    """Lines of generated code with indentation."""

    def __init__(self, indent="    "):
        self.lines, self.depth, self.indent = [], 0, indent

    def __call__(self, line=""):
        self.lines.append(self.indent * self.depth + line if line else "")

    @contextmanager
    def block(self, opener=None, closer=None):
        if opener is not None:
            self(opener)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if closer is not None:
                self(closer)

    def text(self):
        return "\n".join(self.lines) + "\n"
