"""sympy printers: one for readable math (gradients()), one for the reference backend's torch code."""
import sympy
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
