"""gradients(): the schedule and the derived backward of one step as text a reader can check by hand.

It is given the pipeline's products (pipeline.lower with sizes left symbolic: H, I, ...), and recomputes nothing.
"""
import sympy

from .autodiff import MatMulGrad
from .dims import fmt
from .printing import math_str
from .schedule import Kind, MatMul


def _view(name, v, schedule):
    full = v.start == 0 and v.stop == schedule.value(v.value).size
    return name if full else f"{name}[{fmt(v.start)}:{fmt(v.stop)}]"


def _weight(term, ir):
    cols = ir.param_shape(term.weight)[1]
    if term.col_start == 0 and term.col_stop == cols:
        return term.weight
    return f"{term.weight}[:, {fmt(term.col_start)}:{fmt(term.col_stop)}]"


def _leaves(region, schedule):
    return [f"{s.name} = {_view(v.value, v, schedule)}" for s, v in region.leaves if s.name != v.value]


def _where(lines, leaves):
    for k, leaf in enumerate(leaves):
        lines.append(f"      {'where' if k == 0 else '     '} {leaf}")


def _forward(lines, stmts, schedule):
    for st in stmts:
        if isinstance(st, MatMul):
            lines.append(f"    {st.out} = " + " + ".join(f"{_view(t.operand.value, t.operand, schedule)} @ "
                                                        f"{_weight(t, schedule.ir)}.T" for t in st.terms))
        else:
            lines.append("    fused region:")
            _where(lines, _leaves(st, schedule))
            temps, outputs = _shared(st.outputs)
            for name, e in temps:
                lines.append(f"      {name} = {math_str(e)}")
            for dest, e in outputs:
                text = f"sum({math_str(e)})" if _summed(dest, st) else math_str(e)
                lines.append(f"      {_view(dest.value, dest, schedule)} = {text}")


# a region's outputs longer than this, printed whole, are printed with their common subexpressions named (_f0 ...)
# as the backward's are: an sLSTM's h_new was one line of 1000 characters, a nested cell's 13000
LONG = 160


def _shared(outputs):
    if max((len(math_str(e)) for _, e in outputs), default=0) <= LONG:
        return (), outputs
    temps, reduced = sympy.cse([e for _, e in outputs], symbols=sympy.numbered_symbols("_f"), optimizations=None)
    return temps, tuple((dest, e) for (dest, _), e in zip(outputs, reduced))


def _backward(lines, stmts, schedule, in_loop):
    for st in stmts:
        if isinstance(st, MatMulGrad):
            mm = st.matmul
            when = "summed over all steps in one GEMM after the loop" if in_loop else "over all T*B rows"
            inputs = {n for n, _ in schedule.ir.inputs}
            for t in mm.terms:
                op = _view(t.operand.value, t.operand, schedule)
                w = _weight(t, schedule.ir)
                # (an input's gradient depends on no later step: the backends run it after the loop, one GEMM)
                after = "      (over all T*B rows in one GEMM after the loop)" if in_loop and t.operand.value in inputs \
                    else ""
                lines.append(f"    d_{op} += d_{mm.out} @ {w}{after}")
                lines.append(f"    d_{w} += d_{mm.out}.T @ {op}      ({when})")
            continue
        lines.append("    fused region:")
        _where(lines, _leaves(st.region, schedule))
        cot = [f"{g.name} = d_{_view(d.value, d, schedule)}" for g, d in st.cotangents
               if g.name != f"d_{_view(d.value, d, schedule)}"]
        if cot:
            lines.append("      cotangents " + ", ".join(cot))
        for s, e in st.temps:
            lines.append(f"      {s.name} = {math_str(e)}")
        for v, e in st.grads:
            over = [what for what, yes in (("the batch", schedule.value(v.value).kind == Kind.PARAM),
                                           ("the features", _summed(v, st.region))) if yes]
            tail = f"      (summed over {' and '.join(over)})" if over else ""
            lines.append(f"      d_{_view(v.value, v, schedule)} += {math_str(e)}{tail}")


def _summed(view, region):
    """a view of one feature in a wider region: a reduction's result, or a broadcast value's gradient"""
    return view.stop - view.start == 1 and region.width != 1


def explain(schedule, bwd):
    """The text of gradients(): the schedule, then its derived backward."""
    ir = schedule.ir
    lines = [f"{ir.name}: one step, as scheduled (x @ W.T is a matmul over the batch rows; "
             f"v[a:b] is features a..b-1)", ""]
    lines += forward_lines(schedule)
    lines.append("")
    lines += backward_lines(schedule, bwd)
    return "\n".join(lines)


def forward_lines(schedule):
    ir, lines = schedule.ir, []
    sizes = ", ".join(f"{n}: {fmt(s)}" for n, s in ir.inputs + ir.states)
    lines.append(f"  sizes: {sizes}")
    lines.append("  the new states: " + ", ".join(f"{s} <- {n}" for (s, _), n in zip(ir.states, schedule.new_states)))
    if ir.views:   # (split(W, k)'s blocks, and a 3-d parameter's, are matrices of their own in the text below)
        lines.append("  blocks of rows (a 3-d parameter's first two dimensions as one):")
        lines += [f"    {n} = {p}[{fmt(r0)}:{fmt(r1)}]" for n, p, r0, r1 in ir.views]
    lines.append("")
    if schedule.pre:
        lines.append("  forward, before the loop (depends on no state: all T*B rows at once):")
        _forward(lines, schedule.pre, schedule)
    lines.append("  forward, each step:")
    _forward(lines, schedule.loop, schedule)
    return lines


def backward_lines(schedule, bwd):
    ir, lines = schedule.ir, []
    lines.append("  backward, each step in reverse time (d_v is dL/dv; d_<state>_new = carry + dL/dys[t]):")
    _backward(lines, bwd.loop, schedule, True)
    lines.append("    the carry into step t-1 is d_" + ", d_".join(n for n, _ in ir.states))
    if bwd.pre:
        lines.append("  backward, after the loop (all T*B rows at once):")
        _backward(lines, bwd.pre, schedule, False)
    return lines
