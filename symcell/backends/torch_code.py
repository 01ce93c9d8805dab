"""Scans as torch code: an entry point per scan, its phases over all T*B rows as eager torch ops.

The reference backend is this with the step as a Python loop (ScanRenderer.loop); the triton backend is this
with the loop as a kernel launch. Sizes are integers (the program was bound). In the code, a buffer `v` is the
tensor `v` for the rows a phase works on (all T*B rows before and after the loop, the batch in a step), its
whole (T, B, n) sequence is `_v_seq`, an initial value passed in is `_v_init`.
"""
import torch
import torch.nn.functional as _F

from .. import skips
from ..functions import TORCH_HELPERS
from ..kernel import Keep, OperandGrad, Pointwise, Role, WeightGrad, assigns
from ..printing import torch_str
from .base import Renderer


def _sum_rows(v):
    # a vector parameter is broadcast over the batch: its gradient sums over the rows
    return v.sum(0) if v.dim() == 2 else v


def _sum_features(v, n):
    # a reduction, or the gradient of a value broadcast over the features: the sum over the n features of the
    # last dimension; a number, or a size-1 last dimension, is the same for all n of them
    if isinstance(v, torch.Tensor) and v.dim() and v.shape[-1] == n:
        return v.sum(-1, keepdim=True)
    return v * n


def _full(v, like, shape):
    # an output that depends only on parameters and constants still has one row per batch element
    return like.new_zeros(shape) + v


def _on_live(v, live):
    # an ended row's step writes zeros and adds nothing (kernel.py: Pointwise): selected, not multiplied, so
    # that -inf or NaN there (log(0) of the padding) stays out of every result
    return v if live is None else torch.where(live, v, 0)


def _live_rows(lengths, T):
    # (T * B, 1): the rows of all steps at once (row t * B + b) whose sequence runs at step t; None without lengths
    if lengths is None:
        return None
    return (torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]).reshape(-1, 1)


# the names generated torch code runs with
SCOPE = {"torch": torch, "_F": _F, "_sum_rows": _sum_rows, "_sum_features": _sum_features, "_full": _full,
         "_on_live": _on_live, "_live_rows": _live_rows, **TORCH_HELPERS}


def seq(name):
    return f"_{name}_seq"


def init(name):
    return f"_{name}_init"


def defined(stmts):
    """The buffers a phase assigns: Python names bound by the phase, not views of tensors made before it."""
    return set().union(*[assigns(st) for st in stmts])


class ScanRenderer(Renderer):
    """One scan as one Python function. Subclasses render the loop (`loop`)."""

    MM = "torch.mm"   # the function the GEMMs over all T*B rows call (the triton backend's: its _mm)
    # whether the entry point takes `_skip` flags (skips.py) and leaves out the transposed matmuls and weight
    # gradients of its phases before and after the loop that they say nobody needs (the triton backend's host GEMMs:
    # a first layer's d_x, a frozen weight's gradient); the reference backend, the oracle, runs every statement
    SKIPS = False

    def __init__(self, program, scan, w):
        self.program, self.scan, self.w = program, scan, w
        self.size = {b.name: b.size for b in scan.buffers}
        self.role = {b.name: b.role for b in scan.buffers}
        self.like = seq(scan.first_seq)     # a tensor new ones are made like
        self.rows = "_B"                    # the rows a statement works on: _B in the step, _T * _B outside
        self.allocated = set()
        self.skip_if, self.flags = self._skips() if self.SKIPS else ({}, {})

    def _skips(self):
        """-> ({id(statement): Python condition to leave it out}, {flag variable: its index in _skip}) for the
        OperandGrad and WeightGrad statements before and after the loop (each adds into a buffer allocated with
        zeros, which stays so); a clause at the loop's last step (skips.LAST) is the kernel's, not theirs"""
        index = {f: k for k, f in enumerate(skips.flag_names(self.scan))}
        conds, flags = skips.conditions(self.scan)[0], {}
        skip_if = {}
        for st in (*self.scan.before, *self.scan.after):
            clauses = [c for c in conds.get(id(st), ()) if skips.LAST not in c]
            if isinstance(st, (OperandGrad, WeightGrad)) and clauses:
                flags.update({skips.variable(f): index[f] for c in clauses for f in c})
                skip_if[id(st)] = " or ".join(" and ".join(map(skips.variable, c)) for c in clauses)
        return skip_if, dict(sorted(flags.items(), key=lambda kv: kv[1]))

    def render(self, st):
        cond = self.skip_if.get(id(st))
        if cond is None:
            return super().render(st)
        self.w(f"if not ({cond}):")
        with self.w.block():
            super().render(st)

    # --- the entry point --------------------------------------------------------------------------------
    def function(self):
        w, scan = self.w, self.scan
        flags = ", _save" if scan.save else ""
        w(f"def {scan.name}({', '.join(a.name for a in scan.args)}{flags}, _lengths=None"
          f"{', _skip=()' if self.SKIPS else ''}):")
        with w.block():
            for a in scan.args:
                if a.buffers:
                    w(f"{', '.join(self.arg_var(b) for b in a.buffers)}, = {a.name}")
            if self.flags:
                w("# _skip: one flag per argument tensor (all zeros), then one per result (not wanted); those not "
                  "given are off")
            for name, k in self.flags.items():
                w(f"{name} = len(_skip) > {k} and bool(_skip[{k}])")
            w(f"_T, _B = {self.like}.shape[0], {self.like}.shape[1]")
            self.allocate()
            if scan.before:
                w("# before the loop, over all T*B rows: what depends on no carried value")
                self.phase(scan.before)
            self.loop()
            if scan.after:
                w("# after the loop, over all T*B rows: one GEMM for all steps where a loop would run one per step")
                w("if _T > 0:")
                with w.block():
                    self.phase(scan.after)
            self.returns()

    def arg_var(self, b):
        role = self.role[b]
        return seq(b) if role == Role.SEQ else init(b) if role in (Role.CARRY_IN, Role.PREV) else b

    def allocate(self):
        w = self.w
        for b in self.scan.buffers:
            if self.scan.arg_of(b.name):
                continue
            if b.role == Role.PARAM_GRAD:
                w(f"{b.name} = {self.like}.new_zeros(({', '.join(map(str, b.size))},))")
            elif b.role == Role.SEQ and b.acc:
                w(f"{seq(b.name)} = {self.like}.new_zeros((_T, _B, {b.size}))")

    def phase(self, stmts):
        """Statements over all T*B rows: every sequence they use viewed as (T*B, n) rows."""
        w, made = self.w, defined(stmts)
        for b in self.scan.used(stmts):
            if b.role == Role.SEQ and b.name not in made:
                w(f"{b.name} = {seq(b.name)}.{'view' if b.acc else 'reshape'}(_T * _B, {b.size})")
            elif b.role == Role.PREV:   # the state entering each step: init, then the states after steps 0..T-2
                w(f"{b.name} = torch.cat([{init(b.name)}[None], {seq(b.seq)}[:-1]]).view(_T * _B, {b.size})")
        self.rows, self.allocated = "_T * _B", set()
        if any(isinstance(st, Pointwise) for st in stmts):
            w("_live = _live_rows(_lengths, _T)   # (with lengths: the rows whose sequence runs at their step)")
        self.render_all(stmts)
        self.rows = "_B"
        for b in self.scan.used(stmts):
            if b.role == Role.SEQ and b.name in made:
                w(f"{seq(b.name)} = {b.name}.view(_T, _B, {b.size})")

    def loop(self):
        raise NotImplementedError

    def result(self, b):
        role = self.role[b]
        if role in (Role.SEQ, Role.STEP, Role.CARRY_OUT):
            return seq(b)
        return b

    def returns(self):
        always = [self.result(b) for r in self.scan.returns if not r.save for b in r.buffers]
        saved = [self.result(b) for r in self.scan.returns if r.save for b in r.buffers]
        tail = f" + ([{', '.join(saved)}] if _save else [])" if saved else ""
        self.w(f"return [{', '.join(always)}]{tail}")

    # --- statements -------------------------------------------------------------------------------------
    def param_like(self, name):
        return self.role[name] in (Role.PARAM, Role.PARAM_GRAD)

    def full(self, v):
        """Whether the view is the whole buffer"""
        size = self.size[v.value]
        return v.start == 0 and v.stop == (size[0] if self.param_like(v.value) else size)

    def view(self, var, v):
        if self.full(v):
            return var
        if self.param_like(v.value):
            return f"{var}[{v.start}:{v.stop}]"
        return f"{var}[:, {v.start}:{v.stop}]"

    def columns(self, matrix, start, stop):
        """matrix[:, start:stop], or the matrix when that is all of it"""
        if start == 0 and stop == self.size[matrix][1]:
            return matrix
        return f"{matrix}[:, {start}:{stop}]"

    def render_MatMul(self, st):
        code = " + ".join(f"{self.MM}({self.view(t.operand.value, t.operand)}, "
                          f"{self.columns(t.weight, t.col_start, t.col_stop)}.t())" for t in st.terms)
        self.w(f"{st.out} {'+=' if st.accumulate else '='} {code}")

    def render_Pointwise(self, st):
        w = self.w
        w(f"# fused pointwise region: {len(st.outputs)} output(s) of {st.n} features")
        for sym, v in st.leaves:   # a size-1 view broadcasts by torch's rules
            if sym.name != self.view(v.value, v):
                w(f"{sym.name} = {self.view(v.value, v)}")
        for sym, e in st.temps:
            w(f"{sym} = {torch_str(e)}")
        batch = {s for s, v in st.leaves if not self.param_like(v.value)}
        for (dest, e, acc), full_expr in zip(st.outputs, st.exprs):
            code = torch_str(e)
            if not full_expr.free_symbols & batch and not acc:
                code = f"_full({code}, {self.like}, ({self.rows}, {st.n}))"
            if not acc or full_expr.free_symbols & batch:   # (zeros on ended rows: _on_live)
                code = f"_on_live({code}, _live)"
            if acc and self.param_like(dest.value):   # a parameter's gradient: the sum over the rows (it broadcasts)
                code = f"_sum_rows({code})"
            if st.broadcast(dest):   # one feature in a wider region: the sum over the features
                code = f"_sum_features({code}, {st.n})"
            if acc:
                w(f"{self.view(dest.value, dest)} += {code}")
                continue
            if self.full(dest):
                w(f"{dest.value} = {code}")
                continue
            if dest.value not in self.allocated:
                w(f"{dest.value} = {self.like}.new_empty(({self.rows}, {self.size[dest.value]}))")
                self.allocated.add(dest.value)
            w(f"{self.view(dest.value, dest)} = {code}")

    def render_OperandGrad(self, st):
        self.w(f"{self.view(st.dest.value, st.dest)} += {self.MM}({st.src}, "
               f"{self.columns(st.weight, st.col_start, st.col_stop)})")

    def render_WeightGrad(self, st):
        self.w(f"{self.columns(st.dest, st.col_start, st.col_stop)} += {self.MM}({st.src}.t(), "
               f"{self.view(st.operand.value, st.operand)})")

    def on_ended_rows(self, why, lines):
        """with lengths, `lines` with _live the (B, 1) mask of the rows still running at step _t (PythonLoop)"""
        with self.w.block(f"if _live is not None:   # {why}"):
            for line in lines:
                self.w(line)

    def render_HoldEnded(self, st):
        self.on_ended_rows("rows past their length keep their state",
                           [f"{new} = torch.where(_live, {new}, {old})" for old, new in st.pairs])

    def render_PassEnded(self, st):
        self.on_ended_rows("ended rows: the carried cotangent passes to the previous state",
                           [line for d_in, d_out in st.pairs for line in
                            (f"{d_in} = torch.where(_live, {d_in}, {d_out})",
                             f"{d_out} = torch.where(_live, {d_out}, torch.zeros_like({d_out}))")])

    def render_Accumulate(self, st):
        self.w(f"{st.dest} = {st.dest} + {st.src}")


class PythonLoop(ScanRenderer):
    """The step as a Python loop over time: one eager torch op per statement and step."""

    def loop(self):
        w, scan = self.w, self.scan
        for b in scan.buffers:   # kept sequences of the step's values
            if b.role in (Role.STEP, Role.CARRY_OUT) and b.keep != Keep.NEVER:
                when = " if _save else None" if b.keep == Keep.SAVE else ""
                w(f"{seq(b.name)} = {self.like}.new_empty((_T, _B, {b.size})){when}")
        if scan.carries:
            w(f"{', '.join(i for i, _ in scan.carries)}, = {', '.join(init(i) for i, _ in scan.carries)},")
        w(f"for _t in {'reversed(range(_T))' if scan.reverse else 'range(_T)'}:")
        with w.block():
            w("_live = None if _lengths is None else (_t < _lengths)[:, None]   # (the rows still running)")
            made = defined(scan.step)
            for b in scan.used(scan.step):
                if b.role == Role.SEQ and b.name not in made:
                    w(f"{b.name} = {seq(b.name)}[_t]")
                elif b.role == Role.PREV:
                    w(f"{b.name} = {seq(b.seq)}[_t - 1] if _t > 0 else {init(b.name)}")
                elif b.role in (Role.STEP, Role.CARRY_OUT) and b.acc:
                    w(f"{b.name} = {self.like}.new_zeros((_B, {b.size}))")
            self.allocated = set()
            self.render_all(scan.step)
            kept = [b for b in scan.buffers if b.role in (Role.STEP, Role.CARRY_OUT) and b.keep != Keep.NEVER]
            for b in kept:
                if b.keep == Keep.ALWAYS:
                    w(f"{seq(b.name)}[_t] = {b.name}")
            if any(b.keep == Keep.SAVE for b in kept):
                w("if _save:")
                with w.block():
                    for b in kept:
                        if b.keep == Keep.SAVE:
                            w(f"{seq(b.name)}[_t] = {b.name}")
            if scan.carries:
                w(f"{', '.join(i for i, _ in scan.carries)}, = {', '.join(o for _, o in scan.carries)},")
