"""The tangents of a cell's scans (forward-mode derivatives), as more scans of the same statements.

For a step h_t = f(h_{t-1}, x_t, W), the tangent is h'_t = f_h h'_{t-1} + f_x x'_t + f_W W': a scan in the same
direction, carrying h'. Every statement has tangent statements (`_tangents`): a matmul's is the matmul of the
tangent operands plus the matmul with the tangent weights; a Pointwise's is its derivative by functions.diff; an
accumulation accumulates tangents. The tangent of the backward scan's Pointwise differentiates first
derivatives, so the second derivatives come out derived, not approximated. A buffer v's tangent is `_v_<v>`.

  tangent_forward   the JVP of the forward scan: it reads the primal values the forward kept for the backward
                    (the same ones: a tangent needs a region's leaves and a matmul's operands, as a gradient does)
                    and recomputes none; (x', h'_0, W') -> (y', h'_T, and, when saving, the residuals' tangents)
  tangent_backward  the JVP of the backward scan: the backward again (its adjoints are not kept) with its tangent
                    alongside, what is not needed for the tangents left out; -> the tangents of the gradients

Together they make every second derivative: for s(p) = <d, F(p)> the gradient is G(p, d) = J_F(p)^T d; its VJP
with cotangent a is (J_F(p) a, H_s(p) a) = (tangent_forward, tangent_backward in direction a), as the Hessian of
s is symmetric; its JVP in direction (p', d') is tangent_backward too (autograd.py composes them).
"""
from dataclasses import replace

import sympy

from .kernel import (Accumulate, Arg, Buffer, HoldEnded, Keep, MatMul, OperandGrad, PassEnded, Pointwise, Result,
                     Role, Scan, WeightGrad, pointwise, reads, writes)
from .functions import diff, masked
from .schedule import Term, View


def tan(name):
    """The buffer of a buffer's tangent (user names cannot start with '_')."""
    return f"_v_{name}"


def _tangent_arg(a):
    return Arg(f"_v{a.name}", tuple(tan(n) for n in a.buffers))


def is_tangent(arg):
    """Whether a scan's argument holds tangents (the tangent scans' second half of arguments)."""
    return arg.name.startswith("_v")


def _view(v):
    return View(tan(v.value), v.start, v.stop)


def _tangent_pointwise(st, primal):
    """The derivative of each output by each leaf, times the leaf's tangent, summed: one region with the tangent
    outputs (and the primal ones too, when `primal`), the common subexpressions of all named once."""
    tangents = [(sympy.Symbol(tan(s.name)), _view(v)) for s, v in st.leaves]
    outputs = [(d, e, acc) for (d, _, acc), e in zip(st.outputs, st.exprs)] if primal else []
    # d/de f(u + e u') at e = 0: the chain rule keeps a sum inside a function a sum (f'(a + b) (a' + b'), not
    # f'(a + b) a' + f'(a + b) b')
    eps = sympy.Symbol("_eps")
    moved = {s: s + eps * ts for (s, _), (ts, _) in zip(st.leaves, tangents)}
    for (d, _, acc), e in zip(st.outputs, st.exprs):
        de = masked(diff(e.xreplace(moved), eps).xreplace({eps: 0}))
        if de != 0 or not acc:   # an assigned tangent is written even when it is 0
            outputs.append((_view(d), de, acc))
    return pointwise(list(st.leaves) + tangents, outputs, st.n, temp_prefix="_u")


def _tangents(st, primal):
    """The statements computing st's tangents (and st itself first, when `primal`)."""
    if isinstance(st, Pointwise):
        return [_tangent_pointwise(st, primal)]
    out = [st] if primal else []
    if isinstance(st, MatMul):
        terms = tuple(Term(t.weight, t.col_start, t.col_stop, _view(t.operand)) for t in st.terms) + \
            tuple(Term(tan(t.weight), t.col_start, t.col_stop, t.operand) for t in st.terms)
        out.append(MatMul(tan(st.out), terms, st.accumulate))
    elif isinstance(st, OperandGrad):
        out += [OperandGrad(_view(st.dest), tan(st.src), st.weight, st.col_start, st.col_stop),
                OperandGrad(_view(st.dest), st.src, tan(st.weight), st.col_start, st.col_stop)]
    elif isinstance(st, WeightGrad):
        out += [WeightGrad(tan(st.dest), st.col_start, st.col_stop, tan(st.src), st.operand),
                WeightGrad(tan(st.dest), st.col_start, st.col_stop, st.src, _view(st.operand))]
    elif isinstance(st, HoldEnded):
        out.append(HoldEnded(tuple((tan(a), tan(b)) for a, b in st.pairs)))
    elif isinstance(st, PassEnded):
        out.append(PassEnded(tuple((tan(a), tan(b)) for a, b in st.pairs)))
    elif isinstance(st, Accumulate):
        out.append(Accumulate(tan(st.dest), tan(st.src)))
    else:
        raise TypeError(f"no tangent rule for {type(st).__name__}")
    return out


def _tangent_buffer(b, keep=None):
    return replace(b, name=tan(b.name), seq=tan(b.seq) if b.seq else "", keep=b.keep if keep is None else keep)


def _hoisted(stmts, role):
    """A loop's tangent matmuls split where some of their terms read only sequences (no carried value): those
    terms become one matmul before the loop over all T*B rows, the rest accumulate onto it in the loop.
    -> (statements before the loop, the loop's statements, the outputs now sequences)"""
    before, step, seqs = [], [], set()
    for st in stmts:
        if not isinstance(st, MatMul):
            step.append(st)
            continue
        ahead = tuple(t for t in st.terms if role(t.operand.value) == Role.SEQ)
        rest = tuple(t for t in st.terms if t not in ahead)
        if ahead and rest:
            before.append(MatMul(st.out, ahead))
            step.append(MatMul(st.out, rest, accumulate=True))
            seqs.add(st.out)
        else:
            step.append(st)
    return before, step, seqs


def tangent_forward(forward, backward):
    """The JVP of the forward scan, reading the primal values the backward reads (its primal buffers and args)."""
    groups = ("_xs", "_inits", "_params", "_ys", "_res")   # the backward's arguments that are primal values
    names = {n for a in backward.args if a.name in groups for n in a.buffers}
    primal = [b for b in backward.buffers if b.name in names]
    kept = set(forward.returns[2].buffers)            # the residuals: their tangents are kept when saving
    outputs = set(forward.returns[0].buffers)
    role = {b.name: b.role for b in primal}
    role.update({tan(b.name): b.role for b in forward.buffers})
    before = [t for st in forward.before for t in _tangents(st, primal=False)]
    moved, step, seqs = _hoisted([t for st in forward.step for t in _tangents(st, primal=False)], role.get)
    buffers = list(primal)
    for b in forward.buffers:
        if b.role == Role.CARRY_OUT:
            keep = Keep.ALWAYS if b.name in outputs else Keep.SAVE if b.name in kept else Keep.NEVER
            buffers.append(_tangent_buffer(b, keep))
        elif tan(b.name) in seqs:   # a matmul output computed partly before the loop: a whole sequence
            buffers.append(Buffer(tan(b.name), Role.SEQ, b.size))
        elif b.role == Role.STEP:
            buffers.append(_tangent_buffer(b, Keep.SAVE if b.name in kept else Keep.NEVER))
        else:
            buffers.append(_tangent_buffer(b))
    args = tuple(a for a in backward.args if a.name in groups) + tuple(_tangent_arg(a) for a in forward.args)
    return Scan(name="tangent_forward", reverse=forward.reverse, save=True, args=args, buffers=tuple(buffers),
                before=tuple(before + moved), step=tuple(step), after=(),
                carries=tuple((tan(a), tan(b)) for a, b in forward.carries),
                returns=(Result("t_ys", tuple(tan(n) for n in forward.returns[0].buffers)),
                         Result("t_finals", tuple(tan(n) for n in forward.returns[1].buffers)),
                         Result("t_res", tuple(tan(n) for n in forward.returns[2].buffers), save=True)))


def tangent_backward(backward):
    """The JVP of the backward scan: every argument has a tangent; the results are the gradients' tangents."""
    args = backward.args + tuple(_tangent_arg(a) for a in backward.args)
    buffers = list(backward.buffers) + [_tangent_buffer(b) for b in backward.buffers]
    returns = tuple(Result(f"t_{r.name}", tuple(tan(n) for n in r.buffers)) for r in backward.returns)
    scan = Scan(name="tangent_backward", reverse=backward.reverse, save=False, args=args, buffers=tuple(buffers),
                before=tuple(t for st in backward.before for t in _tangents(st, primal=True)),
                step=tuple(t for st in backward.step for t in _tangents(st, primal=True)),
                after=tuple(t for st in backward.after for t in _tangents(st, primal=True)),
                carries=backward.carries + tuple((tan(a), tan(b)) for a, b in backward.carries), returns=returns)
    return without_dead_code(scan)


def _live(stmts, needed):
    """Walk statements backwards: keep what writes a needed buffer (a Pointwise keeps only such outputs), and
    what it reads becomes needed. -> (kept statements in order, needed before them)"""
    kept = []
    for st in reversed(stmts):
        if isinstance(st, Pointwise):
            outs = [(o, e) for o, e in zip(st.outputs, st.exprs) if o[0].value in needed]
            if not outs:
                continue
            if len(outs) < len(st.outputs):
                st = pointwise(st.leaves, [(d, e, acc) for (d, _, acc), e in outs], st.n, temp_prefix="_u")
        elif not writes(st) & needed:
            continue
        kept.append(st)
        needed = needed | reads(st)
    return kept[::-1], needed


def without_dead_code(scan):
    """The scan without the statements (and outputs of statements) its results do not need, and without the
    buffers nothing uses any more (arguments stay: they are the entry point's signature)."""
    needed = set(r for res in scan.returns for r in res.buffers)
    after, needed = _live(scan.after, needed)
    carry_of = dict(scan.carries)   # carry-in -> carry-out: what is carried into a step was written by the last
    while True:
        loop_needed = needed | {carry_of[c] for c in needed if c in carry_of}
        step, entering = _live(scan.step, loop_needed)
        grown = needed | entering | {carry_of[c] for c in entering if c in carry_of}
        if grown == needed:
            break
        needed = grown
    before, needed = _live(scan.before, needed)
    stmts = before + step + after
    used = set().union(*[reads(st) | writes(st) for st in stmts]) | set(carry_of) | set(carry_of.values())
    used |= {r for res in scan.returns for r in res.buffers} | {n for a in scan.args for n in a.buffers}
    used |= {b.seq for b in scan.buffers if b.role == Role.PREV and b.name in used}
    return replace(scan, before=tuple(before), step=tuple(step), after=tuple(after),
                   buffers=tuple(b for b in scan.buffers if b.name in used),
                   carries=tuple((a, b) for a, b in scan.carries if a in needed or b in needed))
