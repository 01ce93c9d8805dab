"""From a traced cell to a built kernel: every pass, in order, in two functions.

    lower(ir, dims)            bind_ir -> rewrite -> hoist -> materialize -> allocate_values -> form_regions
                               -> derive -> plan -> lower_to_kernel          (each a pure function of the last)
    backend_program(lowered, backend)      the passes a backend asks for: params_summed_after_loop (triton)
    second_order(program)      tangent_forward, tangent_backward              (made when first needed)
    build(program, backend, dims, scans)   backend.render -> backend.build

dims=None keeps the sizes symbolic: backends with `symbolic = True` (cpp) take them at run time, and
gradients() prints them as H, I, .... With SYMCELL_DEBUG=1 every stage's product is printed to stderr as it is
made, then the generated source.
"""
import os
import sys
from dataclasses import dataclass

from .autodiff import Backward, derive
from .explain import backward_lines, forward_lines
from .ir import CellIR, fingerprint
from .kernel import KernelProgram, describe, describe_scan, lower_to_kernel, params_summed_after_loop
from .plan import Plan, plan
from .schedule import Schedule, allocate_values, bind_ir, form_regions, hoist, materialize, rewrite
from .tangent import tangent_backward, tangent_forward


def debugging():
    """SYMCELL_DEBUG set: every stage's product printed as it is made"""
    return os.environ.get("SYMCELL_DEBUG", "0").strip().lower() not in ("", "0", "false", "no", "off")


def _show(stage, text):
    if debugging():
        print(f"--- symcell {stage} ---\n{text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Lowered:
    """What the passes made of one cell at one binding of its dimensions (None: symbolic)."""
    ir: CellIR
    dims: tuple
    schedule: Schedule
    backward: Backward
    plan: Plan
    program: KernelProgram


def lower(ir, dims=None):
    _show(f"trace: {ir.name}", fingerprint(ir))
    if dims is not None:
        ir = bind_ir(ir, dims)
        _show(f"bind_ir: {dict(dims)}", fingerprint(ir))
    returns = rewrite(ir.returns)
    _show("rewrite", "\n".join(f"{s} <- {r.label}" for (s, _), r in zip(ir.states, returns)))
    pre = hoist(returns)
    _show("hoist", ", ".join(sorted(n.label for n in pre if n.op == "matmul")) or "(nothing: every matmul reads a state)")
    buffered = materialize(returns)
    _show("materialize", ", ".join(n.label for n in buffered) or "(nothing)")
    alloc = allocate_values(ir, returns, pre, buffered)
    _show("allocate_values", "\n".join(f"{v.name}: {v.kind}, {v.stage}, size {v.size}" for v in alloc.values))
    schedule = form_regions(ir, alloc)
    _show("form_regions", "\n".join(forward_lines(schedule)))
    backward = derive(schedule)
    _show("derive", "\n".join(backward_lines(schedule, backward)))
    p = plan(schedule, backward)
    _show("plan", repr(p))
    program = lower_to_kernel(schedule, backward, p)
    _show("lower_to_kernel", describe(program))
    return Lowered(ir, None if dims is None else tuple(sorted(dims.items())), schedule, backward, p, program)


def second_order(program):
    """The tangents of a program's forward and backward scans (tangent.py): what every second derivative runs.
    (A backend's program, backend_program(): the tangents of what its first order runs.)"""
    scans = (tangent_forward(program.forward, program.backward), tangent_backward(program.backward))
    for scan in scans:
        _show(scan.name, describe_scan(scan))
    return scans


def backend_program(lowered, backend):
    """The lowered cell's program as `backend` runs it: with the passes it asks for (param_sums_after_loop)."""
    program = lowered.program
    if backend.param_sums_after_loop:
        program = params_summed_after_loop(program)
        _show("params_summed_after_loop", describe_scan(program.backward))
    return program


def build(program, backend, dims, scans):
    """The backend's source for some scans of its program (backend_program()), and their entry points (sizes
    `dims` at run time) -> (source, {scan name: entry point})"""
    source = backend.render(program, scans)
    _show(f"source ({backend.name}: {', '.join(s.name for s in scans)})", source)
    return source, backend.build(program, scans, source, dims)
