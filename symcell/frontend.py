"""Tracing a step function with symbolic tensors, and every check that can run before data flows."""
import inspect

import sympy

from . import dims as D
from .functions import UNARY
from .ir import CellIR, Node

_MAX_LABEL = 60


def _short(text):
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 3] + "..."


class Sym:
    """A symbolic tensor: one feature vector per batch row, of a symbolic size."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    @property
    def size(self):
        return self.node.size

    def _desc(self):
        return f"{self.node.label} (size {D.fmt(self.node.size)})"

    def __repr__(self):
        return f"Sym({self._desc()})"

    # arithmetic ------------------------------------------------------------------------------------
    def __add__(self, o): return _binary("add", "+", self, o)
    def __radd__(self, o): return _binary("add", "+", o, self)
    def __sub__(self, o): return _binary("sub", "-", self, o)
    def __rsub__(self, o): return _binary("sub", "-", o, self)
    def __mul__(self, o): return _binary("mul", "*", self, o)
    def __rmul__(self, o): return _binary("mul", "*", o, self)
    def __truediv__(self, o): return _binary("div", "/", self, o)
    def __rtruediv__(self, o): return _binary("div", "/", o, self)

    def __neg__(self):
        return Sym(Node("pw", (self.node,), self.size, "neg", _short(f"-{self.node.label}")))

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise TypeError(f"{self.node.label} ** {exponent!r}: the exponent must be a Python number")
        return Sym(Node("pw", (self.node,), self.size, ("pow", float(exponent)),
                        _short(f"{self.node.label}**{exponent}")))

    def __rpow__(self, base):
        raise TypeError(f"{base!r} ** {self.node.label}: only a constant exponent is supported; "
                        f"write exp({self.node.label} * log(base))")

    def __matmul__(self, o):
        raise TypeError(f"{self.node.label} @ ...: the left operand of @ must be a 2-d parameter")

    def __rmatmul__(self, o):
        raise TypeError(f"... @ {self.node.label}: the left operand of @ must be a 2-d parameter")

    def __getitem__(self, k):
        raise TypeError(f"{self.node.label}[...]: indexing is not supported; use symcell.split")

    def __bool__(self):
        raise TypeError(f"{self.node.label} is symbolic: Python control flow on it (if, and, or, comparisons) "
                        "cannot be traced; write the cell with the supported functions")

    def __float__(self):
        raise TypeError(f"{self.node.label} is symbolic and has no value at definition time")

    __int__ = __index__ = __float__
    __array_ufunc__ = None  # numpy defers to us, so the operator methods above raise clear errors

    def __array__(self, *a, **k):
        raise TypeError(f"{self.node.label} is symbolic: numpy functions are not supported; use symcell's")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        sym = next((a for a in _flatten(args, kwargs) if isinstance(a, (Sym, Matrix))), None)
        who = sym.node.label if isinstance(sym, Sym) else getattr(sym, "name", "?")
        raise TypeError(f"torch.{name} was called on the symbolic tensor {who!r}; torch functions cannot be "
                        f"traced. Use symcell's: {', '.join(UNARY)}, cat, split")


class Matrix:
    """A 2-d parameter: only `W @ v` is allowed."""

    def __init__(self, name, shape):
        self.name, self.shape = name, shape

    def __matmul__(self, v):
        if isinstance(v, Matrix):
            raise TypeError(f"{self.name} @ {v.name}: the right operand of @ must be a vector, not the 2-d "
                            f"parameter {v.name}")
        if not isinstance(v, Sym):
            raise TypeError(f"{self.name} @ {v!r}: the right operand of @ must be a symbolic vector")
        rows, cols = self.shape
        if not D.same_size(cols, v.size):
            raise ValueError(f"{self.name} @ {v.node.label}: {self.name} has shape ({D.fmt(rows)}, {D.fmt(cols)}) "
                             f"but {v.node.label} has size {D.fmt(v.size)}")
        label = _short(f"{self.name} @ {v.node.label}")
        return Sym(Node("matmul", (v.node,), rows, ((self.name, sympy.Integer(0), cols),), label))

    def __rmatmul__(self, v):
        raise TypeError(f"... @ {self.name}: write {self.name} @ v (the matrix on the left)")

    def _misuse(self, *a, **k):
        raise TypeError(f"{self.name} is a 2-d parameter ({', '.join(map(D.fmt, self.shape))}); it can only "
                        f"be used as `{self.name} @ v`. Vector parameters (1-d) are used elementwise")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _misuse
    __truediv__ = __rtruediv__ = __neg__ = __pow__ = __getitem__ = _misuse

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return Sym.__torch_function__(func, types, args, kwargs)


def _flatten(args, kwargs):
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _operand(v, op, other):
    if isinstance(v, Sym):
        return v.node
    if isinstance(v, Matrix):
        v._misuse()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"cannot apply {op!r} to {v!r} and {other}: operands must be symbolic tensors or "
                        f"Python numbers (got {type(v).__name__})")
    return Node("const", (), None, float(v), repr(v))


def _binary(fn, sym, a, b):
    other = a if isinstance(a, Sym) else b
    na, nb = _operand(a, sym, other._desc()), _operand(b, sym, other._desc())
    if not D.same_size(na.size, nb.size):
        raise ValueError(f"cannot compute {na.label} {sym} {nb.label}: {na.label} has size {D.fmt(na.size)} "
                         f"but {nb.label} has size {D.fmt(nb.size)}")
    size = na.size if na.size is not None else nb.size
    return Sym(Node("pw", (na, nb), size, fn, _short(f"({na.label} {sym} {nb.label})")))


def _unary(fn):
    def apply(v):
        if not isinstance(v, Sym):
            if isinstance(v, Matrix):
                v._misuse()
            raise TypeError(f"symcell.{fn} expects a symbolic tensor inside a cell definition, got "
                            f"{type(v).__name__}")
        return Sym(Node("pw", (v.node,), v.size, fn, _short(f"{fn}({v.node.label})")))
    apply.__name__ = fn
    apply.__doc__ = f"{fn}(v), elementwise."
    return apply


# every user function of the table (functions.py), as symcell.<name>
FUNCTIONS = {name: _unary(name) for name in UNARY}
globals().update(FUNCTIONS)
__all__ = ["cat", "split", "trace", "Sym", "Matrix", *FUNCTIONS]


def cat(*parts):
    """Concatenate symbolic vectors along features: cat(h, x) has size H + I."""
    if len(parts) == 1 and isinstance(parts[0], (list, tuple)):
        parts = tuple(parts[0])
    if not parts:
        raise TypeError("cat() needs at least one symbolic vector")
    for p in parts:
        if not isinstance(p, Sym):
            raise TypeError(f"cat: every part must be a symbolic vector, got {p!r}")
    if len(parts) == 1:
        return parts[0]
    size = sympy.Add(*[p.size for p in parts])
    label = _short(f"cat({', '.join(p.node.label for p in parts)})")
    return Sym(Node("cat", tuple(p.node for p in parts), size, None, label))


def split(v, chunks):
    """Split a symbolic vector along features into `chunks` equal parts (an int), or parts of the given sizes."""
    if not isinstance(v, Sym):
        raise TypeError(f"split: the first argument must be a symbolic vector, got {v!r}")
    if isinstance(chunks, bool):
        raise TypeError("split: chunks must be an int or a list of sizes")
    if isinstance(chunks, int):
        if chunks <= 0:
            raise ValueError(f"split({v.node.label}, {chunks}): the number of chunks must be positive")
        sizes = [v.size / chunks] * chunks
    elif isinstance(chunks, (list, tuple)):
        sizes = [D.parse_size(s, f"split({v.node.label})") for s in chunks]
        if not D.same_size(sympy.Add(*sizes), v.size):
            raise ValueError(f"split({v.node.label}, {list(chunks)}): the sizes add up to "
                             f"{D.fmt(sympy.Add(*sizes))} but {v.node.label} has size {D.fmt(v.size)}")
    else:
        raise TypeError(f"split: chunks must be an int or a list of sizes, got {chunks!r}")
    out, start = [], sympy.Integer(0)
    for k, s in enumerate(sizes):
        stop = sympy.simplify(start + s)
        out.append(Sym(Node("slice", (v.node,), s, (start, stop), _short(f"split({v.node.label})[{k}]"))))
        start = stop
    return tuple(out)


# --- tracing --------------------------------------------------------------------------------------------

def _parse_decls(kind, decls, vector_only):
    if not isinstance(decls, dict):
        raise TypeError(f"{kind} must be a dict of name -> size, got {type(decls).__name__}")
    out = []
    for name, spec in decls.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{kind}: {name!r} is not a valid name")
        if vector_only:
            out.append((name, D.parse_size(spec, f"{kind} {name!r}")))
            continue
        shape = (spec,) if isinstance(spec, (int, str)) else tuple(spec)
        if len(shape) not in (1, 2):
            raise ValueError(f"params {name!r}: shape must be 1-d (used elementwise) or 2-d (used as "
                             f"{name} @ v), got {spec!r}")
        out.append((name, tuple(D.parse_size(s, f"params {name!r}") for s in shape)))
    return tuple(out)


def trace(fn, inputs, state, params, outputs=None, name=None):
    """Run the step function once on symbolic tensors and return its CellIR."""
    name = name or getattr(fn, "__name__", "cell")
    ins = _parse_decls("inputs", inputs, True)
    sts = _parse_decls("state", state, True)
    prs = _parse_decls("params", params or {}, False)
    if not ins:
        raise ValueError(f"{name}: declare at least one input")
    if not sts:
        raise ValueError(f"{name}: declare at least one state")
    declared = [n for n, _ in ins] + [n for n, _ in sts] + [n for n, _ in prs]
    dup = sorted({n for n in declared if declared.count(n) > 1})
    if dup:
        raise ValueError(f"{name}: the name(s) {dup} are declared more than once across inputs, state, params")

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: the step function must be a Python function") from None
    arg_names = [p.name for p in sig.parameters.values()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)]
    undeclared = [a for a in arg_names if a not in declared
                  and sig.parameters[a].default is inspect.Parameter.empty]
    if undeclared:
        raise TypeError(f"{name}: step function argument(s) {undeclared} are not declared in inputs, state or "
                        f"params (declared: {declared})")
    unused = [d for d in declared if d not in arg_names]
    if unused:
        raise TypeError(f"{name}: declared name(s) {unused} are not arguments of the step function "
                        f"{name}({', '.join(arg_names)})")

    syms = {}
    for n, s in ins:
        syms[n] = Sym(Node("input", (), s, n, n))
    for n, s in sts:
        syms[n] = Sym(Node("state", (), s, n, n))
    for n, shape in prs:
        syms[n] = Sym(Node("param", (), shape[0], n, n)) if len(shape) == 1 else Matrix(n, shape)

    result = fn(**syms)
    if not isinstance(result, (tuple, list)):
        result = (result,)
    if len(result) != len(sts):
        raise ValueError(f"{name}: the step function returned {len(result)} value(s) but {len(sts)} state(s) are "
                         f"declared ({', '.join(n for n, _ in sts)})")
    returns = []
    for (sn, ssize), r in zip(sts, result):
        if not isinstance(r, Sym):
            raise TypeError(f"{name}: the new state {sn!r} must be a symbolic vector, got {r!r}")
        if not D.same_size(r.size, ssize):
            raise ValueError(f"{name}: the new state {sn!r} is {r.node.label} of size {D.fmt(r.size)}, but state "
                             f"{sn!r} is declared with size {D.fmt(ssize)}")
        returns.append(r.node)

    state_names = [n for n, _ in sts]
    if outputs is None:
        outputs = (state_names[0],)
    elif isinstance(outputs, str):
        outputs = (outputs,)
    outputs = tuple(outputs)
    bad = [o for o in outputs if o not in state_names]
    if bad or not outputs:
        raise ValueError(f"{name}: outputs {list(outputs)} must name declared states ({state_names})")

    dim_names = set()
    for _, s in ins + sts:
        dim_names |= {str(x) for x in s.free_symbols}
    for _, shape in prs:
        for s in shape:
            dim_names |= {str(x) for x in s.free_symbols}
    return CellIR(name, ins, sts, prs, tuple(returns), outputs, tuple(sorted(dim_names)))
