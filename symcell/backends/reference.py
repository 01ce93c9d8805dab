"""The reference backend: renders the schedule and its derived backward as plain torch code, loop in Python.

It is the oracle the compiled backends are tested against, so it favours being obviously right over being
fast: one eager torch op per pointwise function, the derived gradient expressions printed as they are.
The rendered source is what `cell.source()` shows.
"""
import linecache
import itertools

import sympy
import torch
import torch.nn.functional as _F

from ..autodiff import MatMulGrad, RegionGrad
from ..plan import plan
from ..printing import Writer, torch_str
from ..schedule import MatMul
from . import register

_counter = itertools.count()


def _step(v):
    # relu'(x): 1 where x > 0, else 0 (torch's convention at the kink)
    return (v > 0).to(v.dtype)


def _elu_grad(v):
    # elu'(x) = 1 for x > 0, exp(x) otherwise; exp of min(x, 0) so the branch not taken cannot overflow
    return torch.where(v > 0, torch.ones_like(v), torch.exp(torch.clamp(v, max=0)))


def _sum_rows(v):
    # a vector parameter is broadcast over the batch: its gradient sums over the rows
    return v.sum(0) if v.dim() == 2 else v


def _full(v, like, shape):
    # an output that depends only on parameters and constants still has one row per batch element
    return like.new_zeros(shape) + v


class _Renderer:
    def __init__(self, schedule, backward):
        self.s, self.b, self.ir = schedule, backward, schedule.ir
        self.kind = {v.name: v.kind for v in schedule.values}
        self.size = {v.name: int(v.size) for v in schedule.values if v.size is not None}
        self.stage = {v.name: v.stage for v in schedule.values}
        self.inputs = [n for n, _ in self.ir.inputs]
        self.states = [n for n, _ in self.ir.states]
        self.params = [n for n, _ in self.ir.params]
        self.new = dict(zip(self.states, schedule.new_states))
        self.like = f"_{self.inputs[0]}_seq"

        self.p = p = plan(schedule, backward)
        self.loop_reads, self.bwd_loop_reads, self.bwd_pre_reads = p.loop_reads, p.bwd_loop_reads, p.bwd_pre_reads
        self.res_pre, self.res_loop, self.res_states = list(p.res_pre), list(p.res_loop), list(p.res_states)
        self.residuals = [f"_{n}_seq" for n in p.residuals]

    # --- helpers --------------------------------------------------------------------------------------
    def view(self, var, v):
        if v.start == 0 and v.stop == self.size[v.value]:
            return var
        if self.kind[v.value] == "param":
            return f"{var}[{v.start}:{v.stop}]"
        return f"{var}[:, {v.start}:{v.stop}]"

    def weight(self, term):
        if term.col_start == 0 and term.col_stop == int(self.s.ir.param_shape(term.weight)[1]):
            return term.weight
        return f"{term.weight}[:, {term.col_start}:{term.col_stop}]"

    def bind_leaves(self, w, region):
        for sym, v in region.leaves:
            if sym.name != v.value:
                w(f"{sym.name} = {self.view(v.value, v)}")

    def batched(self, region, expr):
        batch_syms = {s for s, v in region.leaves if self.kind[v.value] != "param"}
        return bool(expr.free_symbols & batch_syms)

    # --- forward ---------------------------------------------------------------------------------------
    def forward_stmts(self, w, stmts, rows):
        allocated = set()
        for st in stmts:
            if isinstance(st, MatMul):
                w(f"{st.out} = " + " + ".join(f"torch.mm({self.view(t.operand.value, t.operand)}, "
                                             f"{self.weight(t)}.t())" for t in st.terms))
                continue
            n_out = len(st.outputs)
            w(f"# fused pointwise region: {n_out} output(s) of {st.outputs[0][0].stop - st.outputs[0][0].start}"
              f" features")
            self.bind_leaves(w, st)
            temps, exprs = sympy.cse([e for _, e in st.outputs], symbols=sympy.numbered_symbols("_e"))
            for sym, e in temps:
                w(f"{sym} = {torch_str(e)}")
            for (dest, orig), e in zip(st.outputs, exprs):
                full = dest.start == 0 and dest.stop == self.size[dest.value]
                code = torch_str(e)
                if not self.batched(st, orig):
                    code = f"_full({code}, {self.like}, ({rows}, {dest.stop - dest.start}))"
                if full:
                    w(f"{dest.value} = {code}")
                else:
                    if dest.value not in allocated:
                        w(f"{dest.value} = {self.like}.new_empty(({rows}, {self.size[dest.value]}))")
                        allocated.add(dest.value)
                    w(f"{self.view(dest.value, dest)} = {code}")

    def forward(self, w):
        ins, inits = ", ".join(f"_{n}_seq" for n in self.inputs), ", ".join(f"_{s}_init" for s in self.states)
        w("def forward(_xs, _inits, _params, _save, _lengths=None):")
        with w.block():
            w(f"{ins}, = _xs")
            w(f"{inits}, = _inits")
            w(f"{', '.join(self.params)}, = _params" if self.params else "")
            w(f"_T, _B = {self.like}.shape[0], {self.like}.shape[1]")
            if self.s.pre:
                w("# before the loop: everything that depends on no state, over all T*B rows at once")
                for n in self.inputs:
                    w(f"{n} = _{n}_seq.reshape(_T * _B, {self.size[n]})")
                self.forward_stmts(w, self.s.pre, "_T * _B")
                for v in self.s.values:
                    if v.stage == "pre":
                        w(f"_{v.name}_seq = {v.name}.view(_T, _B, {self.size[v.name]})")
            w("# sequences kept: outputs always, residuals for the backward only when _save")
            for s in self.ir.outputs:
                w(f"_{s}_seq = {self.like}.new_empty((_T, _B, {self.size[s]}))")
            for n in self.res_loop + self.res_states:
                w(f"_{n}_seq = {self.like}.new_empty((_T, _B, {self.size[n]})) if _save else None")
            w(f"{', '.join(self.states)}, = {inits},")
            w("for _t in range(_T):")
            with w.block():
                for n in sorted(self.loop_reads):
                    if self.kind[n] == "input" or self.stage[n] == "pre":
                        w(f"{n} = _{n}_seq[_t]")
                self.forward_stmts(w, self.s.loop, "_B")
                self.hold_finished(w)
                for s in self.ir.outputs:
                    w(f"_{s}_seq[_t] = {self.new[s]}")
                if self.res_loop or self.res_states:
                    w("if _save:")
                    with w.block():
                        for n in self.res_loop:
                            w(f"_{n}_seq[_t] = {n}")
                        for s in self.res_states:
                            w(f"_{s}_seq[_t] = {self.new[s]}")
                w(f"{', '.join(self.states)}, = {', '.join(self.new[s] for s in self.states)},")
            ys = ", ".join(f"_{s}_seq" for s in self.ir.outputs)
            res = ", ".join(self.residuals)
            w(f"return ({ys},), ({', '.join(self.states)},), ({res}{',' if res else ''})")

    def hold_finished(self, w):
        """With `_lengths`, step _t is the identity on the rows whose sequence has ended (_t >= length): their
        state is held, so the final state is the one at each sequence's own last step."""
        w("if _lengths is not None:   # rows past their length keep their state")
        with w.block():
            w("_live = (_t < _lengths)[:, None]")
            for s in self.states:
                w(f"{self.new[s]} = torch.where(_live, {self.new[s]}, {s})")

    # --- backward --------------------------------------------------------------------------------------
    def pass_finished(self, w):
        """The backward of hold_finished: on the rows past their length the carried cotangent goes straight to
        the previous state, and the step itself sees a zero cotangent (so contributes nothing)."""
        w("if _lengths is not None:")
        with w.block():
            w("_live = (_t < _lengths)[:, None]")
            for s in self.states:
                d = f"d_{self.new[s]}"
                w(f"d_{s} = torch.where(_live, torch.zeros_like({d}), {d})")
                w(f"{d} = torch.where(_live, {d}, torch.zeros_like({d}))")

    def region_grad(self, w, rg):
        w(f"# backward of a fused region: {len(rg.grads)} gradient(s) from {len(rg.cotangents)} cotangent(s)")
        self.bind_leaves(w, rg.region)
        for g, dest in rg.cotangents:
            if g.name != self.view('d_' + dest.value, dest):
                w(f"{g.name} = {self.view('d_' + dest.value, dest)}")
        for sym, e in rg.temps:
            w(f"{sym} = {torch_str(e)}")
        for v, e in rg.grads:
            if self.kind[v.value] == "param":
                w(f"{self.view('d_' + v.value, v)} += _sum_rows({torch_str(e)})")
            else:
                w(f"{self.view('d_' + v.value, v)} += {torch_str(e)}")

    def backward(self, w):
        ins, inits = ", ".join(f"_{n}_seq" for n in self.inputs), ", ".join(f"_{s}_init" for s in self.states)
        w("def backward(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _lengths=None):")
        with w.block():
            w(f"{ins}, = _xs")
            w(f"{inits}, = _inits")
            w(f"{', '.join(self.params)}, = _params" if self.params else "")
            w(f"{', '.join(f'_{s}_seq' for s in self.ir.outputs)}, = _ys")
            w(f"{', '.join(f'_d_{s}_ys' for s in self.ir.outputs)}, = _d_ys")
            if self.residuals:
                w(f"{', '.join(self.residuals)}, = _res")
            w(f"_T, _B = {self.like}.shape[0], {self.like}.shape[1]")
            for p in self.params:
                w(f"d_{p} = torch.zeros_like({p})")
            for n in self.inputs:
                w(f"_d_{n}_seq = torch.zeros_like(_{n}_seq)")
            pre_in_loop, loop_mm = self.p.pre_in_loop, self.p.loop_mm
            for n in pre_in_loop + loop_mm:
                w(f"_d_{n}_seq = {self.like}.new_zeros((_T, _B, {self.size[n]}))")
            w(f"{', '.join('d_' + s for s in self.states)}, = _d_finals")
            w("for _t in reversed(range(_T)):")
            with w.block():
                for n in sorted(self.bwd_loop_reads):
                    k = self.kind[n]
                    if k == "state":
                        w(f"{n} = _{n}_seq[_t - 1] if _t > 0 else _{n}_init")
                    elif k == "input" or self.stage[n] == "pre" or n in self.res_loop:
                        w(f"{n} = _{n}_seq[_t]")
                for s in self.states:
                    if s in self.ir.outputs:
                        w(f"d_{self.new[s]} = d_{s} + _d_{s}_ys[_t]")
                    else:
                        w(f"d_{self.new[s]} = d_{s}")
                for s in self.states:
                    w(f"d_{s} = torch.zeros_like(d_{self.new[s]})")
                self.pass_finished(w)
                for v in self.s.values:
                    if v.kind == "input" or (v.stage == "pre" and v.name in pre_in_loop) or v.name in loop_mm:
                        w(f"d_{v.name} = _d_{v.name}_seq[_t]")
                    elif v.stage == "loop" and v.kind in ("pw", "cat"):
                        w(f"d_{v.name} = {self.like}.new_zeros((_B, {self.size[v.name]}))")
                for st in self.b.loop:
                    if isinstance(st, RegionGrad):
                        self.region_grad(w, st)
                    else:
                        mm = st.matmul
                        w(f"# backward of {mm.out} (its weight gradients are one GEMM each after the loop)")
                        for t in mm.terms:
                            w(f"{self.view('d_' + t.operand.value, t.operand)} += torch.mm(d_{mm.out}, "
                              f"{self.weight(t)})")
            self.after_loop_gemms(w)
            self.pre_backward(w)
            d_in = ", ".join(f"_d_{n}_seq" for n in self.inputs)
            d_init = ", ".join(f"d_{s}" for s in self.states)
            d_par = ", ".join(f"d_{p}" for p in self.params)
            w(f"return ({d_in},), ({d_init},), ({d_par}{',' if d_par else ''})")


    def after_loop_gemms(self, w, loop_value="_{}_seq", d_out="_d_{}_seq", defer_operands=False):
        """After the reverse loop, one GEMM each over all T*B rows: the weight gradient of every in-loop matmul
        term, and (defer_operands) the gradients of operands that depend on no state. `loop_value` and `d_out`
        name a backend's per-step sequences of in-loop values and of matmul-output gradients (shared with the
        triton host code)."""
        deferred = [(st.matmul, t) for st in self.b.loop if isinstance(st, MatMulGrad) for t in st.matmul.terms]
        if not deferred:
            return
        w("# weight gradients of the in-loop matmuls: one GEMM each over all T*B rows")
        w("if _T > 0:")
        with w.block():
            for mm, term in deferred:
                op = term.operand
                if self.kind[op.value] == "state":
                    seq = f"torch.cat([_{op.value}_init[None], _{op.value}_seq[:-1]])"
                elif self.kind[op.value] == "input" or self.stage[op.value] == "pre":
                    seq = f"_{op.value}_seq"
                else:
                    seq = loop_value.format(op.value)
                if not (op.start == 0 and op.stop == self.size[op.value]):
                    seq = f"{seq}[..., {op.start}:{op.stop}]"
                dy = f"{d_out.format(mm.out)}.reshape(-1, {self.size[mm.out]})"
                tgt = self.weight(term).replace(term.weight, "d_" + term.weight, 1)
                w(f"{tgt} += torch.mm({dy}.t(), {seq}.reshape(-1, {op.stop - op.start}))")
                if defer_operands and op.value in self.p.deferred_ops:
                    w(f"_d_{op.value}_seq[..., {op.start}:{op.stop}] += torch.mm({dy}, {self.weight(term)})"
                      f".view(_T, _B, {op.stop - op.start})")

    def pre_backward(self, w):
        """The backward of what ran before the loop, over all T*B rows (shared with the triton host code)."""
        if self.b.pre:
            w("# backward of what ran before the loop, over all T*B rows")
            for n in self.inputs:
                w(f"{n} = _{n}_seq.reshape(_T * _B, {self.size[n]})")
                w(f"d_{n} = _d_{n}_seq.view(_T * _B, {self.size[n]})")
            for v in self.s.values:
                if v.stage != "pre":
                    continue
                if v.name in self.bwd_pre_reads:
                    w(f"{v.name} = _{v.name}_seq.reshape(_T * _B, {self.size[v.name]})")
                if v.name in self.p.pre_in_loop:
                    w(f"d_{v.name} = _d_{v.name}_seq.view(_T * _B, {self.size[v.name]})")
                else:
                    w(f"d_{v.name} = {self.like}.new_zeros((_T * _B, {self.size[v.name]}))")
            for st in self.b.pre:
                if isinstance(st, RegionGrad):
                    self.region_grad(w, st)
                else:
                    mm = st.matmul
                    for t in mm.terms:
                        op = self.view(t.operand.value, t.operand)
                        tgt = self.weight(t).replace(t.weight, "d_" + t.weight, 1)
                        w(f"{self.view('d_' + t.operand.value, t.operand)} += torch.mm(d_{mm.out}, "
                          f"{self.weight(t)})")
                        w(f"{tgt} += torch.mm(d_{mm.out}.t(), {op})")


class Kernel:
    def __init__(self, source, forward, backward):
        self.source, self.forward, self.backward = source, forward, backward


@register("reference")
class ReferenceBackend:
    symbolic = False   # rendered from the schedule with sizes bound
    @staticmethod
    def usable(device):
        return True

    def build(self, spec, dims):
        schedule, backward = spec.schedule(dims)   # sizes are baked into the rendered torch code
        r = _Renderer(schedule, backward)
        w = Writer()
        w(f"# symcell reference backend: {schedule.ir.name}")
        r.forward(w)
        w()
        r.backward(w)
        source = w.text()
        filename = f"<symcell-reference-{schedule.ir.name}-{next(_counter)}>"
        # registered with linecache so tracebacks into the generated code show its lines
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        scope = {"torch": torch, "_F": _F, "_step": _step, "_elu_grad": _elu_grad, "_sum_rows": _sum_rows,
                 "_full": _full}
        exec(compile(source, filename, "exec"), scope)  # noqa: S102 - our own generated code
        return Kernel(source, scope["forward"], scope["backward"])
