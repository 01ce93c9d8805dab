"""Printers, one per language, and a line writer.

    math_str    gradients() text:    sigmoid(x)*(1 - sigmoid(x)), x**2
    torch_str   torch code:          torch.sigmoid(x), x**2, 0.5      (the reference backend, the triton host)
    cpp_str     C++ over scalar_t:   sc::sigmoid(x), (x*x), x - 1, scalar_t(0.5)
    tl_str      triton.language:     tl.sigmoid(x), (x*x), 0.5
    size_str    int64_t sizes:       2*_dim_H, (_dim_H - 1), ((_dim_I + _dim_H)/2)

A function is spelt from its entry in the table (functions.py); what differs between the code printers is how
they write a number, a square root's reciprocal and a power, each one small method; a negative power of up to
4 (and a half) is divisions, in every language alike (_CodePrinter.divisions).
"""
import math
from contextlib import contextmanager

import sympy
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from .functions import BY_CLASS, BY_NAME, CONDITIONS

INFIX = {**{name: op for op, name in CONDITIONS.items()}, "eq": "=="}

HALF = sympy.Rational(1, 2)


class MathPrinter(StrPrinter):
    """Readable math: the functions by the names users write."""

    def _print_Function(self, expr):
        name = BY_CLASS[type(expr).__name__].name
        if name in INFIX:   # a condition, as the user wrote it
            return f"({self._print(expr.args[0])} {INFIX[name]} {self._print(expr.args[1])})"
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    _print_exp = _print_log = _print_erf = _print_Function

    def _print_Infinity(self, expr):   # (sympy's own spelling is oo)
        return "inf"

    # (π and e as math's: plain pi or E read as a variable of the cell's so named, gelu's sqrt(pi) beside a
    # parameter pi; inf and nan are names no variable may take, module.py)
    def _print_Pi(self, expr):
        return "math.pi"

    def _print_Exp1(self, expr):
        return "math.e"

    def _print_NegativeInfinity(self, expr):
        return "-inf"


def _divisor(f):
    """whether the factor f is printed as divisions (_CodePrinter.divisions): b**-n for n = 1..4, or n + 1/2 for
    n = 1..3, of a base that is no number"""
    e = f.exp if f.is_Pow else None
    return (e is not None and e.is_Rational and e.is_negative and (-e).q <= 2 and -e <= 4 and e != -HALF
            and not f.base.is_number)


class _CodePrinter:
    """What the code printers share: table spellings, numbers as literals, powers by cases."""
    language = None   # the functions.Function field that spells a call in this language

    def _print_Function(self, expr):
        spelling = getattr(BY_CLASS[type(expr).__name__], self.language)
        return spelling.format(**dict(zip("xyz", (self._print(a) for a in expr.args))))

    _print_exp = _print_log = _print_erf = _print_Function

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        if expr.is_number:
            return self.literal(expr)
        if e == HALF:
            return getattr(BY_NAME["sqrt"], self.language).format(x=self._print(base))
        if e == -HALF:
            return self.rsqrt(self._print(base))
        if _divisor(expr):   # (a power alone, as sympy.cse makes one: _c2 = h**(-2))
            return f"({self.divisions(sympy.S.One, [expr])})"
        return self.power(base, e, precedence(expr))

    def _print_Mul(self, expr):
        """A product with a denominator divides by its factors one at a time, x/h/h and x/v/sqrt(v), not x/(h*h)
        or x/v**1.5: h*h leaves float32's range at |h| < 1e-19 or > 1e19 (x / h's derivative was inf or 0 there,
        where torch's is finite), as v**1.5 does at v > 5e25 (a layer norm's variance)."""
        num, den = [], []
        for f in sympy.Mul.make_args(expr):
            (den if _divisor(f) else num).append(f)
        if not den:
            return super()._print_Mul(expr)
        return self.divisions(sympy.Mul(*num), den)

    def divisions(self, head, divisors):
        """head / each of the divisors' factors in turn (the divisors are powers that _divisor takes)"""
        # (a sum bracketed; a product, negative or not, reads left to right)
        parts = [f"({self._print(head)})" if head.is_Add else self._print(head)]
        for f in divisors:   # a divisor bracketed unless a name, a number or a call
            base, whole = self.parenthesize(f.base, PRECEDENCE["Func"], strict=True), -f.exp
            parts += [base] * int(whole)
            if whole.q == 2:   # the half: a square root
                parts.append(self._print_Pow(sympy.Pow(f.base, sympy.S.Half, evaluate=False)))
        return "/".join(parts)

    def products(self, base, e, prec):
        """x**n for 1 <= n <= 4 as a product (exact, and no pow call), else None (x**-n is divisions)"""
        if not (e.is_Integer and 1 <= e <= 4):
            return None
        return "(" + "*".join([self.parenthesize(base, prec)] * int(e)) + ")"

    def _print_Rational(self, expr):
        return self.literal(expr)

    _print_Float = _print_NumberSymbol = _print_Pi = _print_Exp1 = _print_Rational
    _print_Infinity = _print_NegativeInfinity = _print_NaN = _print_Rational   # (float('inf') a user wrote)

    def doprint(self, expr, *a, **k):
        if getattr(expr, "is_number", False):
            return self.literal(expr)
        return super().doprint(expr, *a, **k)


def _python_float(v):
    """a float literal in Python (and Triton) source: repr, but inf and nan are no names there"""
    v = float(v)
    return repr(v) if math.isfinite(v) else f"float('{v}')"


class TorchPrinter(_CodePrinter, StrPrinter):
    """torch code over tensors (leaves are tensors of matching or broadcastable shape)."""
    language = "torch"

    def literal(self, v):
        return _python_float(v)

    def rsqrt(self, x):
        return f"torch.rsqrt({x})"

    def power(self, base, e, prec):
        return StrPrinter._print_Pow(self, sympy.Pow(base, e, evaluate=False))


class CppPrinter(_CodePrinter, C99CodePrinter):
    """C++ in `scalar_t` arithmetic: fractional constants are cast, so float code never promotes to double
    (integers need no cast: int with float is float); small integer powers are products."""
    language = "cpp"

    def literal(self, v):
        v = float(v)
        if math.isnan(v):
            return "std::numeric_limits<scalar_t>::quiet_NaN()"
        if math.isinf(v):
            return f"{'-' if v < 0 else ''}std::numeric_limits<scalar_t>::infinity()"
        return f"scalar_t({v!r})"

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Symbol(self, expr):
        # a dimension (mean's divisor) is a run-time size, _dim_<name> (SizePrinter); a leaf or temp a variable
        if expr.is_integer and expr.is_positive:
            return f"scalar_t(_dim_{expr.name})"
        return super()._print_Symbol(expr)

    def rsqrt(self, x):
        return f"(scalar_t(1)/std::sqrt({x}))"

    def power(self, base, e, prec):
        return self.products(base, e, prec) or f"std::pow({self._print(base)}, {self.literal(e)})"


class TritonPrinter(_CodePrinter, StrPrinter):
    """triton.language over (rows, features) blocks."""
    language = "triton"

    def literal(self, v):
        return _python_float(v)

    _print_Integer = _CodePrinter._print_Rational

    def rsqrt(self, x):
        return f"(1.0 / tl.sqrt({x}))"

    def power(self, base, e, prec):
        product = self.products(base, e, prec)
        if product:
            return product
        x = self._print(base)
        if float(e).is_integer():   # (an Integer, or a Float past C++'s int: 1e20)
            # triton has no pow: exp(n log|x|), with the sign an odd power keeps (x**5 of a negative x is not NaN)
            magnitude = f"tl.exp({self.literal(e)} * tl.log(tl.abs({x})))"
            return f"(tl.where({x} < 0, -1.0, 1.0) * {magnitude})" if int(e) % 2 else magnitude
        return f"tl.exp({self.literal(e)} * tl.log({x}))"


class SizePrinter(C99CodePrinter):
    """Integer size expressions (2*H, (I + H)/2) in int64_t arithmetic; exact because sizes are validated
    to be integers, and a quotient is printed once over a common denominator."""

    def doprint(self, expr, assign_to=None):
        num, den = sympy.fraction(sympy.together(sympy.sympify(expr)))
        text = super().doprint(sympy.expand(num))
        if den != 1:
            return f"(({text})/{int(den)})"
        # a sum bracketed: a size is an operand of * (sizeof(scalar_t) * (_dim_H - 1)), never of / or %
        return f"({text})" if num.is_Add else text

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Symbol(self, expr):
        # dimensions live in the generated code as _dim_<name>: user names cannot start with "_"
        return f"_dim_{expr.name}"


math_str = MathPrinter().doprint
torch_str = TorchPrinter().doprint
cpp_str = CppPrinter().doprint
tl_str = TritonPrinter().doprint
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
