"""Tracing a step function with symbolic tensors, and every check that can run before data flows."""
import builtins
import dataclasses
import functools
import inspect
import numbers
import re

import sympy
import torch

from . import dims as D
from .functions import CONDITIONS, USER
from .ir import CellIR, Node, refuse_parameter_part, walk

_MAX_LABEL = 60


def _grouped(label):
    """a label as an operand of a binary operator in a message: in brackets where it has an operator of its own"""
    return label if " " not in label or (label.startswith("(") and label.endswith(")")) else f"({label})"


def _ungrouped(label):
    """a label as a function's argument: without the brackets around it all"""
    if not (label.startswith("(") and label.endswith(")")):
        return label
    depth = 0
    for k, ch in enumerate(label):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and k < len(label) - 1:   # (the first bracket closes before the end: "(a) * (b)")
            return label
    return label[1:-1]


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

    def __format__(self, spec):
        # (print(f"{h:.3f}") while the cell is defined: object's "unsupported format string passed to
        # Sym.__format__" named no value and no reason)
        if not spec:
            return repr(self)
        raise TypeError(f"{self.node.label}: format {spec!r} needs a value, and {self.node.label} has none: it is "
                        "symbolic while the cell is defined (the step runs once, on symbols, not on each call's "
                        "tensors); print it without a format to see its expression, or print the tensors the "
                        "module returns")

    # arithmetic ------------------------------------------------------------------------------------
    def __add__(self, o): return _binary("add", "+", self, o)
    def __radd__(self, o): return _binary("add", "+", o, self)
    def __sub__(self, o): return _binary("sub", "-", self, o)
    def __rsub__(self, o): return _binary("sub", "-", o, self)
    def __mul__(self, o): return _binary("mul", "*", self, o)
    def __rmul__(self, o): return _binary("mul", "*", o, self)
    def __truediv__(self, o): return _binary("div", "/", self, o)
    def __rtruediv__(self, o): return _binary("div", "/", o, self)
    # comparisons give a condition for where(); Python reflects 0 < x into x > 0
    def __gt__(self, o): return _binary("gt", ">", self, o)
    def __ge__(self, o): return _binary("ge", ">=", self, o)
    def __lt__(self, o): return _binary("lt", "<", self, o)
    def __le__(self, o): return _binary("le", "<=", self, o)

    def __eq__(self, o):
        # (not Python's identity, which made `1.0 * (x == h)` the constant 0 without a word)
        raise TypeError(f"{self.node.label} == or != ...: equality of symbolic values is not supported (an exact "
                        "float comparison, whose derivative is 0 almost everywhere); compare with <, <=, >, >= in "
                        "symcell.where, e.g. where(abs(a - b) <= tol, ...)")

    __ne__ = __eq__
    __hash__ = object.__hash__   # (Syms stay usable as dict keys and set members, by identity)

    # conditions combine as torch's bool tensors do, by their values 0 and 1: a & b is a * b > 1/2, a | b is
    # a + b > 1/2, ~a is a < 1/2 (each a condition again, for where)
    def __and__(self, o): return _logical("&", self, o)
    def __rand__(self, o): return _logical("&", o, self)
    def __or__(self, o): return _logical("|", self, o)
    def __ror__(self, o): return _logical("|", o, self)

    def __invert__(self):
        if not self.is_condition:
            raise TypeError(f"~{self.node.label}: ~ negates a condition (a comparison such as h > 0); for a number "
                            f"write 1 - {self.node.label} or -{self.node.label}")
        return _relabel(self < 0.5, f"~{self.node.label}")

    def _unsupported(self, *a):
        raise TypeError(f"{self.node.label}: //, %, round, floor, ceil and trunc of symbolic values are not "
                        "supported (steps that are piecewise constant, with derivative 0); write the cell with "
                        "symcell's functions (where, clamp, sign, ...)")

    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __divmod__ = __rdivmod__ = _unsupported
    __round__ = __floor__ = __ceil__ = __trunc__ = _unsupported

    def __abs__(self):
        return FUNCTIONS["abs"](self)

    @property
    def is_condition(self):
        return self.node.op == "pw" and self.node.attr in CONDITIONS.values()

    def __neg__(self):
        return Sym(Node("pw", (self.node,), self.size, "neg", _short(f"-{self.node.label}")))

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        base, exponent = _grouped(self.node.label), _zero_d(exponent)
        if isinstance(exponent, Sym):   # (Griffin's RG-LRU writes its gate a = sigmoid(L) ** (c * r))
            e = _grouped(exponent.node.label)
            raise TypeError(f"{base} ** {e}: a symbolic exponent is not supported; for a positive base write "
                            f"exp({e} * log({_ungrouped(self.node.label)}))")
        if not _is_number(exponent):
            hint = " (a 0-d tensor's: write float(t))" if isinstance(exponent, torch.Tensor) else ""
            raise TypeError(f"{base} ** {exponent!r}: the exponent must be a Python number{hint}")
        return Sym(Node("pw", (self.node,), self.size, ("pow", float(exponent)),
                        _short(f"{self.node.label}**{exponent}")))

    def __rpow__(self, base):
        raise TypeError(f"{base!r} ** {self.node.label}: only a constant exponent is supported; "
                        f"write exp({self.node.label} * log(base))")

    def __matmul__(self, o):
        if isinstance(o, Matrix):   # (torch's row-vector habit, x @ W.T)
            raise TypeError(f"{self.node.label} @ {o.name}: write {o.name} @ {self.node.label} (the matrix on the "
                            f"left: {o.name} of shape (out, in) times a vector of size in, as nn.Linear's weight)")
        kind = "a parameter of one value" if D.is_one(self.size) else f"a 1-d parameter of size {D.fmt(self.size)}"
        hint = (f" ({self.node.label} is {kind}, used elementwise: {self.node.label} * {_label(o)})"
                if self.node.op == "param" else "")
        raise TypeError(f"{self.node.label} @ {_what(o)}: the left operand of @ must be a 2-d parameter{hint}")

    def __rmatmul__(self, o):
        hint = " (a tensor the step reads is a parameter: declare it in params=)" if isinstance(o, torch.Tensor) else ""
        raise TypeError(f"{_what(o)} @ {self.node.label}: the left operand of @ must be a 2-d parameter{hint}")

    def __getitem__(self, k):
        raise TypeError(f"{self.node.label}[...]: indexing is not supported; use symcell.split")

    def __len__(self):
        raise TypeError(f"len({self.node.label}): {self.node.label} is one symbolic vector a row, of size "
                        f"{D.fmt(self.size)}, a dimension with no value while the cell is defined; write "
                        "symcell.split to take it apart, symcell.sum or symcell.mean to reduce it")

    def __iter__(self):   # (Python's sum() iterated it, and said indexing is not supported)
        raise TypeError(f"{self.node.label} is one symbolic vector, not a sequence to iterate: Python's sum(), list() "
                        "and loops over it are not supported; write symcell.sum or symcell.mean to reduce it, "
                        "symcell.split to take it apart")

    def __bool__(self):
        if self.is_condition:
            raise TypeError(f"{self.node.label} is a symbolic condition, true in some rows and features and false "
                            "in others: Python's if/and/or/not and max()/min() cannot decide it while the cell is "
                            f"defined; write symcell.where({self.node.label}, a, b), or symcell.maximum(a, b) / "
                            "symcell.minimum(a, b) for max() / min()")
        raise TypeError(f"{self.node.label} is symbolic: Python control flow on it (if, and, or, max, min) cannot "
                        "be traced; write the cell with symcell's functions (where, maximum, minimum, clamp, ...)")

    def __float__(self):
        raise TypeError(f"{self.node.label} is symbolic and has no value at definition time: math's functions and "
                        "float() need a number; write symcell's (symcell.log, symcell.exp, symcell.sqrt, ...)")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(_no_method(self.node.label, name))

    __int__ = __index__ = __float__

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """numpy's operators with a numpy number on the left (np.float32(0.5) * h) are ours on its value; its
        functions (np.tanh(h)) say which to write instead"""
        methods = _NUMPY_OPERATORS.get(ufunc.__name__)
        if methods is None or method != "__call__" or kwargs:
            raise TypeError(f"numpy.{ufunc.__name__} was called on the symbolic tensor {self.node.label!r}; numpy "
                            f"functions cannot be traced. Use symcell's: {', '.join(FUNCTIONS)}, cat, split")
        # our operator on the other operand (a number's value; an array stays one, which _operand refuses)
        args = [_zero_d(v) for v in inputs]
        if len(args) == 1:
            return getattr(self, methods[0])()
        first = isinstance(args[0], Sym)
        return getattr(args[0] if first else args[1], methods[0 if first else 1])(args[1] if first else args[0])

    def __array__(self, *a, **k):
        raise TypeError(f"{self.node.label} is symbolic: numpy functions are not supported; use symcell's")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        sym = next((a for a in _flatten(args, kwargs) if isinstance(a, (Sym, Matrix))), None)
        who = sym.node.label if isinstance(sym, Sym) else getattr(sym, "name", "?")
        raise TypeError(f"torch.{name} was called on the symbolic tensor {who!r}; torch functions cannot be "
                        f"traced. Use symcell's: {', '.join(FUNCTIONS)}, cat, split")


# numpy's ufuncs that are Python operators (numpy calls __array_ufunc__ for `np.float32(2) * h`)
_NUMPY_OPERATORS = {   # name -> (our method with the symbol on the left, on the right)
    "add": ("__add__", "__radd__"), "subtract": ("__sub__", "__rsub__"), "multiply": ("__mul__", "__rmul__"),
    "true_divide": ("__truediv__", "__rtruediv__"), "divide": ("__truediv__", "__rtruediv__"),
    "power": ("__pow__", "__rpow__"), "matmul": ("__matmul__", "__rmatmul__"),
    "floor_divide": ("__floordiv__", "__rfloordiv__"), "remainder": ("__mod__", "__rmod__"),
    "greater": ("__gt__", "__lt__"), "greater_equal": ("__ge__", "__le__"), "less": ("__lt__", "__gt__"),
    "less_equal": ("__le__", "__ge__"), "equal": ("__eq__", "__eq__"), "not_equal": ("__ne__", "__ne__"),
    "bitwise_and": ("__and__", "__rand__"), "bitwise_or": ("__or__", "__ror__"),
    "negative": ("__neg__",), "positive": ("__pos__",), "absolute": ("__abs__",), "invert": ("__invert__",)}


class _Blocks:
    """Row blocks of parameters that a step's matmuls use as weights of their own: split(W, k) and the blocks of a
    3-d parameter. Each becomes a 2-d parameter of the kernels, rows r0:r1 of its parameter's 2-d form (a 3-d
    (G, m, n) is (G*m, n) in memory), a view the module makes on each call (Binding.kernel_params)."""

    def __init__(self, taken):
        self.taken, self.names = set(taken), {}

    def name(self, param, r0, r1, hint):
        key = (param, r0, r1)
        if key not in self.names:
            name, k = hint, 1
            while name in self.taken:
                name, k = f"{hint}_{k}", k + 1
            self.taken.add(name)
            self.names[key] = name
        return self.names[key]

    def params(self, shapes):
        """the blocks used, as ((name, (rows, cols)), ...) and ((name, param, r0, r1), ...)"""
        out = [(n, (sympy.simplify(r1 - r0), shapes[p][-1])) for (p, r0, r1), n in self.names.items()]
        return tuple(out), tuple((n, p, r0, r1) for (p, r0, r1), n in self.names.items())


# tensor methods a cell's author reaches for, and what symcell writes instead
_INSTEAD = {"chunk": "split(v, k) (k equal pieces) or split(v, [sizes])",
            "split": "symcell.split(v, k)", "T": "W @ v (a matrix parameter's rows are its outputs: declare it "
            "(out, in))", "t": "W @ v", "transpose": "W @ v", "sum": "symcell.sum(v)", "mean": "symcell.mean(v)",
            "exp": "symcell.exp(v)", "tanh": "symcell.tanh(v)", "sigmoid": "symcell.sigmoid(v)",
            "clamp": "symcell.clamp(v, lo, hi)", "abs": "symcell.abs(v)", "view": "split and cat",
            "reshape": "split and cat", "unsqueeze": "a vector as it is (values are per row already)"}


def _no_method(label, name):
    instead = _INSTEAD.get(name, "symcell's functions (" + ", ".join(FUNCTIONS) + ", cat, split)")
    return f"{label} is a symbolic value of the cell, without tensor methods such as .{name}: write {instead}"


class Matrix:
    """A 2-d parameter, or a block of rows of one (split(W, k)): only `W @ v` is allowed."""

    def __init__(self, name, shape, blocks=None, source=None):
        self.name, self.shape, self._blocks = name, shape, blocks
        self.source = source    # (parameter, r0, r1) for a block of another's rows; None: the parameter itself

    def __getattr__(self, name):
        if name.startswith("_") or name in ("name", "shape", "source"):
            raise AttributeError(name)
        raise AttributeError(_no_method(self.name, name))

    def _weight(self):
        """the name the kernels know this matrix by"""
        if self.source is None:
            return self.name
        return self._blocks.name(*self.source, hint=self.name)

    def __matmul__(self, v):
        if isinstance(v, (Matrix, Blocks)):
            raise TypeError(f"{self.name} @ {v.name}: the right operand of @ must be a vector, not the parameter "
                            f"{v.name}")
        if not isinstance(v, Sym):
            raise TypeError(f"{self.name} @ {v!r}: the right operand of @ must be a symbolic vector")
        rows, cols = self.shape
        if not D.same_size(cols, v.size):
            # (a block of split(W) is named W_0, W_1, ...: say whose rows it is, a name the user never wrote)
            block = f" (rows {D.fmt(self.source[1])}:{D.fmt(self.source[2])} of {self.source[0]}, from split)" \
                if self.source else ""
            raise ValueError(f"{self.name} @ {v.node.label}: {self.name}{block} has shape ({D.fmt(rows)}, "
                             f"{D.fmt(cols)}) but {v.node.label} has size {D.fmt(v.size)}")
        if not any(n.op in ("input", "state") for n in walk([v.node])):
            # a GEMM reads one operand row per batch row; this operand is one vector shared by all of them
            raise TypeError(f"{self.name} @ {v.node.label}: {v.node.label} depends on no input and no state, so "
                            f"{self.name} @ {v.node.label} is one constant vector for every row and step; "
                            f"declare that vector as a parameter of size {D.fmt(rows)} instead")
        for part in v.node.args if v.node.op == "cat" else ():   # (where written; the rest when lowered: schedule.py)
            refuse_parameter_part(f"{self.name} @ {v.node.label}", part, D.fmt(rows))
        label = _short(f"{self.name} @ {v.node.label}")
        return Sym(Node("matmul", (v.node,), rows, ((self._weight(), sympy.Integer(0), cols),), label))

    def __rmatmul__(self, v):
        raise TypeError(f"... @ {self.name}: write {self.name} @ v (the matrix on the left)")

    def _split(self, chunks):
        """split(W, k) or split(W, [sizes]): blocks of W's rows, each a matrix of its own"""
        rows, cols = self.shape
        sizes = _chunk_sizes(f"split({self.name})", rows, chunks)
        param, base = self.source[:2] if self.source else (self.name, sympy.Integer(0))
        out, start = [], sympy.Integer(0)
        for k, size in enumerate(sizes):
            stop = sympy.simplify(start + size)
            out.append(Matrix(f"{self.name}_{k}", (size, cols), self._blocks,
                              (param, sympy.simplify(base + start), sympy.simplify(base + stop))))
            start = stop
        return tuple(out)

    def _misuse(self, *a, **k):
        raise TypeError(f"{self.name} is a 2-d parameter ({', '.join(map(D.fmt, self.shape))}); it can only "
                        f"be used as `{self.name} @ v`, or split into blocks of rows with symcell.split. Vector "
                        f"parameters (1-d) are used elementwise")

    def _scaled(self, written, instead):
        """`0.5 * W @ h`, `-W @ h`, `h * W @ x`: Python groups * and @ (equal precedence) from the left, so the
        scaling reached the matrix, not the product"""
        raise TypeError(f"{written}: {self.name} is a 2-d parameter ({', '.join(map(D.fmt, self.shape))}), used "
                        f"only as `{self.name} @ v` (where an `@ v` follows, Python reads `{written} @ v` as "
                        f"`({written}) @ v`: * and @ bind equally, from the left; write `{instead}`)")

    def __mul__(self, o):   # (W * h is elementwise use; W * 0.5 @ h a scaling)
        if _is_number(_zero_d(o)):
            self._scaled(f"{self.name} * {_label(o)}", f"({self.name} @ v) * {_label(o)}")
        self._misuse()

    def __rmul__(self, o):
        self._scaled(f"{_label(o)} * {self.name}", f"{_label(o)} * ({self.name} @ v)")

    def __truediv__(self, o):
        if _is_number(_zero_d(o)):
            self._scaled(f"{self.name} / {_label(o)}", f"({self.name} @ v) / {_label(o)}")
        self._misuse()

    def __neg__(self):
        self._scaled(f"-{self.name}", f"-({self.name} @ v)")

    __add__ = __radd__ = __sub__ = __rsub__ = _misuse
    __rtruediv__ = __pow__ = __getitem__ = __abs__ = _misuse
    __gt__ = __ge__ = __lt__ = __le__ = _misuse

    def __format__(self, spec):   # (as Sym's: f"{W:.2f}" said "unsupported format string passed to ...")
        return repr(self) if not spec else self._misuse()

    def __repr__(self):   # (in messages such as "the new state 'h' must be a symbolic vector, got ...")
        return f"the {len(self.shape)}-d parameter {self.name} ({', '.join(map(D.fmt, self.shape))})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return Sym.__torch_function__(func, types, args, kwargs)


class Blocks(Matrix):
    """A 3-d parameter (G, m, n): `R @ v` multiplies each of the G blocks of n features of v by its own (m, n)
    matrix, one head each, and concatenates the G results (size G*m): a block-diagonal matmul. G is a number."""

    def __matmul__(self, v):
        G, m, n = self.shape
        if not isinstance(v, Sym):
            return Matrix.__matmul__(self, v)   # its errors
        if not D.same_size(G * n, v.size):
            raise ValueError(f"{self.name} @ {v.node.label}: {self.name} has {G} blocks of shape ({D.fmt(m)}, "
                             f"{D.fmt(n)}), so it takes a vector of size {D.fmt(G * n)}, but {v.node.label} has "
                             f"size {D.fmt(v.size)}")
        parts = split(v, int(G)) if G > 1 else (v,)
        return cat(*[Matrix(f"{self.name}_{g}", (m, n), self._blocks, (self.name, g * m, (g + 1) * m)) @ part
                     for g, part in enumerate(parts)])

    def _split(self, chunks):
        raise TypeError(f"split({self.name}): {self.name} is a 3-d parameter; `{self.name} @ v` applies its "
                        "blocks already")

    def _misuse(self, *a, **k):
        raise TypeError(f"{self.name} is a 3-d parameter ({', '.join(map(D.fmt, self.shape))}); it can only be "
                        f"used as `{self.name} @ v`, a block-diagonal matmul")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _misuse
    __truediv__ = __rtruediv__ = __neg__ = __pow__ = __getitem__ = __abs__ = _misuse
    __gt__ = __ge__ = __lt__ = __le__ = _misuse


def _flatten(args, kwargs):
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _is_number(v):
    """a Python or numpy real number (np.float32(2), np.int64(3)), not a bool"""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _zero_d(v):
    """a 0-d numpy array as its number (numpy hands us one on the other side: np.array(0.5) * h), else v"""
    return v.item() if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0 else v


def _what(v):
    """an operand, shortly, for a message (a tensor by its shape, not its values; a symbolic vector as written)"""
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)}"
    if isinstance(v, Sym):
        return v.node.label
    return getattr(v, "name", None) or type(v).__name__


def _label(v):
    """an operand as the step wrote it: a symbolic vector's label, a number's repr"""
    return _what(v) if isinstance(v, (Sym, Matrix, torch.Tensor)) else repr(v)


def _operand(v, op, other):
    if isinstance(v, Sym):
        return v.node
    if isinstance(v, Matrix):
        v._misuse()
    v = _zero_d(v)
    if not _is_number(v):
        hint = ("; a tensor the step reads is a parameter: declare it in params= (or pass it as an input)"
                if isinstance(v, torch.Tensor) else "")
        raise TypeError(f"cannot apply {op!r} to {v!r} and {other}: operands must be symbolic tensors or "
                        f"Python numbers (got {type(v).__name__}){hint}")
    return Node("const", (), None, float(v), repr(v))


def _relabel(v, label):
    return Sym(dataclasses.replace(v.node, label=_short(label)))


def _logical(op, a, b):
    bad = next((v for v in (a, b) if not (isinstance(v, Sym) and v.is_condition)), None)
    if bad is not None:
        what = bad.node.label if isinstance(bad, Sym) else repr(bad)
        raise TypeError(f"{op} combines conditions (comparisons such as h > 0), got {what}; for numbers write "
                        "* (and), maximum (or)")
    both = a * b if op == "&" else a + b
    return _relabel(both > 0.5, f"({a.node.label} {op} {b.node.label})")


def _binary(fn, sym, a, b):
    if isinstance(b, Matrix) and sym in ("*", "/"):   # (h * W @ x: the vector reached the matrix first)
        b._scaled(f"{_label(a)} {sym} {b.name}", f"{_label(a)} {sym} ({b.name} @ v)")
    other = a if isinstance(a, Sym) else b
    na, nb = _operand(a, sym, other._desc()), _operand(b, sym, other._desc())
    if fn == "div" and nb.op == "const" and nb.attr == 0:
        raise ValueError(f"cannot compute {na.label} / 0: a division by the constant 0 (its infinity has the sign of "
                         f"each value, and 0 / 0 is NaN); write what you mean, e.g. where({na.label} > 0, "
                         "float('inf'), ...)")
    size = D.broadcast(na.size, nb.size)
    if size is False:
        raise ValueError(f"cannot compute {na.label} {sym} {nb.label}: {na.label} has size {D.fmt(na.size)} "
                         f"but {nb.label} has size {D.fmt(nb.size)} (sizes must be equal, or one of them 1)")
    return Sym(Node("pw", (na, nb), size, fn, _short(f"({na.label} {sym} {nb.label})")))


def _function(entry):
    """symcell.<name>(...) for a table entry: symbolic vectors of one size, or Python numbers where the function
    takes several operands (maximum(h, 0)); at least one operand symbolic."""
    fn, params = entry.name, ("v",) if entry.arity == 1 else ("a", "b", "c")[:entry.arity]

    def apply(*args, **kwargs):
        call = f"symcell.{fn}({', '.join(params)})"
        try:   # (by position or by the names help() shows)
            args = signature.bind(*args, **kwargs).args
        except TypeError:
            named = f" ({', '.join(kwargs)} by name)" if kwargs else ""
            raise TypeError(f"{call} takes {entry.arity} argument(s), got {len(args) + len(kwargs)}{named}") from None
        for a in args:
            if isinstance(a, Matrix):
                a._misuse()
        if not any(isinstance(a, Sym) for a in args):
            raise TypeError(f"{call} expects a symbolic tensor inside a cell definition, got "
                            f"{', '.join(type(a).__name__ for a in args)}")
        first = next(a for a in args if isinstance(a, Sym))
        nodes = [_operand(a, fn, first._desc()) for a in args]
        size = D.broadcast(*[n.size for n in nodes])
        if size is False:
            raise ValueError(f"symcell.{fn}: " + ", ".join(f"{n.label} has size {D.fmt(n.size)}" for n in nodes
                                                           if n.size is not None)
                             + " (sizes must be equal, or 1)")
        label = _short(f"{fn}({', '.join(n.label for n in nodes)})")
        return Sym(Node("pw", tuple(nodes), size, fn, label))
    signature = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params])
    apply.__name__, apply.__qualname__, apply.__signature__ = fn, fn, signature
    apply.__doc__ = f"{fn}({', '.join(params)}), elementwise (symcell/functions.py has its derivative rule)."
    return apply


# every user function of the table (functions.py), as symcell.<name>
FUNCTIONS = {name: _function(entry) for name, entry in USER.items()}
_where = FUNCTIONS["where"]


def where(condition, a, b):
    """a where the condition holds, else b, elementwise: the condition is a comparison (h > 0, x <= y), a and b
    symbolic vectors or numbers. The gradient flows to the branch taken only, as torch.where's."""
    if not (isinstance(condition, Sym) and condition.is_condition):
        what = condition.node.label if isinstance(condition, Sym) else repr(condition)
        raise TypeError(f"symcell.where: the condition must be a comparison of symbolic values (a > b, a >= b, "
                        f"a < b, a <= b), got {what}")
    return _where(condition, a, b)


def clamp(x, min=None, max=None):  # noqa: A002 - torch.clamp's names
    """x limited to [min, max] (numbers; either may be None), elementwise; gradient 1 at the bounds, as torch's."""
    if not isinstance(x, Sym):
        raise TypeError(f"symcell.clamp expects a symbolic tensor, got {type(x).__name__}")
    min, max = _zero_d(min), _zero_d(max)  # noqa: A001
    for bound, value in (("min", min), ("max", max)):
        if value is not None and not _is_number(value):
            what = value.node.label if isinstance(value, Sym) else repr(value)
            raise TypeError(f"symcell.clamp({x.node.label}, {bound}={what}): the bounds must be Python numbers; "
                            f"for a symbolic bound write symcell.maximum / symcell.minimum")
    if min is None and max is None:
        raise ValueError(f"symcell.clamp({x.node.label}): give min, max or both")
    out = x.node
    for fn, value in (("clamp_min", min), ("clamp_max", max)):
        if value is not None:
            out = Node("pw", (out, _operand(value, fn, x._desc())), x.size, fn,
                       _short(f"{fn}({out.label}, {value!r})"))
    return Sym(out)


def _reduction(v, fn):
    if not isinstance(v, Sym):
        if isinstance(v, Matrix):
            v._misuse()
        raise TypeError(f"symcell.{fn} expects a symbolic vector inside a cell definition, got {type(v).__name__}")
    return Node("reduce", (v.node,), sympy.Integer(1), "sum", _short(f"{fn}({v.node.label})"))


def sum(v, **kwargs):  # noqa: A001 - symcell.sum, as torch.sum
    """The sum of a vector's features, per row: a value of size 1, which broadcasts against any vector. On anything
    but a cell's values (outside a step: a list, a tensor), Python's own sum, so that `from symcell import *`
    leaves it alone."""
    _features_only("sum", kwargs, "sums a row's features into one value that broadcasts against vectors (as "
                                  "keepdim=True would)")
    return Sym(_reduction(v, "sum"))


def mean(v, **kwargs):
    """The mean of a vector's features, per row (size 1): mu = mean(v); var = mean((v - mu) ** 2) is a layer
    norm's. The divisor is v's size, a dimension the kernels know when they run."""
    _features_only("mean", kwargs, "averages a row's features into one value that broadcasts against vectors (as "
                                   "keepdim=True would)")
    total = _reduction(v, "mean")
    n = Node("const", (), None, sympy.sympify(v.size), D.fmt(v.size))
    return Sym(Node("pw", (total, n), total.size, "div", total.label))


def _or_builtin(fn, builtin):
    """fn on symbolic values, Python's own function of the same name on anything else: `from symcell import *`
    brings symcell.abs and symcell.sum, which must not take abs(-3) and sum([1, 2]) from the rest of the file"""
    @functools.wraps(fn)
    def either(*args, **kwargs):
        if any(isinstance(a, (Sym, Matrix)) for a in args):
            return fn(*args, **kwargs)
        return builtin(*args, **kwargs)
    return either


FUNCTIONS.update(where=where, clamp=clamp, sum=_or_builtin(sum, builtins.sum), mean=mean,
                 abs=_or_builtin(FUNCTIONS["abs"], builtins.abs))
globals().update(FUNCTIONS)
__all__ = ["cat", "split", "trace", "Sym", "Matrix", "Blocks", *FUNCTIONS]


def _features_only(fn, kwargs, means):
    """torch's dim=/keepdim= given to one of symcell's functions, which work along a row's features only"""
    if kwargs:
        raise TypeError(f"{fn}() got {', '.join(f'{k}=' for k in kwargs)}: a step sees each row of the batch as a "
                        f"vector of features, and {fn} {means}; drop the argument")


def cat(*parts, **kwargs):
    """Concatenate symbolic vectors along features: cat(h, x) has size H + I."""
    _features_only("cat", kwargs, "joins vectors along their features")
    if len(parts) == 1 and isinstance(parts[0], (list, tuple)):
        parts = tuple(parts[0])
    elif any(isinstance(p, (list, tuple)) for p in parts):   # (torch's cat((x, h), 1))
        def written(p):
            return (f"({', '.join(map(written, p))})" if isinstance(p, tuple) else
                    f"[{', '.join(map(written, p))}]" if isinstance(p, list) else _label(p))
        raise TypeError(f"cat({', '.join(map(written, parts))}): cat joins symbolic vectors along their features "
                        "and takes no dimension: write cat(x, h) or cat([x, h])")
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


def _chunk_sizes(what, total, chunks):
    if isinstance(chunks, bool):
        raise TypeError(f"{what}: chunks must be an int or a list of sizes")
    if isinstance(chunks, int):
        if chunks <= 0:
            raise ValueError(f"{what[:-1]}, {chunks}): the number of chunks must be positive")
        return [total / chunks] * chunks
    if isinstance(chunks, (list, tuple)):
        sizes = [D.parse_size(s, what) for s in chunks]
        if not D.same_size(sympy.Add(*sizes), total):
            raise ValueError(f"{what[:-1]}, {list(chunks)}): the sizes add up to {D.fmt(sympy.Add(*sizes))} but "
                             f"{what[6:-1]} has size {D.fmt(total)}")
        return sizes
    raise TypeError(f"{what[:5]}: chunks must be an int or a list of sizes, got {chunks!r}")


def split(v, chunks, **kwargs):
    """Split a symbolic vector along features into `chunks` equal parts (an int), or parts of the given sizes.
    On a 2-d parameter, split its rows: split(W, 4) gives four matrices, each a quarter of W's rows."""
    _features_only("split", kwargs, "splits a vector's features (a 2-d parameter's rows)")
    if isinstance(v, Matrix):
        return v._split(chunks)
    if not isinstance(v, Sym):
        raise TypeError(f"split: the first argument must be a symbolic vector or a 2-d parameter, got {v!r}")
    sizes = _chunk_sizes(f"split({v.node.label})", v.size, chunks)
    call = f"split({v.node.label}, {chunks!r})"   # (the parts of two splits of one vector told apart in messages)
    out, start = [], sympy.Integer(0)
    for k, s in enumerate(sizes):
        stop = sympy.simplify(start + s)
        out.append(Sym(Node("slice", (v.node,), s, (start, stop), _short(f"{call}[{k}]"))))
        start = stop
    return tuple(out)


# --- tracing --------------------------------------------------------------------------------------------

def _from_a_size(error):
    """whether a TypeError of the step came from using a dimension (a sympy symbol: W.shape[1]) as a number:
    raised inside sympy (float(I), math.sqrt(I)) or by Python, numpy or torch about a sympy object (range(I),
    I(...), np.sqrt(I), torch.zeros(I))"""
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "sympy" in tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/") or \
        re.search(r"\b(Symbol|Mul|Pow|Rational)\b", str(error)) is not None


def _check_name(kind, name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind}: {name!r} is not a valid name")


def _parse_decls(kind, decls, vector_only):
    if not isinstance(decls, dict):
        raise TypeError(f"{kind} must be a dict of name -> size, got {type(decls).__name__}")
    out = []
    for name, spec in decls.items():
        _check_name(kind, name)
        if vector_only:
            out.append((name, D.parse_size(spec, f"{kind} {name!r}")))
            continue
        if not isinstance(spec, (tuple, list, numbers.Integral, str, sympy.Basic)):
            raise TypeError(f"params {name!r}: a parameter's shape is a tuple of sizes (ints, or strings such as "
                            f"'H' and '4*H'): () for a scalar, ('H',) for a vector, ('4*H', 'I') for a matrix; got "
                            f"{spec!r}")
        shape = (spec,) if isinstance(spec, (numbers.Integral, str, sympy.Basic)) else tuple(spec)
        if shape == ():            # a scalar parameter: a vector of size 1 to the kernels (broadcast everywhere)
            out.append((name, ()))
            continue
        if len(shape) not in (1, 2, 3):
            raise ValueError(f"params {name!r}: shape must be 1-d (used elementwise), 2-d (used as {name} @ v) or "
                             f"3-d (G, m, n: G blocks, a block-diagonal {name} @ v), got {spec!r}")
        shape = tuple(D.parse_size(s, f"params {name!r}") for s in shape)
        if len(shape) == 3 and not shape[0].is_Integer:
            raise ValueError(f"params {name!r}: the number of blocks of a 3-d parameter must be a number (it "
                             f"unrolls into one matmul per block), got {D.fmt(shape[0])}")
        out.append((name, shape))
    return tuple(out)


def trace(fn, inputs, state, params, outputs=None, name=None):
    """Run the step function once on symbolic tensors and return its CellIR."""
    name = name or getattr(fn, "__name__", "cell")
    # (the name heads the generated code in a comment: a newline in it ended the comment, and the rest ran as code)
    if not isinstance(name, str) or not name.isprintable():
        raise ValueError(f"define: a cell's name must be one line of printable characters, got {name!r}")
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
    rest = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())   # (def step(x, h, **params) takes them)
    unused = [] if rest else [d for d in declared if d not in arg_names]
    if unused:
        raise TypeError(f"{name}: declared name(s) {unused} are not arguments of the step function "
                        f"{name}({', '.join(arg_names)})")

    syms = {}
    for n, s in ins:
        syms[n] = Sym(Node("input", (), s, n, n))
    for n, s in sts:
        syms[n] = Sym(Node("state", (), s, n, n))
    state_names = [n for n, _ in sts]
    outputs, extra = _parse_outputs(name, outputs, dict(sts), declared)
    blocks = _Blocks(declared + [n for n, _ in extra])
    for n, shape in prs:
        kind = {0: None, 1: None, 2: Matrix, 3: Blocks}[len(shape)]
        size = shape[0] if shape else sympy.Integer(1)
        syms[n] = Sym(Node("param", (), size, n, n)) if kind is None else kind(n, shape, blocks)

    try:
        result = fn(**syms)
    except TypeError as e:
        if not _from_a_size(e):
            raise
        raise TypeError(f"{name}: {e} (a size the step read, a parameter's shape or a vector's size, is a dimension "
                        "such as H, which has no value while symcell traces the step: write the number itself, or "
                        "a Python number the step's code reads; mean() divides by a vector's size)") from e
    if isinstance(result, dict):   # (it said "returned 1 value(s)")
        raise TypeError(f"{name}: the step function returned a dict; return the new states in their declared order "
                        f"({', '.join(state_names)}" + (f", then the outputs {', '.join(n for n, _ in extra)}"
                                                        if extra else "") + "), as a tuple or one value")
    if not isinstance(result, (tuple, list)):
        result = (result,)
    if len(result) != len(sts) + len(extra):
        raise ValueError(f"{name}: the step function returned {len(result)} value(s) but {len(sts)} state(s) are "
                         f"declared ({', '.join(state_names)})" + (
                             f", then {len(extra)} output(s) ({', '.join(n for n, _ in extra)})" if extra else ""))
    returns = []
    for (sn, ssize), r in zip(sts + extra, result):
        what = "output" if sn in dict(extra) else "new state"
        if not isinstance(r, Sym):
            raise TypeError(f"{name}: the {what} {sn!r} must be a symbolic vector, got {r!r}")
        if not D.same_size(r.size, ssize):
            raise ValueError(f"{name}: the {what} {sn!r} is {r.node.label} of size {D.fmt(r.size)}, but "
                             f"{what.split()[-1]} {sn!r} is declared with size {D.fmt(ssize)}")
        returns.append(r.node)
    # an output that is not a state is carried as one the step never reads: a state of the kernels (its sequence
    # is ys, which is kept anyway, and nothing reads its old value, so it costs no residual), hidden from users
    sts = sts + extra

    dim_names = set()
    for _, s in ins + sts:
        dim_names |= {str(x) for x in s.free_symbols}
    for _, shape in prs:
        for s in shape:
            dim_names |= {str(x) for x in s.free_symbols}
    used = set()   # (split(h, ["K", "H-K"]) with K in no declaration: no binding could ever give K)
    for n in walk(returns):
        for s in (n.size, *(n.attr if n.op == "slice" else ())):
            if isinstance(s, sympy.Basic):
                used |= {str(x) for x in s.free_symbols}
    if used - dim_names:
        raise ValueError(f"{name}: the step's sizes use the dimension(s) {sorted(used - dim_names)}, which no input, "
                         f"state or parameter declares (declared: {sorted(dim_names)}); write sizes in those")
    # the kernels' parameters: the 1-d and 2-d ones as declared, then the row blocks the matmuls use (a 3-d
    # parameter is only ever its blocks)
    block_params, views = blocks.params({n: (s[0] * s[1], s[2]) if len(s) == 3 else s for n, s in prs})
    direct = {n.attr for n in walk(returns) if n.op == "param"} | \
        {w for n in walk(returns) if n.op == "matmul" for w, _, _ in n.attr}
    only_blocks = {p for _, p, _, _ in views} - direct
    kernel_params = tuple((n, s or (sympy.Integer(1),)) for n, s in prs if len(s) < 3 and n not in only_blocks) \
        + block_params
    return CellIR(name, ins, sts, kernel_params, tuple(returns), outputs, tuple(sorted(dim_names)),
                  tuple(n for n, _ in extra), prs, views)


def _parse_outputs(name, outputs, states, declared):
    """`outputs` -> (the names that form ys, in order; the outputs that are not states as (name, size)).
    None: the first state; a name or list of names: those states; a dict: name -> size declares an output the
    step returns after the new states (name -> None, or its size, for a state)."""
    if outputs is None:
        return (next(iter(states)),), ()
    if isinstance(outputs, str):
        outputs = (outputs,)
    if isinstance(outputs, dict):
        extra = []
        for o, size in outputs.items():
            _check_name(f"{name}: outputs", o)
            if o in states:
                if size is not None and not D.same_size(D.parse_size(size, f"outputs {o!r}"), states[o]):
                    raise ValueError(f"{name}: outputs: {o!r} is a state of size {D.fmt(states[o])}, not {size!r}")
                continue
            if o in declared:
                raise ValueError(f"{name}: outputs: {o!r} is already declared as an input or parameter")
            if size is None:
                raise ValueError(f"{name}: outputs: {o!r} is not a state, so it needs a size, e.g. "
                                 f"outputs={{{o!r}: 'H'}}")
            extra.append((o, D.parse_size(size, f"outputs {o!r}")))
        if not outputs:
            raise ValueError(f"{name}: outputs must name at least one value")
        return tuple(outputs), tuple(extra)
    if not isinstance(outputs, (list, tuple)):
        raise TypeError(f"{name}: outputs must be a state's name, a list of them, or a dict of name -> size, got "
                        f"{type(outputs).__name__}")
    outputs = tuple(outputs)
    twice = sorted({o for o in outputs if isinstance(o, str) and outputs.count(o) > 1})
    if twice:   # (ys would hold one sequence twice, whose two cotangents the backward cannot tell apart)
        raise ValueError(f"{name}: outputs {list(outputs)} names {', '.join(map(repr, twice))} more than once")
    bad = [o for o in outputs if o not in states]
    if bad or not outputs:
        raise ValueError(f"{name}: outputs {list(outputs)} must name declared states ({list(states)}); an output "
                         f"that is not a state is declared with its size, outputs={{'y': 'H'}}")
    return outputs, ()
