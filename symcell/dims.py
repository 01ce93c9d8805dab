"""Sizes as expressions in named dimensions ("3*H", "H+I").

sympy.sympify would read "I" as the imaginary unit and "E" as Euler's number, so every identifier in a size
string becomes an explicit positive integer symbol before parsing.
"""
import keyword
import re

import sympy
from sympy.parsing.sympy_parser import parse_expr

_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_ALLOWED = re.compile(r"^[A-Za-z_0-9+\-*/() ]+$")


def dim_symbol(name):
    return sympy.Symbol(name, positive=True, integer=True)


def parse_size(spec, what):
    """An int or a size string -> sympy expression. `what` names the thing for error messages."""
    if isinstance(spec, bool):
        raise TypeError(f"{what}: size must be an int or a string such as '3*H', got {spec!r}")
    if isinstance(spec, int):
        if spec <= 0:
            raise ValueError(f"{what}: size must be positive, got {spec}")
        return sympy.Integer(spec)
    if isinstance(spec, sympy.Expr):
        # (a user's sympy.Symbol("H") is not this module's positive integer H: "W has shape (H, H+I) but
        # cat(h, x) has size H+I" compared two different H)
        if spec.is_number:
            if not (spec.is_integer and spec > 0):
                raise ValueError(f"{what}: size must be a positive integer, got {spec}")
            return sympy.Integer(spec)
        spec = str(spec)   # (read as its text: the names, the checks and the messages of a size string)
    if not isinstance(spec, str) or not spec.strip() or not _ALLOWED.match(spec):
        raise TypeError(f"{what}: size must be an int or an expression in named dimensions such as '3*H', "
                        f"got {spec!r}")
    names = {n: dim_symbol(n) for n in _IDENT.findall(spec)}
    bad = [n for n in names if keyword.iskeyword(n)]
    if bad:   # (parsing said "invalid syntax", or "unsupported operand" for None and True)
        raise ValueError(f"{what}: size {spec!r} names the dimension {bad[0]!r}, a Python keyword, which a cell "
                         "cannot take as an argument; choose another name")
    # (each name read as an alias of its own: the parser writes a number as Integer(2), so a dimension named
    # Integer, Symbol or Float took the parser's name: "'Symbol' object is not callable")
    alias = {n: f"_d{k}" for k, n in enumerate(names)}
    text = re.sub(r"(?<![\w.])[A-Za-z_][A-Za-z_0-9]*", lambda m: alias.get(m.group(0), m.group(0)), spec)
    try:
        expr = parse_expr(text, local_dict={alias[n]: v for n, v in names.items()}, global_dict={"Integer": sympy.Integer},
                          evaluate=True)
    except Exception as e:  # noqa: BLE001 - sympy raises many kinds; all mean the same to the user
        raise ValueError(f"{what}: cannot parse size {spec!r}: {e}") from None
    expr = sympy.sympify(expr)
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ValueError(f"{what}: size {spec!r} divides by zero")
    return expr


def same_size(a, b):
    """True when the two size expressions are equal for every binding of the dimensions."""
    if a is None or b is None:
        return True
    return sympy.expand(a - b) == 0


def is_one(size):
    """A size of exactly 1 (declared so, or a reduction's): such a value broadcasts against any vector."""
    return size is not None and sympy.sympify(size) == 1


def broadcast(*sizes):
    """The size of an elementwise result of operands of these sizes (None: a number), or False when they do not
    broadcast: equal sizes, or 1 (or a number) against anything."""
    known = [s for s in sizes if s is not None and not is_one(s)]
    for s in known[1:]:
        if not same_size(s, known[0]):
            return False
    if known:
        return known[0]
    return next((s for s in sizes if s is not None), None)


def fmt(size):
    return str(size).replace(" ", "") if size is not None else "scalar"


def bind(size, dims, what):
    """Substitute concrete dimensions; the result must be a positive integer."""
    val = sympy.sympify(size).subs(dims)
    if not val.is_number:
        missing = sorted(str(s) for s in val.free_symbols)
        raise TypeError(f"{what}: size {fmt(size)} needs the dimension(s) {', '.join(missing)}")
    if not (val.is_integer and val > 0):
        num, den = sympy.fraction(sympy.together(sympy.sympify(size)))
        hint = f" ({fmt(num)} a multiple of {den})" if val.is_positive and den.is_Integer and den > 1 else ""
        raise ValueError(f"{what}: size {fmt(size)} is {val} for {_fmt_dims(dims)}; it must be a positive "
                         f"integer{hint}")
    return int(val)


def _fmt_dims(dims):
    return ", ".join(f"{k}={v}" for k, v in sorted((str(k), v) for k, v in dims.items()))
