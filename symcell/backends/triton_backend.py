"""The Triton backend: one persistent kernel per direction that loops over time inside the kernel.

Each program owns BB batch rows for the whole sequence (rows never interact in a recurrence, so programs never
wait for each other): per step it runs the in-loop matmuls as tiled `tl.dot`s against weights streamed from L2,
and every fused region as one pass over feature tiles. What depends on no state runs before the kernel as one
GEMM over all T*B rows (cuBLAS on a GPU); after the backward kernel, the weight gradients and the gradients of
operands that depend on no state are one GEMM each. Values live in global scratch between the phases of a step,
with a barrier between phases. Feature sizes are compile-time constants (tile shapes); T and B are run-time.

On CPU tensors it runs under Triton's interpreter (TRITON_INTERPRET=1), which is how CI tests it: there is no
libdevice there, so tanh is written through sigmoid and the rest through exp and log.
"""
import itertools
import linecache
import os

import sympy
import torch
import torch.nn.functional as _F

from ..autodiff import RegionGrad
from ..plan import plan
from ..printing import Writer
from ..schedule import MatMul
from . import register
from .reference import _Renderer as _TorchRenderer
from .reference import _elu_grad, _full, _step, _sum_rows

_counter = itertools.count()
BB, BN, BK = 16, 32, 16   # rows per program, feature tile, reduction tile (tl.dot wants every dim >= 16)


class TritonPrinter(sympy.printing.str.StrPrinter):
    """Pointwise expressions in triton.language; only functions the interpreter has (no libdevice)."""
    _CALLS = {
        "Sigmoid": "tl.sigmoid({0})",
        "Tanh": "(2.0 * tl.sigmoid(2.0 * ({0})) - 1.0)",
        "Relu": "tl.where(({0}) < 0.0, 0.0, ({0}))",
        "Elu": "tl.where(({0}) > 0.0, ({0}), tl.exp(tl.minimum(({0}), 0.0)) - 1.0)",
        "Softplus": "tl.where(({0}) > 20.0, ({0}), tl.log(1.0 + tl.exp(tl.minimum(({0}), 20.0))))",
        "exp": "tl.exp({0})",
        "log": "tl.log({0})",
        "Step": "tl.where(({0}) > 0.0, 1.0, 0.0)",
        "EluGrad": "tl.where(({0}) > 0.0, 1.0, tl.exp(tl.minimum(({0}), 0.0)))",
    }

    def _print_Function(self, expr):
        return self._CALLS[type(expr).__name__].format(self._print(expr.args[0]))

    _print_exp = _print_log = _print_Function

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        if expr.is_number:
            return repr(float(expr))
        b = self.parenthesize(base, sympy.printing.precedence.precedence(expr))
        if e == sympy.Rational(1, 2):
            return f"tl.sqrt({self._print(base)})"
        if e == -sympy.Rational(1, 2):
            return f"(1.0 / tl.sqrt({self._print(base)}))"
        if e.is_Integer and 1 <= e <= 4:
            return "(" + "*".join([b] * int(e)) + ")"
        if e.is_Integer and -4 <= e <= -1:
            return "(1.0 / (" + "*".join([b] * int(-e)) + "))"
        return f"tl.exp({float(e)!r} * tl.log({self._print(base)}))"

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Integer(self, expr):
        return repr(float(expr))

    def doprint(self, expr):
        if getattr(expr, "is_number", False):
            return repr(float(expr))
        return super().doprint(expr)


tl_str = TritonPrinter().doprint


class _KernelRenderer:
    def __init__(self, schedule, backward):
        self.s, self.b, self.ir = schedule, backward, schedule.ir
        self.p = plan(schedule, backward)
        self.kind = {v.name: v.kind for v in schedule.values}
        self.stage = {v.name: v.stage for v in schedule.values}
        self.size = {v.name: int(v.size) for v in schedule.values if v.size is not None}
        self.inputs = [n for n, _ in self.ir.inputs]
        self.states = [n for n, _ in self.ir.states]
        self.params = [n for n, _ in self.ir.params]
        self.outputs = list(self.ir.outputs)
        self.new = dict(zip(self.states, schedule.new_states))
        self.loop_vals = [v.name for v in schedule.values if v.stage == "loop" and v.kind in ("matmul", "pw", "cat")]
        self.pre_read = sorted(v.name for v in schedule.values
                               if v.stage == "pre" and (v.name in self.p.loop_reads or v.name in self.p.bwd_loop_reads))

    # --- addressing: every per-step buffer is base + t * tstride + row * n + column -----------------------
    def fwd_args(self):
        """(kernel argument, host expression) pairs of the forward kernel."""
        a = []
        for n in self.inputs:
            a.append((f"_ptr_{n}", f"_{n}_seq"))
        for v in self.pre_read:
            a.append((f"_ptr_{v}", f"_{v}_seq"))
        for p in self.params:
            a.append((f"_ptr_{p}", p))
        for v in self.loop_vals:
            a += [(f"_ptr_{v}", f"_{v}_buf"), (f"_ts_{v}", f"_{v}_ts")]
        for s in self.states:
            a += [(f"_pp_{s}", f"_{s}_pp"), (f"_seqptr_{s}", f"_{s}_store"), (f"_seqts_{s}", f"_{s}_store_ts")]
        return a

    def addr(self, v, cols, t="_t"):
        """2-d address (rows x cols) of value v at step t inside the forward kernel."""
        n = self.size[v]
        k = self.kind[v]
        if k == "param":
            return f"_ptr_{v} + ({cols})[None, :]"
        if k == "input" or self.stage[v] == "pre":
            return f"_ptr_{v} + {t} * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        if k == "state":
            return f"_pp_{v} + ({t} % 2) * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        if k == "new_state":
            s = next(s for s, nv in self.new.items() if nv == v)
            return f"_pp_{s} + (({t} + 1) % 2) * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        return f"_ptr_{v} + {t} * _ts_{v} + _rows[:, None] * {n} + ({cols})[None, :]"

    # --- forward ----------------------------------------------------------------------------------------
    def matmul(self, w, mm, addr, dot_out_addr, acc_into=False):
        n_out = self.size[mm.out]
        w(f"# {mm.out} = " + " + ".join(f"{t.operand.value}[{t.operand.start}:{t.operand.stop}] @ "
                                        f"{t.weight}[:, {t.col_start}:{t.col_stop}].T" for t in mm.terms))
        w(f"for _n0 in range(0, {n_out}, _BN):")
        with w.block():
            w("_cn = _n0 + tl.arange(0, _BN)")
            w("_acc = tl.zeros((_BB, _BN), dtype=tl.float32)")
            for t in mm.terms:
                K = int(t.operand.stop - t.operand.start)
                ldw = int(self.ir.param_shape(t.weight)[1])
                w(f"for _k0 in range(0, {K}, _BK):")
                with w.block():
                    w("_ck = _k0 + tl.arange(0, _BK)")
                    w(f"_a = tl.load({addr(t.operand.value, f'{t.operand.start} + _ck')}, "
                      f"mask=_rmask[:, None] & (_ck < {K})[None, :], other=0.0)")
                    w(f"_wt = tl.load(_ptr_{t.weight} + _cn[None, :] * {ldw} + ({t.col_start} + _ck)[:, None], "
                      f"mask=(_ck < {K})[:, None] & (_cn < {n_out})[None, :], other=0.0)")
                    w("_acc += tl.dot(_a, _wt, input_precision='ieee')")
            w(f"tl.store({dot_out_addr(mm.out, '_cn')}, _acc, mask=_rmask[:, None] & (_cn < {n_out})[None, :])")

    def region_fwd(self, w, region, addr):
        d0 = region.outputs[0][0]
        width = int(d0.stop - d0.start)
        temps, exprs = sympy.cse([e for _, e in region.outputs], symbols=sympy.numbered_symbols("_e"))
        w(f"# fused region: {len(region.outputs)} output(s) of {width} features")
        w(f"for _j0 in range(0, {width}, _BN):")
        with w.block():
            w("_cj = _j0 + tl.arange(0, _BN)")
            w(f"_m2 = _rmask[:, None] & (_cj < {width})[None, :]")
            self.load_leaves(w, region, addr, "_m2")
            for sym, e in temps:
                w(f"{sym} = {tl_str(e)}")
            w("_zero = tl.zeros((_BB, _BN), dtype=tl.float32)")
            for (dest, orig), e in zip(region.outputs, exprs):
                w(f"tl.store({addr(dest.value, f'{dest.start} + _cj')}, _zero + ({tl_str(e)}), mask=_m2)")
                if self.kind[dest.value] == "new_state":
                    s = next(s for s, nv in self.new.items() if nv == dest.value)
                    w(f"tl.store(_seqptr_{s} + _t * _seqts_{s} + _rows[:, None] * {self.size[s]} + "
                      f"({dest.start} + _cj)[None, :], _zero + ({tl_str(e)}), mask=_m2)")

    def load_leaves(self, w, region, addr, mask):
        for sym, v in region.leaves:
            if self.kind[v.value] == "param":
                w(f"{sym.name} = tl.load(_ptr_{v.value} + {v.start} + _cj, mask=_cj < {int(v.stop - v.start)}, "
                  f"other=0.0)[None, :]")
            else:
                w(f"{sym.name} = tl.load({addr(v.value, f'{v.start} + _cj')}, mask={mask}, other=0.0)")

    def on_ended_rows(self, w, why, body):
        """With lengths (_MASKED), body(state, size) for each state's feature tiles, masked (_m2) to the rows whose
        sequence has ended by step _t, then a barrier."""
        w(f"if _MASKED:   # {why}")
        with w.block():
            w("_done = tl.load(_len_ptr + _rows, mask=_rmask, other=0) <= _t")
            for x in self.states:
                n = self.size[x]
                w(f"for _j0 in range(0, {n}, _BN):")
                with w.block():
                    w("_cj = _j0 + tl.arange(0, _BN)")
                    w(f"_m2 = _rmask[:, None] & (_cj < {n})[None, :] & _done[:, None]")
                    body(x, n)
            w("tl.debug_barrier()")

    def kernel_head(self, w, name, args):
        """The signature and first lines of a kernel: each program owns _BB batch rows for all steps."""
        args = ", ".join(a for a, _ in args)
        w("@triton.jit")
        w(f"def {name}(_T, _B, {args}, _len_ptr, _BB: tl.constexpr, _BN: tl.constexpr, _BK: tl.constexpr, "
          "_MASKED: tl.constexpr):")
        with w.block():
            w("_rows = tl.program_id(0) * _BB + tl.arange(0, _BB)")
            w("_rmask = _rows < _B")

    def forward_kernel(self, w):
        self.kernel_head(w, "_forward_kernel", self.fwd_args())
        with w.block():
            w("for _t in range(0, _T):")
            with w.block():
                for st in self.s.loop:
                    if isinstance(st, MatMul):
                        self.matmul(w, st, self.addr, self.addr)
                    else:
                        self.region_fwd(w, st, self.addr)
                    w("tl.debug_barrier()   # the next phase reads what other threads of this program wrote")
                def hold(x, n):
                    w(f"_old = tl.load({self.addr(x, '_cj')}, mask=_m2, other=0.0)")
                    w(f"tl.store({self.addr(self.new[x], '_cj')}, _old, mask=_m2)")
                    w(f"tl.store(_seqptr_{x} + _t * _seqts_{x} + _rows[:, None] * {n} + _cj[None, :], _old, mask=_m2)")
                self.on_ended_rows(w, "rows past their own length keep their state", hold)

    # --- backward ---------------------------------------------------------------------------------------
    def bwd_args(self):
        a = []
        for n in self.inputs:
            a += [(f"_ptr_{n}", f"_{n}_seq"), (f"_dptr_{n}", f"_d_{n}_seq")]
        for v in self.pre_read:
            a += [(f"_ptr_{v}", f"_{v}_seq")]
        for v in self.p.pre_in_loop:
            a += [(f"_dptr_{v}", f"_d_{v}_seq")]
        for p in self.params:
            a.append((f"_ptr_{p}", p))
            if self.kind.get(p) == "param":
                a.append((f"_dpart_{p}", f"_d_{p}_part"))
        for v in self.loop_vals:
            a += [(f"_ptr_{v}", f"_{v}_res"), (f"_dptr_{v}", f"_d_{v}_buf"), (f"_dts_{v}", f"_d_{v}_ts")]
        for s in self.states:
            a += [(f"_init_{s}", f"_{s}_init"), (f"_seq_{s}", f"_{s}_seqr"), (f"_dpp_{s}", f"_d_{s}_pp")]
            if s in self.outputs:
                a.append((f"_dys_{s}", f"_d_{s}_ys"))
        return a

    def baddr(self, v, cols, t="_t"):
        """address of value v at step _t in the backward kernel (forward residuals)"""
        n = self.size[v]
        k = self.kind[v]
        if k == "param":
            return f"_ptr_{v} + ({cols})[None, :]"
        if k in ("input",) or self.stage[v] == "pre" or k in ("matmul", "pw", "cat"):
            return f"_ptr_{v} + {t} * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        raise AssertionError(v)

    def daddr(self, v, cols, t="_t"):
        """address of the gradient of value v at step _t in the backward kernel"""
        n = self.size[v]
        k = self.kind[v]
        if k == "input" or self.stage[v] == "pre":
            return f"_dptr_{v} + {t} * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        if k == "state":     # the gradient of the state entering step t: the other half of the carry
            return f"_dpp_{v} + ((_tt + 1) % 2) * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        if k == "new_state":
            s = next(s for s, nv in self.new.items() if nv == v)
            return f"_dpp_{s} + (_tt % 2) * _B * {n} + _rows[:, None] * {n} + ({cols})[None, :]"
        return f"_dptr_{v} + {t} * _dts_{v} + _rows[:, None] * {n} + ({cols})[None, :]"

    def load_state_prev(self, w, sym, s, start, mask):
        n = self.size[s]
        # the state entering step t: the saved sequence at t - 1, or the initial state at t = 0 (both loads
        # masked, one of them off; `cj * 0 + t` makes the step a tensor, as a mask must be)
        w(f"{sym} = tl.load(_seq_{s} + (_t - 1) * _B * {n} + _rows[:, None] * {n} + ({start} + _cj)[None, :], "
          f"mask={mask} & ((_cj * 0 + _t) > 0)[None, :], other=0.0) + tl.load(_init_{s} + _rows[:, None] * {n} + "
          f"({start} + _cj)[None, :], mask={mask} & ((_cj * 0 + _t) == 0)[None, :], other=0.0)")

    def region_bwd(self, w, rg):
        region = rg.region
        d0 = region.outputs[0][0]
        width = int(d0.stop - d0.start)
        w(f"# backward of a fused region: {len(rg.grads)} gradient(s)")
        w(f"for _j0 in range(0, {width}, _BN):")
        with w.block():
            w("_cj = _j0 + tl.arange(0, _BN)")
            w(f"_m2 = _rmask[:, None] & (_cj < {width})[None, :]")
            for sym, v in region.leaves:
                if self.kind[v.value] == "param":
                    w(f"{sym.name} = tl.load(_ptr_{v.value} + {v.start} + _cj, mask=_cj < {int(v.stop - v.start)}, "
                      f"other=0.0)[None, :]")
                elif self.kind[v.value] == "state":
                    self.load_state_prev(w, sym.name, v.value, v.start, "_m2")
                else:
                    w(f"{sym.name} = tl.load({self.baddr(v.value, f'{v.start} + _cj')}, mask=_m2, other=0.0)")
            for g, d in rg.cotangents:
                w(f"{g.name} = tl.load({self.daddr(d.value, f'{d.start} + _cj')}, mask=_m2, other=0.0)")
            for sym, e in rg.temps:
                w(f"{sym} = {tl_str(e)}")
            for v, e in rg.grads:
                if self.kind[v.value] == "param":
                    w(f"_g = tl.sum(tl.where(_m2, {tl_str(e)}, 0.0), axis=0)   # summed over the rows")
                    w(f"_pp = _dpart_{v.value} + tl.program_id(0) * {self.size[v.value]} + {v.start} + _cj")
                    w(f"tl.store(_pp, tl.load(_pp, mask=_cj < {width}, other=0.0) + _g, mask=_cj < {width})")
                else:
                    w(f"_ga = {self.daddr(v.value, f'{v.start} + _cj')}")
                    w(f"tl.store(_ga, tl.load(_ga, mask=_m2, other=0.0) + ({tl_str(e)}), mask=_m2)")

    def matmul_operand_bwd(self, w, mm, t):
        """d_operand[_rows, view] += d_out @ W[:, cols]"""
        op, n_out = t.operand, self.size[mm.out]
        K = int(op.stop - op.start)
        ldw = int(self.ir.param_shape(t.weight)[1])
        w(f"# d_{op.value} += d_{mm.out} @ {t.weight}[:, {t.col_start}:{t.col_stop}]")
        w(f"for _k0 in range(0, {K}, _BN):")
        with w.block():
            w("_ck = _k0 + tl.arange(0, _BN)")
            w("_acc = tl.zeros((_BB, _BN), dtype=tl.float32)")
            w(f"for _n0 in range(0, {n_out}, _BK):")
            with w.block():
                w("_cn = _n0 + tl.arange(0, _BK)")
                w(f"_dy = tl.load({self.daddr(mm.out, '_cn')}, mask=_rmask[:, None] & (_cn < {n_out})[None, :], "
                  f"other=0.0)")
                w(f"_wt = tl.load(_ptr_{t.weight} + _cn[:, None] * {ldw} + ({t.col_start} + _ck)[None, :], "
                  f"mask=(_cn < {n_out})[:, None] & (_ck < {K})[None, :], other=0.0)")
                w("_acc += tl.dot(_dy, _wt, input_precision='ieee')")
            w(f"_ga = {self.daddr(op.value, f'{op.start} + _ck')}")
            w(f"_m = _rmask[:, None] & (_ck < {K})[None, :]")
            w("tl.store(_ga, tl.load(_ga, mask=_m, other=0.0) + _acc, mask=_m)")

    def backward_kernel(self, w):
        self.kernel_head(w, "_backward_kernel", self.bwd_args())
        with w.block():
            w("for _tt in range(0, _T):")
            with w.block():
                w("_t = _T - 1 - _tt")
                w("# the carry of each state: half _tt % 2 holds d(new state), the other half collects d(state)")
                for s in self.states:
                    n = self.size[s]
                    w(f"for _j0 in range(0, {n}, _BN):")
                    with w.block():
                        w("_cj = _j0 + tl.arange(0, _BN)")
                        w(f"_m2 = _rmask[:, None] & (_cj < {n})[None, :]")
                        w(f"tl.store({self.daddr(s, '_cj')}, tl.zeros((_BB, _BN), dtype=tl.float32), mask=_m2)")
                        if s in self.outputs:
                            nv = self.new[s]
                            w(f"_ga = {self.daddr(nv, '_cj')}")
                            w(f"tl.store(_ga, tl.load(_ga, mask=_m2, other=0.0) + tl.load(_dys_{s} + _t * _B * {n} + "
                              f"_rows[:, None] * {n} + _cj[None, :], mask=_m2, other=0.0), mask=_m2)")
                for v in self.loop_vals:
                    if self.kind[v] in ("pw", "cat"):
                        n = self.size[v]
                        w(f"for _j0 in range(0, {n}, _BN):")
                        with w.block():
                            w("_cj = _j0 + tl.arange(0, _BN)")
                            w(f"tl.store({self.daddr(v, '_cj')}, tl.zeros((_BB, _BN), dtype=tl.float32), "
                              f"mask=_rmask[:, None] & (_cj < {n})[None, :])")
                w("tl.debug_barrier()")
                def pass_through(x, n):
                    w(f"_dn = tl.load({self.daddr(self.new[x], '_cj')}, mask=_m2, other=0.0)")
                    w(f"tl.store({self.daddr(x, '_cj')}, _dn, mask=_m2)")
                    w(f"tl.store({self.daddr(self.new[x], '_cj')}, tl.zeros((_BB, _BN), dtype=tl.float32), mask=_m2)")
                self.on_ended_rows(w, "ended rows: the carried cotangent passes to the previous state, the step sees "
                                      "none", pass_through)
                for st in self.b.loop:
                    if isinstance(st, RegionGrad):
                        self.region_bwd(w, st)
                    else:
                        for t in st.matmul.terms:
                            if t.operand.value not in self.p.deferred_ops:
                                self.matmul_operand_bwd(w, st.matmul, t)
                    w("tl.debug_barrier()")


class _HostRenderer(_TorchRenderer):
    """The host functions around the kernels; the pre-loop and after-loop work reuses the reference renderer's
    torch printing (one GEMM over all T*B rows each)."""

    def __init__(self, schedule, backward, k):
        super().__init__(schedule, backward)
        self.k = k

    def host_forward(self, w):
        k, s = self.k, self.s
        ins = ", ".join(f"_{n}_seq" for n in self.inputs)
        inits = ", ".join(f"_{x}_init" for x in self.states)
        w("def forward(_xs, _inits, _params, _save, _lengths=None):")
        with w.block():
            w(f"{ins}, = _xs")
            w(f"{inits}, = _inits")
            w(f"{', '.join(self.params)}, = _params" if self.params else "")
            w(f"_T, _B = {self.like}.shape[0], {self.like}.shape[1]")
            if s.pre:
                w("# before the loop: everything that depends on no state, over all T*B rows at once")
                for n in self.inputs:
                    w(f"{n} = _{n}_seq.reshape(_T * _B, {self.size[n]})")
                self.forward_stmts(w, s.pre, "_T * _B")
                for v in s.values:
                    if v.stage == "pre":
                        w(f"_{v.name}_seq = {v.name}.view(_T, _B, {self.size[v.name]})")
            for v in k.loop_vals:
                keep = v in self.p.res_loop
                w(f"_{v}_buf = {self.like}.new_empty(((_T if _save else 1) if {keep} else 1, _B, {self.size[v]}))")
                w(f"_{v}_ts = _B * {self.size[v]} if (_save and {keep}) else 0")
            for x in self.states:
                n = self.size[x]
                w(f"_{x}_pp = {self.like}.new_empty((2, _B, {n})); _{x}_pp[0] = _{x}_init")
                if x in self.ir.outputs:
                    w(f"_{x}_store = {self.like}.new_empty((_T, _B, {n})); _{x}_store_ts = _B * {n}")
                elif x in self.p.res_states:
                    w(f"_{x}_store = {self.like}.new_empty(((_T if _save else 1), _B, {n})); "
                      f"_{x}_store_ts = _B * {n} if _save else 0")
                else:
                    w(f"_{x}_store = {self.like}.new_empty((1, _B, {n})); _{x}_store_ts = 0")
            args = ", ".join(h for _, h in k.fwd_args())
            w(f"_len = _lengths if _lengths is not None else {self.like}.new_zeros((1,), dtype=torch.int64)")
            w(f"_forward_kernel[(triton.cdiv(_B, {BB}),)](_T, _B, {args}, _len, _BB={BB}, _BN={BN}, _BK={BK}, "
              "_MASKED=_lengths is not None)")
            ys = ", ".join(f"_{x}_store" for x in self.ir.outputs)
            finals = ", ".join(f"_{x}_pp[_T % 2].clone()" for x in self.states)
            res = [f"_{v}_seq" for v in self.p.res_pre] + [f"_{v}_buf" for v in self.p.res_loop] + \
                [f"_{x}_store" for x in self.p.res_states]
            w(f"_res = ({', '.join(res)}{',' if res else ''}) if _save else ()")
            w(f"return ({ys},), ({finals},), _res")

    def host_backward(self, w):
        k, p = self.k, self.p
        ins = ", ".join(f"_{n}_seq" for n in self.inputs)
        inits = ", ".join(f"_{x}_init" for x in self.states)
        w("def backward(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _lengths=None):")
        with w.block():
            w(f"{ins}, = _xs")
            w(f"{inits}, = _inits")
            w(f"{', '.join(self.params)}, = _params" if self.params else "")
            w(f"{', '.join(f'_{x}_seq' for x in self.ir.outputs)}, = _ys")
            w(f"{', '.join(f'_d_{x}_ys' for x in self.ir.outputs)}, = _d_ys")
            res = [f"_{v}_seq" for v in p.res_pre] + [f"_{v}_res" for v in p.res_loop] + \
                [f"_{x}_seq" for x in p.res_states]
            if res:
                w(f"{', '.join(res)}, = _res")
            w(f"_T, _B = {self.like}.shape[0], {self.like}.shape[1]")
            w(f"_grid = triton.cdiv(_B, {BB})")
            for q in self.params:
                w(f"d_{q} = torch.zeros_like({q})")
                if self.kind.get(q) == "param":
                    w(f"_d_{q}_part = {self.like}.new_zeros((_grid, {self.size[q]}))")
            for n in self.inputs:
                w(f"_d_{n}_seq = torch.zeros_like(_{n}_seq)")
            for v in p.pre_in_loop:
                w(f"_d_{v}_seq = {self.like}.new_zeros((_T, _B, {self.size[v]}))")
            for v in k.loop_vals:
                if v in p.res_loop:
                    pass
                else:
                    w(f"_{v}_res = {self.like}.new_empty((1,))   # not read by the backward")
                if self.kind[v] == "matmul":
                    w(f"_d_{v}_buf = {self.like}.new_zeros((_T, _B, {self.size[v]})); _d_{v}_ts = _B * {self.size[v]}")
                else:
                    w(f"_d_{v}_buf = {self.like}.new_zeros((1, _B, {self.size[v]})); _d_{v}_ts = 0")
            for i, x in enumerate(self.states):
                w(f"_d_{x}_pp = {self.like}.new_zeros((2, _B, {self.size[x]})); _d_{x}_pp[0] = _d_finals[{i}]")
                if x not in self.ir.outputs and x not in p.res_states:
                    w(f"_{x}_seqr = {self.like}.new_empty((1,))   # not read by the backward")
                else:
                    w(f"_{x}_seqr = _{x}_seq")
            args = ", ".join(h for _, h in k.bwd_args())
            w("if _T > 0:")
            with w.block():
                w(f"_len = _lengths if _lengths is not None else {self.like}.new_zeros((1,), dtype=torch.int64)")
                w(f"_backward_kernel[(_grid,)](_T, _B, {args}, _len, _BB={BB}, _BN={BN}, _BK={BK}, "
                  "_MASKED=_lengths is not None)")
            for q in self.params:
                if self.kind.get(q) == "param":
                    w(f"d_{q} += _d_{q}_part.sum(0)")
            self.after_loop_gemms(w, loop_value="_{}_res", d_out="_d_{}_buf", defer_operands=True)
            self.pre_backward(w)
            d_in = ", ".join(f"_d_{n}_seq" for n in self.inputs)
            d_init = ", ".join(f"_d_{x}_pp[_T % 2].clone()" for x in self.states)
            d_par = ", ".join(f"d_{q}" for q in self.params)
            w(f"return ({d_in},), ({d_init},), ({d_par}{',' if d_par else ''})")


class TritonKernel:
    def __init__(self, source, forward, backward):
        self.source, self._forward, self.backward = source, forward, backward

    def forward(self, xs, inits, params, save, lengths=None):
        if xs[0].dtype != torch.float32:
            # the kernels accumulate in float32: other dtypes would lose precision silently
            raise TypeError(f"backend='triton' computes in float32; got {xs[0].dtype}. Use .float(), or the cpp "
                            "or reference backend for float64")
        return self._forward(xs, inits, params, save, lengths)


def interpreted():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@register("triton")
class TritonBackend:
    symbolic = False   # sizes are compile-time constants of the kernels
    @staticmethod
    def usable(device):
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return device.type == "cuda" or (device.type == "cpu" and interpreted())

    def build(self, spec, dims):
        try:
            import triton
            import triton.language as tl
        except ImportError:
            raise RuntimeError("symcell: backend='triton' needs the triton package (pip install triton)") from None
        schedule, backward = spec.schedule(dims)
        k = _KernelRenderer(schedule, backward)
        h = _HostRenderer(schedule, backward, k)
        w = Writer()
        w(f"# symcell triton backend: {schedule.ir.name}")
        k.forward_kernel(w)
        w()
        k.backward_kernel(w)
        w()
        h.host_forward(w)
        w()
        h.host_backward(w)
        source = w.text()
        # triton.jit reads the kernel's source from its file: write it to the cache folder, import from there
        from .. import cache
        folder = cache.cache_dir() / "triton"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{schedule.ir.name}_{cache.cache_key(source, [], [])}.py"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)
        linecache.checkcache(str(path))
        scope = {"torch": torch, "_F": _F, "triton": triton, "tl": tl, "_step": _step, "_elu_grad": _elu_grad,
                 "_sum_rows": _sum_rows, "_full": _full, "__file__": str(path), "__name__": f"symcell_triton_{next(_counter)}"}
        exec(compile(source, str(path), "exec"), scope)  # noqa: S102 - our own generated code
        return TritonKernel(source, scope["forward"], scope["backward"])
