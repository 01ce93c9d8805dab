"""What a call of a scan may leave out at run time, as data: the backends that take `skip=` flags (base.py) render
these conditions, and flops.py counts the work they leave in.

A call's flags: one per argument tensor (it is all zeros: callers look at tangents, tangent.py, and say when they
have none), then one per result (not wanted). A matmul term on a zero argument is left out of its GEMM; a
transposed matmul or weight gradient on one, or into a result nothing else reads and nobody wants, is not run; a
region all of whose outputs are such results is not run. And at the loop's last step, a step statement that writes
only carries whose values after it nobody reads but as a result nobody wants (a backward's transposed matmul into
the initial state's gradient when the initial state needs none: one step's recurrent matmul, a T=1 call's only
one) is not run.

A condition is a tuple of clauses, any of which holds (or); a clause is a tuple of flags, all of which hold (and);
a flag is ("zero", buffer), ("unwanted", buffer), or LAST: the loop's last step, not one of the call's flags but
the step's own (a backend tests its loop counter; flops.py counts that step apart).
"""
from .kernel import Keep, MatMul, OperandGrad, Pointwise, Role, WeightGrad, sources, writes
from .tangent import is_tangent


LAST = ("last", "")


def variable(flag):
    """the name a renderer gives a call's flag in its code: _unwanted_d_x, _zero__t_weight"""
    return f"_{flag[0]}_{flag[1]}"


def flag_names(scan):
    """the buffers the call's flags are about, in the flags' order: every argument tensor, then every result (a
    buffer may be both: a carried value)"""
    return [("zero", n) for a in scan.args for n in a.buffers] + [("unwanted", n) for r in scan.returns for n in r.buffers]


def call_flags(scan, groups, wanted):
    """The `skip` flags of a call (in flag_names' order; [] where none is on): a tangent argument (tangent.py) that
    is all zeros (a tangent the caller has none of comes here as zeros; on the CPU, looking costs a read of it), then
    the results not wanted (`wanted`: a bool each, None for all). A first-order scan reads only its groups' lengths
    (a FLOP formula's shapes do too)."""
    unwanted = [] if wanted is None or all(wanted) else [int(not w) for w in wanted]
    if not any(map(is_tangent, scan.args)):   # (a first-order scan: no tangents to look at)
        return [0] * sum(map(len, groups)) + unwanted if unwanted else []
    zero = [int(is_tangent(a) and t.device.type == "cpu" and not t.any()) for a, g in zip(scan.args, groups)
            for t in g]
    return zero + unwanted if any(zero) or unwanted else []


def conditions(scan):
    """-> ({id(statement): condition to leave it out}, {id(matmul): [condition to leave term k out]}), the
    statements of before, step and after that have one"""
    buf = {b.name: b for b in scan.buffers}
    results = {n for r in scan.returns for n in r.buffers}
    read = set().union(*[sources(st) for st in scan.before + scan.step + scan.after], *[set(p) for p in scan.carries])
    tangents = {n for a in scan.args if is_tangent(a) for n in a.buffers}   # (the ones callers look at)

    def zero(name):   # known zero at run time: a SEQ or PARAM tangent, or a PREV both of whose parts are
        b = buf[name]
        if name in tangents and b.role in (Role.SEQ, Role.PARAM):
            return ((("zero", name),),)
        if name in tangents and b.role == Role.PREV and b.seq in tangents:
            return ((("zero", name), ("zero", b.seq)),)
        return ()

    def droppable(name):   # a result no statement reads
        return name in results and name not in read

    def unwanted(name):
        return ((("unwanted", name),),) if droppable(name) else ()

    skip_if, term_off = {}, {}
    for st in scan.before + scan.step + scan.after:
        if isinstance(st, MatMul):
            term_off[id(st)] = [zero(t.operand.value) + zero(t.weight) for t in st.terms]
            cond = unwanted(st.out)
        elif isinstance(st, OperandGrad):
            cond = zero(st.src) + zero(st.weight) + unwanted(st.dest.value)
        elif isinstance(st, WeightGrad):
            cond = zero(st.src) + zero(st.operand.value) + unwanted(st.dest)
        elif isinstance(st, Pointwise):
            outs = sorted({d.value for d, _, _ in st.outputs})
            cond = (tuple(("unwanted", d) for d in outs),) if all(map(droppable, outs)) else ()
        else:
            cond = ()
        if cond:
            skip_if[id(st)] = cond
    for st, clause in _final_step_only(scan, results):
        skip_if[id(st)] = skip_if.get(id(st), ()) + (clause,)
    return skip_if, term_off


def _final_step_only(scan, results):
    """-> [(step statement, clause: LAST and its carries' results unwanted)]: the statements whose every output is a
    CARRY_OUT kept in no sequence, not a result itself, read by no statement after it in the step nor after the
    loop, its paired CARRY_IN (the value after the last step) a result that nothing after the loop reads. At the
    last step such a statement's work goes only into unwanted results. (Earlier statements of the step that read
    the carry, e.g. PassEnded, run before it and are unaffected.)"""
    buf = {b.name: b for b in scan.buffers}
    carried = {out: cin for cin, out in scan.carries}
    after = set().union(*[sources(st) for st in scan.after])
    found = []
    for k, st in enumerate(scan.step):
        if not isinstance(st, (MatMul, OperandGrad, Pointwise)):
            continue
        later = set().union(after, *[sources(s) for s in scan.step[k + 1:]])
        outs = sorted(writes(st))
        if outs and all(o in carried and buf[o].keep == Keep.NEVER and o not in results and o not in later
                        and carried[o] in results and carried[o] not in after for o in outs):
            found.append((st, (LAST, *(("unwanted", carried[o]) for o in outs))))
    return found


def holds(cond, flags):
    """whether a condition holds for the set of flags that are on"""
    return any(all(f in flags for f in clause) for clause in cond)


def on(scan, skip):
    """the flags a call's `skip` list (one int each, in flag_names' order) turns on"""
    return {f for f, s in zip(flag_names(scan), skip) if s}
