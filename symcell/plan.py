"""What the forward scan must keep for the backward scan, and which gradients can wait for the end of the loop:
one analysis of the schedule and its derived backward (kernel.py builds the scans from it).

    res_pre       values computed before the loop that the backward reads (kept as (T, B, n))
    res_loop      values of the step (matmul, pointwise, cat) that the backward loop reads (kept per step)
    res_states    states the backward loop reads that are not outputs (their sequence is kept; outputs are
                  kept anyway)
    loop_mm       in-loop matmul outputs: their per-step gradients are kept, for one deferred weight GEMM
    deferred_ops  operands of in-loop matmul terms that depend on no state (inputs, values before the loop):
                  nothing in the loop needs their gradient, so it is one GEMM over all T*B rows after the loop
"""
from dataclasses import dataclass
from typing import FrozenSet, Tuple

from .autodiff import MatMulGrad, RegionGrad
from .schedule import Kind, MatMul, Region, Stage


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
    res_pre: Tuple[str, ...]
    res_loop: Tuple[str, ...]
    res_states: Tuple[str, ...]
    loop_mm: Tuple[str, ...]
    deferred_ops: FrozenSet[str]


def plan(schedule, backward):
    bwd_loop, bwd_pre = _reads(backward.loop), _reads(backward.pre)
    vals, ir = schedule.values, schedule.ir
    value = {v.name: v for v in vals}
    return Plan(
        res_pre=tuple(v.name for v in vals if v.stage == Stage.PRE and v.name in bwd_loop | bwd_pre),
        res_loop=tuple(v.name for v in vals if v.stage == Stage.LOOP and v.kind in (Kind.MATMUL, Kind.PW, Kind.CAT)
                       and v.name in bwd_loop),
        res_states=tuple(s for s, _ in ir.states if s in bwd_loop and s not in ir.outputs),
        loop_mm=tuple(st.matmul.out for st in backward.loop if isinstance(st, MatMulGrad)),
        deferred_ops=frozenset(t.operand.value for st in schedule.loop if isinstance(st, MatMul) for t in st.terms
                               if value[t.operand.value].kind == Kind.INPUT
                               or value[t.operand.value].stage == Stage.PRE),
    )
