"""What each backend must keep between the forward and the backward scan: one analysis, shared by all renderers.

    loop_reads      values the forward loop reads per step that come from outside it (inputs, pre values)
    bwd_loop_reads  values the backward loop reads (region leaves, matmul operands for the deferred dW)
    res_pre         pre-loop values the backward reads (kept as (T, B, n))
    res_loop        in-loop matmul / pointwise / cat values the backward reads (kept per step)
    res_states      states the backward reads that are not outputs (their sequence is kept)
    pre_in_loop     pre-loop values whose gradient the backward loop accumulates per step
    loop_mm         in-loop matmul outputs (their per-step gradients feed one deferred dW GEMM)
    deferred_ops    operands of in-loop matmul terms that depend on no state: nothing in the loop needs their
                    gradient, so a backend may compute it after the loop as one GEMM over all T*B rows
"""
from dataclasses import dataclass
from typing import Tuple

from .autodiff import MatMulGrad, RegionGrad
from .schedule import MatMul, Region


def _reads(stmts):
    out = set()
    for st in stmts:
        if isinstance(st, (Region, RegionGrad)):
            region = st if isinstance(st, Region) else st.region
            out |= {v.value for _, v in region.leaves}
        else:
            out |= {t.operand.value for t in (st if isinstance(st, MatMul) else st.matmul).terms}
    return out


@dataclass(frozen=True)
class Plan:
    loop_reads: frozenset
    bwd_loop_reads: frozenset
    bwd_pre_reads: frozenset
    res_pre: Tuple[str, ...]
    res_loop: Tuple[str, ...]
    res_states: Tuple[str, ...]
    pre_in_loop: Tuple[str, ...]
    loop_mm: Tuple[str, ...]
    deferred_ops: frozenset

    @property
    def residuals(self):
        return self.res_pre + self.res_loop + self.res_states


def plan(schedule, backward):
    loop_reads = _reads(schedule.loop)
    bwd_loop = _reads(backward.loop)
    bwd_pre = _reads(backward.pre)
    states = [n for n, _ in schedule.ir.states]
    vals = schedule.values
    kind = {v.name: v.kind for v in vals}
    stage = {v.name: v.stage for v in vals}
    deferred = frozenset(t.operand.value for st in schedule.loop if isinstance(st, MatMul) for t in st.terms
                         if kind[t.operand.value] == "input" or stage[t.operand.value] == "pre")
    return Plan(
        loop_reads=frozenset(loop_reads),
        bwd_loop_reads=frozenset(bwd_loop),
        bwd_pre_reads=frozenset(bwd_pre),
        res_pre=tuple(v.name for v in vals if v.stage == "pre" and v.name in bwd_loop | bwd_pre),
        res_loop=tuple(v.name for v in vals if v.stage == "loop" and v.kind in ("matmul", "pw", "cat")
                       and v.name in bwd_loop),
        res_states=tuple(s for s in states if s in bwd_loop and s not in schedule.ir.outputs),
        pre_in_loop=tuple(v.name for v in vals if v.stage == "pre" and v.name in bwd_loop),
        loop_mm=tuple(st.matmul.out for st in backward.loop if isinstance(st, MatMulGrad)),
        deferred_ops=deferred,
    )
