"""C++ from a kernel program: one function per scan, the whole sequence in one native call.

The program is symbolic, so dimensions, T and B are run-time values and one build serves every size of a cell.
How each scan runs (the why of each choice is measured; see BENCHMARKS.md):
  - the time loop runs on a slice of the batch rows per thread (sc::scan_rows): rows never interact in a
    recurrence, so with enough rows no thread waits for another at any step;
  - float32 matmuls go through oneDNN's batch-reduce GEMM microkernel (MKL's sgemm where it is not available): a
    step's (sc::mm_kn, mm_panels), and those over all T*B rows in blocks a core's caches hold (sc::mm_tall_*);
    float64 and small ones through MKL's BLAS; the terms of one matmul (W_ih x + W_hh h)
    are one GEMM over the operands side by side against the weights stacked and transposed once per call (in
    panels for the step), or, in a call too short for those copies to pay (sc::direct, direct_grads), one GEMM
    per term against the weights as stored;
  - each fused region is one `omp simd` loop per row over the features; float exp/sigmoid/tanh are plain
    arithmetic (sc.h) so they vectorize; a vector parameter's gradient sums into per-thread partials (no lock);
  - a step computes only the rows up to its last one still running (_na): rows sorted longest first (the cpp
    backend's row order) make a batch of mixed lengths cost what its running rows cost.
"""
import re

import sympy

from ... import skips
from ...kernel import Keep, MatMul, OperandGrad, Role, WeightGrad, grad, weight_grads_assigned, weights_only, writes
from ...printing import Writer, cpp_str, size_str
from ..base import Renderer

# Names the cpp backend's generated code cannot take as a variable: C++'s keywords, a few macros, and the names it
# uses itself unqualified (namespaces, scalar_t, int64_t: a variable so named hides them). A cell naming a value so
# is refused when defined (symcell.define), not by a compiler error at its first call on a CPU. (Other macros of
# the headers, M_PI, EIO, are undefined after them where the code names a value so: _undefine_macros.)
RESERVED = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
    compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
    default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
    int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template
    this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t
    while xor xor_eq NULL EOF INFINITY NAN assert errno
    at c10 sc std torch omp scalar_t size_t ptrdiff_t int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t
    uint64_t SYMCELL_NS SYMCELL_SCALAR SYMCELL_SECOND_UNIT SC_STRING SC_STRING_""".split())

LEGEND = """\
// names: _dim_D a dimension; _n_v the features per row of buffer v; _ld_W the row stride of matrix W;
// _seq_v a (T, B, n) sequence (row block t is step t); _init_v a carried value's initial value;
// _t_v, _res_v, _buf_v, _pp_v the tensors behind an allocated sequence, a kept residual, per-step scratch and
// the two alternating slots of a carried value; _wt_m the transposed, stacked weights of matmul m (in panels in
// the loop, sc::mm_panels); _wp_k the weights of the step's k-th transposed matmul, in panels;
// _parts_v per-thread partial sums of a vector parameter's gradient; _b0.._b1 a thread's batch rows (_nb of
// them); _na the rows still running at step _t; d_v the gradient of v; _w_W weight matrix W as the call reads it
// (sc::weight: a bfloat16 or float16 module's as given, where the forward multiplies it as stored)."""


def _idx(view):
    off = size_str(view.start)
    return "_j" if off == "0" else f"{off} + _j"


def _at(ptr, start):
    """pointer to feature `start` of row 0"""
    off = size_str(start)
    return ptr if off == "0" else f"{ptr} + {off}"


class ScanRenderer(Renderer):
    def __init__(self, scan, dims, w):
        self.scan, self.dims, self.w = scan, dims, w
        self.buf = {b.name: b for b in scan.buffers}
        self.rows, self.row0 = "_na", "_b0"   # in the step; phases run over _steps * _batch rows from row 0
        self.matmuls = [st for st in scan.before + scan.step + scan.after if isinstance(st, MatMul)]
        # each matmul's name in _wt_<name> and _operands_<name>: its output's, numbered when two share it
        outs = [mm.out for mm in self.matmuls]
        self.slot = {id(mm): mm.out if outs.count(mm.out) == 1 else f"{mm.out}{k}" for k, mm in enumerate(self.matmuls)}
        self.written = set().union(*[writes(st) for st in scan.step])
        # a step's matmuls read their weights in panels (sc::mm_panels: the short GEMMs of the recurrence run
        # 2-3x faster so); the GEMMs over all rows before and after the loop read them row-major
        self.paneled = {id(st) for st in scan.step if isinstance(st, MatMul)}
        # and so do its transposed matmuls, one copy of each weight slice however many read it
        copies = {}
        self.copies = {id(st): copies.setdefault((st.weight, st.col_start, st.col_stop, self.buf[st.src].size), len(copies))
                      for st in scan.step if isinstance(st, OperandGrad)}
        self.skip_if, self.skip_always, self.term_off, self.flags = self._skips()
        # the weight gradients their first GEMMs assign (kernel.weight_grads_assigned), allocated uninitialised
        # where steps run; not one of whose first GEMMs a call may leave out for a zero operand (skips.py: the
        # gradient is zeros then), which stays zeros, accumulated (no zoo cell's scan has one)
        conds = skips.conditions(scan)[0]
        self.assigned = {name: firsts for name, firsts in weight_grads_assigned(scan).items()
                         if all(c == (("unwanted", name),) for st in firsts for c in conds.get(id(st), ()))}
        self.assigning = {id(st) for firsts in self.assigned.values() for st in firsts}
        # the weight matrices the forward and the backward may take in 16 bits as well as in their dtype (sc::weight)
        self.weights16 = set(weights_only(scan, {"forward": MatMul, "backward": OperandGrad}[scan.name])) \
            if scan.name in ("forward", "backward") else set()
        # ... each as the entry point reads it, in the arguments' order: {weight: "_params[1]"}
        self.given16 = {name: f"{a.name}[{k}]" for a in scan.args for k, name in enumerate(a.buffers)
                        if name in self.weights16}
        # a backward's gradients of those weights that one GEMM assigns each range of columns (WeightGrad: a state's
        # operand two calls, its initial rows then the sequence's): in 16 bits where the weight came so, written so
        # (sc::mm_tn16) -> {gradient: the weight's argument}
        self.grads16 = {}
        for w_, arg in self.given16.items() if scan.name == "backward" else ():
            writers = [st for st in scan.after if isinstance(st, WeightGrad) and st.dest == grad(w_)]
            if grad(w_) in self.assigned and len(writers) == len(self.assigned[grad(w_)]):
                self.grads16[grad(w_)] = arg
        # whether the matmuls read them as stored: a forward's matmuls (_direct), a backward's transposed ones
        self.direct = "_direct" if scan.name == "forward" else "_direct_grads"
        # a step matmul's one term on a sequence argument (x) may run before the loop (sc::hoist): it is stacked
        # first in the transposed weights, so the recurrent terms are the panels' rows from its width on
        self.hoisted = {}
        for mm in scan.step:
            if isinstance(mm, MatMul) and not self.dynamic(mm):
                inputs = [t for t in mm.terms if self._before_loop(t.operand.value)]
                if len(inputs) == 1 and len(mm.terms) > 1:
                    self.hoisted[id(mm)] = inputs[0]

    # --- names ------------------------------------------------------------------------------------------
    def n(self, name):
        """the C++ name of a buffer's features per row"""
        assert name in self.buf, name
        return f"_n_{name}"

    def is_param(self, name):
        return self.buf.get(name) is not None and self.buf[name].role == Role.PARAM

    def at_step(self, b, t):
        """where the value of a STEP or CARRY_OUT buffer at step t lives (row 0): its row block of the sequence it
        is kept in, else its scratch (a STEP) or the slot of its two that step t writes (a CARRY_OUT)"""
        n = self.n(b.name)
        kept = f"sc::ptr<scalar_t>({'_t' if b.keep == Keep.ALWAYS else '_res'}_{b.name}) + ({t}) * _batch * {n}"
        if b.role == Role.STEP:
            scratch = f"sc::ptr<scalar_t>(_buf_{b.name})"
        else:
            scratch = f"sc::ptr<scalar_t>(_pp_{b.name}) + (({t}) & 1) * _batch * {n}"
        return {Keep.ALWAYS: f"({kept})", Keep.SAVE: f"(_save ? {kept} : {scratch})", Keep.NEVER: f"({scratch})"}[b.keep]

    # --- work left out at run time (_skip) -------------------------------------------------------------
    def _skips(self):
        """What a call may leave out, by its `_skip` flags (skips.py says what), in C++; only the flags some
        statement tests are read.
        -> ({id(statement): C++ condition to skip it in the loop}, {id(statement): ... at every step, tested before
            the loop}, {id(matmul): [condition to leave term k out]}, {flag: index})"""
        index = {f: k for k, f in enumerate(skips.flag_names(self.scan))}
        used = {}

        def text(cond, last):   # (or of ands; None where never)
            def name(f):
                if f == skips.LAST:   # (the loop's last step: every step is where there is one)
                    return f"({last})"
                used[skips.variable(f)] = index[f]
                return skips.variable(f)
            clauses = [" && ".join(map(name, c)) for c in cond]
            return " || ".join(f"({c})" if len(cond) > 1 and " " in c else c for c in clauses) or None

        stmts, terms = skips.conditions(self.scan)
        skip_if = {k: text(c, "_t == 0" if self.scan.reverse else "_t == _steps - 1") for k, c in stmts.items()}
        skip_always = {k: text(c, "_steps <= 1") for k, c in stmts.items()}
        term_off = {k: [text(c, None) for c in conds] for k, conds in terms.items()}
        return skip_if, skip_always, term_off, dict(sorted(used.items(), key=lambda kv: kv[1]))

    def _before_loop(self, name):
        b = self.buf[name]
        return b.role == Role.SEQ and self.scan.arg_of(name) is not None and name not in self.written

    def terms(self, mm):
        """a matmul's terms in the order its weights are stacked: a term that may run before the loop first"""
        first = self.hoisted.get(id(mm))
        return [first] + [t for t in mm.terms if t is not first] if first else list(mm.terms)

    def skip_flags(self):
        if self.flags:
            self.w("// _skip: one flag per argument tensor (all zeros), then one per result (not wanted)")
        for name, k in self.flags.items():
            self.w(f"const bool {name} = sc::flag(_skip, {k});")

    def render(self, st):
        cond = self.skip_if.get(id(st))
        if cond is None:
            return super().render(st)
        with self.w.block(f"if (!({cond})) {{", "}"):
            super().render(st)

    def dynamic(self, mm):
        """a matmul some of whose terms may be left out at run time: its K and the terms' places are run-time"""
        return any(self.term_off.get(id(mm), ()))

    # --- the entry point --------------------------------------------------------------------------------
    def function(self):
        w, scan = self.w, self.scan
        args = ", ".join(f"at::TensorList {a.name}" for a in scan.args)
        flags = ", bool _save" if scan.save else ""
        w("template <typename scalar_t>")
        w(f"std::vector<at::Tensor> {scan.name}_impl({args}, at::IntArrayRef _dims{flags}, "
          "const at::Tensor& _lengths, at::IntArrayRef _skip) {")
        with w.block():
            self.preamble()
            self.check_args()
            self.bind_args()
            self.skip_flags()
            self.allocate()
            if scan.before:
                w("// before the loop: what depends on no carried value, over all _steps*_batch rows at once")
                self.phase(scan.before)
            self.loop()
            if scan.after:
                w("// after the loop, over all _steps*_batch rows: one GEMM for all steps where the loop would run one "
                  "per step")
                w("if (_steps > 0) {")
                with w.block():
                    self.phase(scan.after)
                w("}")
            for b in scan.with_role(Role.PARAM_GRAD):
                if len(b.size) == 1:
                    w(f"sc::sum_partials(_parts_{b.name}, {self.n(b.name)}, {b.name});")
            self.returns()
        w("}")

    def preamble(self):
        w, scan = self.w, self.scan
        for k, d in enumerate(self.dims):
            w(f"const int64_t _dim_{d} = _dims[{k}];")
        for b in scan.buffers:
            if b.role in (Role.PARAM, Role.PARAM_GRAD) and len(b.size) == 2:
                w(f"const int64_t _ld_{b.name} = {size_str(b.size[1])};  // {b.name} is "
                  f"({size_str(b.size[0])}, {size_str(b.size[1])})")
                continue
            size = b.size[0] if b.role in (Role.PARAM, Role.PARAM_GRAD) else b.size
            w(f"const int64_t {self.n(b.name)} = {size_str(size)};")
        first = "{}[{}]".format(*scan.arg_of(scan.first_seq))
        w(f"const int64_t _steps = {first}.size(0), _batch = {first}.size(1);")
        w("// per-row sequence lengths (int64), or none: every row runs all _steps")
        w("// (read once checked: sc::expect_lengths, below, names another dtype)")
        w("const int64_t* _len = _lengths.numel() > 0 && _lengths.scalar_type() == at::kLong ? "
          "_lengths.data_ptr<int64_t>() : nullptr;")
        w(f"const auto _opt = {first}.options();")

    def check_args(self):
        """every tensor argument's sizes, dtype and layout (sc::expect), against _dims and the first sequence"""
        w, first = self.w, self.scan.first_seq
        source = "{}[{}] ({})".format(self.scan.arg_of(first)[0][1:], self.scan.arg_of(first)[1], first)
        for a in self.scan.args:
            for k, name in enumerate(a.buffers):
                b = self.buf[name]
                origin = ""
                if b.role == Role.SEQ:
                    sizes = f"_steps, _batch, {self.n(name)}"
                    origin = f", with T and B from {source}," if name != first else ""
                elif b.role == Role.PARAM:
                    sizes = ", ".join(size_str(d) for d in b.size)
                else:
                    sizes = f"_batch, {self.n(name)}"
                    origin = f", with B from {source},"
                origin = f', "{origin}"' if origin else ""
                expect = "expect_weight" if name in self.weights16 else "expect"
                w(f'sc::{expect}<scalar_t>({a.name}[{k}], {{{sizes}}}, "{a.name[1:]}[{k}] ({name})"{origin});')
        w("sc::expect_lengths(_lengths, _batch, _steps);")

    def bind_args(self):
        w = self.w
        for a in self.scan.args:
            for k, name in enumerate(a.buffers):
                if name in self.weights16:
                    continue
                role = self.buf[name].role
                var = {Role.SEQ: f"_seq_{name}", Role.PARAM: name}.get(role, f"_init_{name}")
                w(f"const scalar_t* {var} = sc::ptr<scalar_t>({a.name}[{k}]);")
        given = self.given16
        if not given:   # (_direct with the allocations)
            return
        any16 = " || ".join(f"sc::is16({g})" for g in given.values())
        if self.direct == "_direct":
            w(f"const bool _direct = sc::direct(_steps, _batch, {any16});   // the matmuls on their weights as stored")
        else:
            self.direct_grads(any16)
        w("// the weight matrices as given (a 16-bit one as it is, where scalar_t is float: sc::weight), handed to "
          "every GEMM and panel copy as sc::Stored")
        for name, g in given.items():
            w(f"const sc::Stored<scalar_t> _w_{name} = sc::weight<scalar_t>({g});")

    def direct_grads(self, any16="false"):
        """_direct_grads: whether a backward's transposed matmuls read their weights as stored (sc::direct_grads;
        by the widest stride of a step's weights' rows)"""
        lds = [f"_ld_{w_}" for w_ in sorted({st.weight for st in self.scan.step if isinstance(st, OperandGrad)})]
        ld = "0" if not lds else lds[0] if len(lds) == 1 else f"std::max({{{', '.join(lds)}}})"
        w16 = "" if any16 == "false" else f", {any16}"
        self.w(f"const bool _direct_grads = sc::direct_grads(_steps, _batch, {ld} * int64_t(sizeof(scalar_t)){w16});"
               "   // the transposed matmuls on theirs")

    def stored(self, t):
        """a matmul term's or a transposed matmul's weight from its first column, as the call hands it to its GEMMs
        on the weights as stored and to the copies made for the others (sc::Stored where the weight may be 16-bit)"""
        if t.weight in self.weights16:
            return _at(f"_w_{t.weight}", t.col_start)
        return _at(t.weight, t.col_start)

    def allocate(self):
        w, scan = self.w, self.scan
        for b in scan.buffers:
            if scan.arg_of(b.name):
                continue
            n = self.n(b.name)
            if b.role == Role.PARAM_GRAD:
                shape = ", ".join(size_str(s) for s in b.size)
                opt = "_opt"
                if b.name in self.grads16:
                    given = self.grads16[b.name]
                    w(f"const bool _g16_{b.name} = sc::is16({given});   // (so is its gradient)")
                    w(f"const auto _opt_{b.name} = _g16_{b.name} ? _opt.dtype({given}.scalar_type()) : _opt;")
                    opt = f"_opt_{b.name}"
                if b.name in self.assigned:   # (left unwanted, its value does not matter; no steps, no GEMMs)
                    w(f"at::Tensor _t_{b.name} = _steps == 0 ? sc::zeros({{{shape}}}, {opt}) : "
                      f"sc::empty({{{shape}}}, {opt});")
                else:
                    w(f"at::Tensor _t_{b.name} = sc::zeros({{{shape}}}, _opt);")
                if b.name in self.grads16:
                    w(f"scalar_t* {b.name} = _g16_{b.name} ? nullptr : sc::ptr<scalar_t>(_t_{b.name});")
                    w(f"const sc::Out16 _p16_{b.name} = sc::out16(_t_{b.name});")
                else:
                    w(f"scalar_t* {b.name} = sc::ptr<scalar_t>(_t_{b.name});")
                if len(b.size) == 1:
                    w(f"at::Tensor _parts_{b.name} = sc::zeros({{sc::threads(), {n}}}, _opt);")
            elif b.role == Role.SEQ:
                w(f"at::Tensor _t_{b.name} = sc::{'zeros' if b.acc else 'empty'}({{_steps, _batch, {n}}}, _opt);")
                w(f"scalar_t* _seq_{b.name} = sc::ptr<scalar_t>(_t_{b.name});")
            if b.role in (Role.STEP, Role.CARRY_OUT):
                if b.keep == Keep.ALWAYS:
                    w(f"at::Tensor _t_{b.name} = sc::empty({{_steps, _batch, {n}}}, _opt);")
                elif b.keep == Keep.SAVE:
                    # with lengths, the rows a step skips are never written: zeros, for the GEMMs after a backward loop
                    w(f"at::Tensor _res_{b.name} = !_save ? at::Tensor() : _len != nullptr ? "
                      f"sc::zeros({{_steps, _batch, {n}}}, _opt) : sc::empty({{_steps, _batch, {n}}}, _opt);")
            if b.role == Role.STEP:
                w(f"at::Tensor _buf_{b.name} = sc::empty({{_batch, {n}}}, _opt);   // per-step scratch")
            if b.role == Role.CARRY_OUT and b.keep != Keep.ALWAYS:
                w(f"at::Tensor _pp_{b.name} = sc::empty({{2, _batch, {n}}}, _opt);   // two alternating slots")
        # (else with the weights, bind_args: a scan's flag of the two, self.direct)
        if self.copies and not (self.weights16 and self.direct == "_direct_grads"):
            self.direct_grads()
        if self.matmuls and not (self.weights16 and self.direct == "_direct"):
            w("const bool _direct = sc::direct(_steps, _batch);   // the matmuls on their weights as stored")
        self.hoist_flags()
        self.transposed_weights()
        self.paneled_weights()
        for phase, rows in ((scan.before, "_steps * _batch"), (scan.step, "_batch"), (scan.after, "_steps * _batch")):
            for mm in phase:
                if isinstance(mm, MatMul) and len(mm.terms) > 1:
                    w(f"at::Tensor _operands_{self.slot[id(mm)]} = sc::empty({{{rows}, {self.k_total(mm)}}}, _opt);")

    def transposed_weights(self):
        """A matmul reads W[:, c0:c1] as (K, N): transposed once per call, not once per step. The terms of a
        matmul are stacked along K, so the whole sum is one GEMM over the operands side by side. The buffer is a
        per-thread workspace reused across calls: a fresh multi-megabyte allocation would page-fault on every
        call (a call writes every part of it that it reads: a call on the weights as stored, or with the input term
        before the loop, reads none or not that part)."""
        w = self.w
        for slot, mm in enumerate(self.matmuls):
            if self.on_stored(mm):
                continue
            K, N, name = self.k_total(mm), self.n(mm.out), self.slot[id(mm)]
            size = f"sc::step_panels_numel({K}, {N})" if id(mm) in self.paneled else f"{K} * {N}"
            w(f"scalar_t* _wt_{name} = sc::ptr<scalar_t>(sc::workspace({slot}, {size}, _opt));")
            if id(mm) in self.paneled:   # panel p at _wt + p * {K} * PANEL, term k's rows at its offset in each
                first = self.hoisted.get(id(mm))

                def put(t, width, k0):   # (not for a call that reads them as stored, nor a term run before the loop)
                    skip = f"(_direct || _hoist_{name})" if t is first else "_direct"
                    w(f"if (!{skip}) sc::transpose_step_panels({self.stored(t)}, _ld_{t.weight}, {N}, "
                      f"{width}, _wt_{name}, {K} * sc::PANEL, {k0});")
                    if t is first:   # (a step's GEMM from the next row may read its last row, times zero)
                        w(f"else if (!_direct) sc::clear_last_pairs(_wt_{name}, {K} * sc::PANEL, {N}, {k0}, {width});")
            else:
                def put(t, width, k0):
                    w(f"if (!_direct) sc::transpose({self.stored(t)}, _ld_{t.weight}, {N}, {width}, "
                      f"_wt_{name} + ({k0}) * {N}, {N});")
            if self.dynamic(mm):   # the terms that run, stacked; _k_<m> their width
                w(f"int64_t _k_{name} = 0;")
                for k, (t, off) in enumerate(zip(mm.terms, self.term_off[id(mm)])):
                    width = size_str(t.col_stop - t.col_start)
                    w(f"const bool _on_{name}_{k} = {'true' if off is None else f'!({off})'};")
                    with w.block(f"if (_on_{name}_{k}) {{", "}"):
                        put(t, width, f"_k_{name}")
                        w(f"_k_{name} += {width};")
                continue
            off = sympy.Integer(0)
            for t in self.terms(mm):
                width = t.col_stop - t.col_start
                put(t, size_str(width), size_str(off))
                off = off + width
        self.hoisted_terms()

    def on_stored(self, mm):
        """A matmul of one term over all rows, before or after the loop (a GRU's W_ih @ x): one GEMM on its weight
        as stored (sc::mm_nt packs the panels its blocks read), with no transposed copy first (which mm_kn's
        blocks would only pack into panels again)."""
        return id(mm) not in self.paneled and len(mm.terms) == 1 and not self.dynamic(mm) and not mm.accumulate

    def hoist_flags(self):
        """_hoist_<m>: whether step matmul m's input term runs before the loop (sc::hoist, by the rows a thread has)"""
        for mm in self.scan.step:
            if id(mm) in self.hoisted:
                self.w(f"const bool _hoist_{self.slot[id(mm)]} = sc::hoist(_batch);")

    def hoisted_terms(self):
        """A step matmul's input term over all rows before the loop, when _hoist_<m> says so: _pre_m (T*B, N)."""
        w = self.w
        for mm in self.scan.step:
            t = self.hoisted.get(id(mm))
            if t is None:
                continue
            name, N, op = self.slot[id(mm)], self.n(mm.out), t.operand
            w(f"// {op.value} @ {t.weight}[:, {size_str(t.col_start)}:{size_str(t.col_stop)}].T for every step at once, "
              f"when a thread's rows are few")
            w(f"at::Tensor _t_pre_{name} = _hoist_{name} ? sc::empty({{_steps * _batch, {N}}}, _opt) : at::Tensor();")
            w(f"scalar_t* _pre_{name} = sc::ptr<scalar_t>(_t_pre_{name});")
            w(f"if (_hoist_{name}) sc::mm_nt(_steps * _batch, {N}, {size_str(op.stop - op.start)}, "
              f"{_at(f'_seq_{op.value}', op.start)}, {self.n(op.value)}, {self.stored(t)}, _ld_{t.weight}, "
              f"_pre_{name}, {N});")

    def paneled_weights(self):
        """A step's transposed matmul (x_grad += g @ W[:, c0:c1]) reads the weights as they are, in panels: a copy
        once per call (not run when the statement is not)."""
        w, first = self.w, len(self.matmuls)
        readers = {}
        for st in self.scan.step:
            if id(st) in self.copies:
                readers.setdefault(self.copies[id(st)], []).append(st)
        for k, sts in readers.items():
            st, K, N = sts[0], self.n(sts[0].src), size_str(sts[0].col_stop - sts[0].col_start)
            w(f"scalar_t* _wp_{k} = sc::ptr<scalar_t>(sc::workspace({first + k}, sc::step_panels_numel({K}, {N}), "
              f"_opt));   // {st.weight} "
              f"in panels")
            conds = [self.skip_always.get(id(r)) for r in sts]
            copy = f"sc::copy_step_panels({self.stored(st)}, _ld_{st.weight}, {K}, {N}, _wp_{k});"
            skip = " && ".join(f"({c})" for c in conds) if None not in conds else None
            w(f"if (!(_direct_grads || {skip})) {copy}" if skip else f"if (!_direct_grads) {copy}")

    def phase(self, stmts):
        """Statements over all _steps*_batch rows: every sequence is one block of rows."""
        w = self.w
        w("{")
        with w.block():
            for b in self.scan.used(stmts):
                if b.role == Role.SEQ:
                    const = "" if b.acc or not self.scan.arg_of(b.name) else "const "
                    w(f"{const}scalar_t* {b.name} = _seq_{b.name};")
            self.rows, self.row0 = "_steps * _batch", "0"
            self.render_all(stmts)
            self.rows, self.row0 = "_na", "_b0"
        w("}")

    def loop(self):
        w, scan = self.w, self.scan
        first, last = ("_steps - 1", "0") if scan.reverse else ("0", "_steps - 1")
        couts = {cin: self.buf[cout] for cin, cout in scan.carries}
        for cin, cout in couts.items():
            if cin in self.written:   # the step writes its carry-in: it starts as a copy of the initial value, in
                # the slot the first step's carry-out does not use
                assert cout.keep == Keep.NEVER, cin
                n = self.n(cin)
                w(f"if (_batch * {n} > 0) std::memcpy(sc::ptr<scalar_t>(_pp_{cout.name}) + ((({first}) + 1) & 1) * "
                  f"_batch * {n}, _init_{cin}, sizeof(scalar_t) * _batch * {n});")
        # (every weight matrix of the cell, whichever this scan reads, and not their tangents: the same rule for
        # all of a cell's scans, as CppBackend.row_order counts them)
        params = next(a.buffers for a in self.scan.args if a.name == "_params")
        count = " + ".join(f"{size_str(r)} * {size_str(c)}" for r, c in (self.buf[p].size for p in params
                                                                          if len(self.buf[p].size) == 2)) or "0"
        w("// the time loop, on batch rows [_b0, _b1) (see sc::scan_rows: its weights' bytes choose how it splits)")
        w(f"sc::scan_rows(_batch, sizeof(scalar_t) * ({count}), [&](int64_t _b0, int64_t _b1) {{")
        with w.block():
            w("const int64_t _nb = _b1 - _b0;")
            for cin, cout in couts.items():
                if cin in self.written:
                    w(f"scalar_t* {cin} = sc::ptr<scalar_t>(_pp_{cout.name}) + ((({first}) + 1) & 1) * _batch * "
                      f"{self.n(cin)} + _b0 * {self.n(cin)};")
                else:
                    w(f"const scalar_t* {cin} = _init_{cin} + _b0 * {self.n(cin)};")
            loop = "for (int64_t _t = _steps - 1; _t >= 0; --_t) {" if scan.reverse else \
                "for (int64_t _t = 0; _t < _steps; ++_t) {"
            with w.block(loop, "}"):
                self.bind_step()
                w("int64_t _na = _nb;   // the rows up to the last one still running (see render.py)")
                w("if (_len != nullptr) while (_na > 0 && _len[_b0 + _na - 1] <= _t) --_na;")
                self.render_all(scan.step)
                for cin, cout in scan.carries:
                    w(f"{cin} = {cout};")
        w("});")
        for cin, cout in couts.items():
            w(f"const scalar_t* _last_{cin} = _steps > 0 ? {self.at_step(cout, last)} : _init_{cin};")

    def bind_step(self):
        w = self.w
        for b in self.scan.used(self.scan.step):
            n = self.n(b.name)
            if b.role == Role.SEQ:
                const = "" if b.acc or b.name in self.written else "const "
                w(f"{const}scalar_t* {b.name} = _seq_{b.name} + (_t * _batch + _b0) * {n};")
            elif b.role == Role.PREV:
                w(f"const scalar_t* {b.name} = _t > 0 ? _seq_{b.seq} + ((_t - 1) * _batch + _b0) * {n} : "
                  f"_init_{b.name} + _b0 * {n};")
            elif b.role in (Role.STEP, Role.CARRY_OUT):
                w(f"scalar_t* {b.name} = {self.at_step(b, '_t')} + _b0 * {n};")
            else:
                continue
            if b.acc and b.role in (Role.STEP, Role.CARRY_OUT):
                w(f"sc::zero({b.name}, _nb * {n});")

    def returns(self):
        w, scan = self.w, self.scan
        w("std::vector<at::Tensor> _out;")

        def push(name):
            b = self.buf[name]
            if b.role == Role.CARRY_IN:
                n = self.n(name)
                w(f"{{ at::Tensor _f = sc::empty({{_batch, {n}}}, _opt); if (_batch * {n} > 0) "
                  f"std::memcpy(sc::ptr<scalar_t>(_f), _last_{name}, sizeof(scalar_t) * _batch * {n}); "
                  f"_out.push_back(_f); }}")
            elif b.role in (Role.STEP, Role.CARRY_OUT):
                w(f"_out.push_back({'_t' if b.keep == Keep.ALWAYS else '_res'}_{name});")
            else:
                w(f"_out.push_back(_t_{name});")
        for r in scan.returns:
            if r.save:
                with w.block("if (_save) {", "}"):
                    for name in r.buffers:
                        push(name)
            else:
                for name in r.buffers:
                    push(name)
        w("return _out;")

    # --- statements -------------------------------------------------------------------------------------
    def k_total(self, mm):
        return size_str(sum((t.operand.stop - t.operand.start for t in mm.terms), sympy.Integer(0)))

    def gemm(self, mm, K, a, lda, k0="0", acc=None):
        """the call that multiplies rows of `a` by matmul mm's transposed weights (K of their rows from k0)"""
        n_out, name = self.n(mm.out), self.slot[id(mm)]
        acc = acc or ("true" if mm.accumulate else "false")
        if id(mm) in self.paneled:
            return (f"sc::mm_panels({self.rows}, {n_out}, {K}, {a}, {lda}, _wt_{name}, {self.k_total(mm)} * sc::PANEL, "
                    f"{k0}, {acc}, {mm.out}, {n_out});")
        return f"sc::mm_kn({self.rows}, {n_out}, {K}, {a}, {lda}, _wt_{name}, {n_out}, {acc}, {mm.out}, {n_out});"

    def render_MatMul(self, mm, whole=False):
        """(whole: all terms here, even when the input term may run before the loop)"""
        w = self.w
        if id(mm) in self.hoisted and not whole:
            self.render_hoisted(mm)
            return
        w(f"// {mm.out} {'+=' if mm.accumulate else '='} " + " + ".join(f"{t.operand.value}[{size_str(t.operand.start)}:{size_str(t.operand.stop)}] @ "
                                         f"{t.weight}[:, {size_str(t.col_start)}:{size_str(t.col_stop)}].T"
                                         for t in mm.terms))
        if self.on_stored(mm):
            t, op = mm.terms[0], mm.terms[0].operand
            w(f"sc::mm_nt({self.rows}, {self.n(mm.out)}, {size_str(op.stop - op.start)}, {_at(op.value, op.start)}, "
              f"{self.n(op.value)}, {self.stored(t)}, _ld_{t.weight}, {mm.out}, {self.n(mm.out)});")
            return
        w("if (_direct) {")
        with w.block():
            self.stored_terms(mm, mm.terms, "true" if mm.accumulate else "false")
        w("} else {")
        with w.block():
            self.transposed_terms(mm)
        w("}")

    def stored_terms(self, mm, terms, acc):
        """a matmul's terms, each a GEMM on its weight as stored (sc::direct: a call too short for a copy of the
        weights, transposed or in panels, to pay); the first that runs assigns or adds as `acc` says, the others add"""
        w, name, n_out = self.w, self.slot[id(mm)], self.n(mm.out)
        if not self.dynamic(mm):
            for k, t in enumerate(terms):
                op = t.operand
                w(f"sc::mm_stored({self.rows}, {n_out}, {size_str(op.stop - op.start)}, {_at(op.value, op.start)}, "
                  f"{self.n(op.value)}, {self.stored(t)}, _ld_{t.weight}, {acc if k == 0 else 'true'}, "
                  f"{mm.out}, {n_out});")
            return
        w(f"bool _acc = {acc};")   # (terms left out at run time: the first that runs assigns)
        for k, t in enumerate(mm.terms):
            if t not in terms:
                continue
            op = t.operand
            with w.block(f"if (_on_{name}_{k}) {{", "}"):
                w(f"sc::mm_stored({self.rows}, {n_out}, {size_str(op.stop - op.start)}, {_at(op.value, op.start)}, "
                  f"{self.n(op.value)}, {self.stored(t)}, _ld_{t.weight}, _acc, {mm.out}, {n_out});")
                w("_acc = true;")
        w(f"if (!_acc) sc::mm_empty<scalar_t>({self.rows}, {n_out}, 0, false, {mm.out}, {n_out});   // no term ran")

    def transposed_terms(self, mm):
        """a matmul's terms as one GEMM on its transposed, stacked weights (in panels in the step)"""
        w, rows, name = self.w, self.rows, self.slot[id(mm)]
        if len(mm.terms) == 1:
            op = mm.terms[0].operand
            K = f"_k_{name}" if self.dynamic(mm) else size_str(op.stop - op.start)   # 0: left out
            w(self.gemm(mm, K, _at(op.value, op.start), self.n(op.value)))
            return
        # the operands side by side in one row block, then one GEMM over K = the sum of their widths against
        # the stacked weights: half the accumulator traffic of one GEMM per term
        K = f"_k_{name}" if self.dynamic(mm) else self.k_total(mm)
        w(f"{{ scalar_t* _cat = sc::ptr<scalar_t>(_operands_{name}) + ({self.row0}) * {K};")
        with w.block():
            with w.block(f"for (int64_t _r = 0; _r < {rows}; ++_r) {{", "}"):
                if self.dynamic(mm):
                    w("int64_t _o = 0;")
                off = sympy.Integer(0)
                for k, t in enumerate(self.terms(mm)):
                    op, width = t.operand, size_str(t.operand.stop - t.operand.start)
                    if self.dynamic(mm):
                        w(f"if (_on_{name}_{k}) {{ std::memcpy(_cat + _r * {K} + _o, {_at(op.value, op.start)} + "
                          f"_r * {self.n(op.value)}, sizeof(scalar_t) * {width}); _o += {width}; }}")
                        continue
                    w(f"std::memcpy(_cat + _r * {K} + {size_str(off)}, {_at(op.value, op.start)} + "
                      f"_r * {self.n(op.value)}, sizeof(scalar_t) * {width});")
                    off = off + (op.stop - op.start)
            w(self.gemm(mm, K, "_cat", K))
        w("}")

    def render_hoisted(self, mm):
        """the matmul's step with its input term before the loop or not (_hoist_<m>, decided per call)"""
        w, name, n_out = self.w, self.slot[id(mm)], self.n(mm.out)
        first = self.hoisted[id(mm)]
        rest = [t for t in mm.terms if t is not first]
        w(f"// {mm.out} {'+=' if mm.accumulate else '='} the input term's rows from before the loop (_pre_{name}) + the "
          "rest, or all of it here")
        w(f"if (_hoist_{name}) {{")
        with w.block():
            pre = f"_pre_{name} + (_t * _batch + _b0) * {n_out}"
            if mm.accumulate:
                w(f"for (int64_t _i = 0; _i < {self.rows} * {n_out}; ++_i) {mm.out}[_i] += ({pre})[_i];")
            else:
                w(f"if ({self.rows} > 0) std::memcpy({mm.out}, {pre}, sizeof(scalar_t) * {self.rows} * {n_out});")
            k0 = size_str(first.operand.stop - first.operand.start)
            w("if (_direct) {")
            with w.block():
                self.stored_terms(mm, rest, "true")
            w("} else {")
            with w.block():
                self.panel_rest(mm, rest, k0)
            w("}")
        w("} else {")
        with w.block():
            self.render_MatMul(mm, whole=True)
        w("}")

    def panel_rest(self, mm, rest, k0):
        """a hoisted matmul's other terms, added in the step: one GEMM on the panels' rows from k0"""
        w, name = self.w, self.slot[id(mm)]
        if len(rest) == 1:
            op = rest[0].operand
            w(self.gemm(mm, size_str(op.stop - op.start), _at(op.value, op.start), self.n(op.value), k0, "true"))
            return
        K = size_str(sum((t.operand.stop - t.operand.start for t in rest), sympy.Integer(0)))
        w(f"scalar_t* _cat = sc::ptr<scalar_t>(_operands_{name}) + ({self.row0}) * {self.k_total(mm)};")
        with w.block(f"for (int64_t _r = 0; _r < {self.rows}; ++_r) {{", "}"):
            off = sympy.Integer(0)
            for t in rest:
                op, width = t.operand, size_str(t.operand.stop - t.operand.start)
                w(f"std::memcpy(_cat + _r * {self.k_total(mm)} + {size_str(off)}, {_at(op.value, op.start)} + "
                  f"_r * {self.n(op.value)}, sizeof(scalar_t) * {width});")
                off = off + (op.stop - op.start)
        w(self.gemm(mm, f"({K})", "_cat", self.k_total(mm), k0, "true"))

    def render_Pointwise(self, st):
        """One fused loop over rows x features: leaves read, temps, then each output assigned or accumulated; an
        accumulation into a vector parameter's gradient goes into this thread's partial sum (summed over rows).
        A leaf of one feature in a wider region is read once per row; a destination of one feature takes the
        sum over the features (an `omp simd` reduction into _s<k>), written after the feature loop."""
        w = self.w
        width = size_str(st.n)
        params = [(k, d, e) for k, (d, e, _) in enumerate(st.outputs) if self.buf[d.value].role == Role.PARAM_GRAD]
        rows = [(k, d, e, acc) for k, (d, e, acc) in enumerate(st.outputs)
                if self.buf[d.value].role != Role.PARAM_GRAD]
        sums = [k for k, (d, _, _) in enumerate(st.outputs) if st.broadcast(d)]
        # `omp simd` promises independent lanes: an assigned output is a buffer the region does not read; two
        # accumulations into overlapping views of one buffer would not be independent
        simd = self._no_overlap([d for _, d, _, acc in rows if acc and not st.broadcast(d)]) and \
            self._no_overlap([d for _, d, _ in params if not st.broadcast(d)])
        read = sorted({v.value for _, v in st.leaves})
        w(f"{{  // fused region: {len(st.outputs)} output(s), {width} features per row")
        with w.block():
            w(f"const int64_t _n = {width};")
            w(f"sc::rows({self.rows}, _n, [&](int64_t _r0, int64_t _r1) {{")
            with w.block():
                for name in sorted({d.value for _, d, _ in params}):
                    w(f"scalar_t* _p_{name} = sc::partial<scalar_t>(_parts_{name}, {self.n(name)});   // summed over rows")
                with w.block("for (int64_t _r = _r0; _r < _r1; ++_r) {", "}"):
                    for val in read:
                        if self.is_param(val):   # the same row for every r: a vector parameter broadcasts
                            w(f"const scalar_t* _r_{val} = {val};")
                        else:
                            w(f"const scalar_t* _r_{val} = {val} + _r * {self.n(val)};")
                    for name in sorted({d.value for _, d, _, _ in rows}):
                        w(f"scalar_t* _w_{name} = {name} + _r * {self.n(name)};")
                    self.ended_row(st, rows, sums)
                    for sym, v in st.leaves:
                        if st.broadcast(v):   # one feature for all of them
                            w(f"const scalar_t {sym.name} = _r_{v.value}[{size_str(v.start)}];")
                    for k in sums:
                        w(f"scalar_t _s{k} = 0;")
                    if simd:
                        w("#pragma omp simd" + (f" reduction(+: {', '.join(f'_s{k}' for k in sums)})" if sums else ""))
                    with w.block("for (int64_t _j = 0; _j < _n; ++_j) {", "}"):
                        for sym, v in st.leaves:
                            if not st.broadcast(v):
                                w(f"const scalar_t {sym.name} = _r_{v.value}[{_idx(v)}];")
                        for sym, e in st.temps:
                            w(f"const scalar_t {sym} = {cpp_str(e)};")
                        for k, d, e, acc in rows:
                            if k not in sums:
                                w(f"_w_{d.value}[{_idx(d)}] {'+=' if acc else '='} {cpp_str(e)};")
                        for k, d, e in params:
                            if k not in sums:
                                w(f"_p_{d.value}[{_idx(d)}] += {cpp_str(e)};")
                        for k in sums:
                            w(f"_s{k} += {cpp_str(st.outputs[k][1])};")
                    for k, d, _, acc in rows:
                        if k in sums:
                            w(f"_w_{d.value}[{size_str(d.start)}] {'+=' if acc else '='} _s{k};")
                    for k, d, _ in params:
                        if k in sums:
                            w(f"_p_{d.value}[{size_str(d.start)}] += _s{k};")
            w("});")
        w("}")

    def ended_row(self, st, rows, sums):
        """A row past its length (in the step: rows before _na where rows are in another order than longest
        first; before and after the loop: all of them) writes zeros and adds nothing (kernel.py: Pointwise), so
        that a value outside the cell's domain there (log(0) of the padding) never meets a GEMM over all rows."""
        w = self.w
        step = self.rows == "_na"
        ended = "_t >= _len[_b0 + _r]" if step else "_r / _batch >= _len[_r % _batch]"
        with w.block(f"if (_len != nullptr && {ended}) {{   // an ended row: zeros, nothing added", "}"):
            for k, d, _, acc in rows:
                if acc:
                    continue
                if k in sums:
                    w(f"_w_{d.value}[{size_str(d.start)}] = 0;")
                else:
                    w(f"for (int64_t _j = 0; _j < _n; ++_j) _w_{d.value}[{_idx(d)}] = 0;")
            w("continue;")

    def _no_overlap(self, views):
        """`omp simd` promises no dependence between lanes: false when two different views of one buffer
        overlap (lane _j of one would update what lane _j' of the other reads)."""
        by_val = {}
        for v in views:
            by_val.setdefault(v.value, set()).add((v.start, v.stop))
        for spans in by_val.values():
            spans = sorted(spans, key=lambda s: sympy.default_sort_key(s))
            for i, (a0, a1) in enumerate(spans):
                for b0, b1 in spans[i + 1:]:
                    if not (sympy.simplify(a1 - b0).is_nonpositive or sympy.simplify(b1 - a0).is_nonpositive):
                        return False
        return True

    def render_OperandGrad(self, st):
        w, op, n_src = self.w, st.dest, self.n(st.src)
        w(f"// {op.value}[{size_str(op.start)}:{size_str(op.stop)}] += {st.src} @ "
          f"{st.weight}[:, {size_str(st.col_start)}:{size_str(st.col_stop)}]")
        dest, n_dest = f"{_at(op.value, op.start)}, {self.n(op.value)}", size_str(op.stop - op.start)
        stored = (f"sc::mm_kn({self.rows}, {n_dest}, {n_src}, {st.src}, {n_src}, {self.stored(st)}, "
                  f"_ld_{st.weight}, true, {dest});")
        if id(st) not in self.copies:
            w(stored)
            return
        w(f"if (_direct_grads) {stored}")   # (a call of few steps: sc::direct_grads)
        w(f"else sc::mm_panels({self.rows}, {n_dest}, {n_src}, {st.src}, {n_src}, _wp_{self.copies[id(st)]}, "
          f"{n_src} * sc::PANEL, 0, true, {dest});")

    def render_WeightGrad(self, st):
        w, op = self.w, st.operand
        acc = "true" if id(st) not in self.assigning else "false"
        w(f"// {st.dest}[:, {size_str(st.col_start)}:{size_str(st.col_stop)}] {'+' if acc == 'true' else ''}= "
          f"{st.src}.T @ {op.value}")
        n_src, k, n_op = self.n(st.src), size_str(op.stop - op.start), self.n(op.value)
        b = self.buf[op.value]
        # its rows in parts: (rows, where src's start, where the operand's start)
        if b.role == Role.PREV:   # the states entering each step: the initial state, then the states after 0..T-2
            parts = [("_batch", st.src, _at(f"_init_{op.value}", op.start)),
                     ("(_steps - 1) * _batch", f"{st.src} + _batch * {n_src}", _at(f"_seq_{b.seq}", op.start))]
        else:
            parts = [(self.rows, st.src, _at(op.value, op.start))]
        gemms = [f"sc::mm_tn<scalar_t>({n_src}, {k}, {rows}, {src}, {n_src}, {operand}, {n_op}, "
                 f"{'true' if j else acc}, {_at(st.dest, st.col_start)}, _ld_{st.dest});"
                 for j, (rows, src, operand) in enumerate(parts)]
        if st.dest not in self.grads16:
            for line in gemms:
                w(line)
            return
        # (one GEMM over both parts' rows: src's are contiguous, the operand's in two places)
        operands = ", ".join(f"{rows}, {operand}, {n_op}" for rows, _, operand in parts)
        if len(parts) == 1:
            operands += ", 0, nullptr, 0"
        with w.block(f"if (_g16_{st.dest}) {{   // (16-bit, as its weight)"):
            w(f"sc::mm_tn16<scalar_t>({n_src}, {k}, {st.src}, {n_src}, {operands}, "
              f"{_at(f'_p16_{st.dest}', st.col_start)}, _ld_{st.dest});")
        with w.block("} else {", "}"):
            for line in gemms:
                w(line)

    def render_HoldEnded(self, st):
        w = self.w
        with w.block("if (_len != nullptr) {  // rows past their own length keep their state", "}"):
            with w.block("for (int64_t _r = 0; _r < _nb; ++_r) {", "}"):
                with w.block("if (_t >= _len[_b0 + _r]) {", "}"):
                    for old, new in st.pairs:
                        n = self.n(old)
                        w(f"std::memcpy({new} + _r * {n}, {old} + _r * {n}, sizeof(scalar_t) * {n});")

    def render_PassEnded(self, st):
        w = self.w
        with w.block("if (_len != nullptr) {  // ended rows: the carried cotangent passes to the previous state,", "}"):
            w("// the step sees none (the backward of holding the state)")
            with w.block("for (int64_t _r = 0; _r < _nb; ++_r) {", "}"):
                with w.block("if (_t >= _len[_b0 + _r]) {", "}"):
                    for d_in, d_out in st.pairs:
                        n = self.n(d_in)
                        w(f"std::memcpy({d_in} + _r * {n}, {d_out} + _r * {n}, sizeof(scalar_t) * {n});")
                        w(f"sc::zero({d_out} + _r * {n}, {n});")

    def render_Accumulate(self, st):
        n = self.n(st.dest)
        self.w(f"for (int64_t _i = 0; _i < _nb * {n}; ++_i) {st.dest}[_i] += {st.src}[_i];")


def render(program, scans):
    w = Writer("  ")
    w(f"// symcell cpp backend: {program.name}")
    w(f"// _dims: {', '.join(program.dims)}")
    for line in LEGEND.splitlines():
        w(line)
    w("// Built for one dtype, SYMCELL_SCALAR (float or double: a library a dtype), as two translation units in")
    w("// parallel (build.py): the first scan and the operators in one, the other scans in the other")
    w("// (SYMCELL_SECOND_UNIT); SYMCELL_NS names this library")
    w('#include "sc.h"')
    w()
    w("namespace SYMCELL_NS {")
    for scan in scans:
        ScanRenderer(scan, program.dims, w).function()
        w()

    def params(scan):
        return ", ".join([f"at::TensorList {a.name}" for a in scan.args] + ["at::IntArrayRef _dims"]
                         + (["bool _save"] if scan.save else []) + ["const at::Tensor& _lengths", "at::IntArrayRef _skip"])
    # the second unit: every scan but the first (a forward or a tangent forward: about half the code each way)
    w("#if SYMCELL_SECOND_UNIT")
    for scan in scans[1:]:
        w(f"template std::vector<at::Tensor> {scan.name}_impl<SYMCELL_SCALAR>({params(scan)});")
    w("#else")
    for scan in scans[1:]:
        w(f"extern template std::vector<at::Tensor> {scan.name}_impl<SYMCELL_SCALAR>({params(scan)});")
    w()
    for scan in scans:
        # what the operator runs once sc::Operators' boxed kernel (sc.cpp, the same for every cell) has read its
        # arguments off the stack and checked them
        with w.block(f"std::vector<at::Tensor> {scan.name}(const sc::Call& _c) {{", "}"):
            call = ", ".join([f"_c.lists[{j}]" for j in range(len(scan.args))] + ["_c.dims"]
                             + (["_c.save"] if scan.save else []) + ["_c.lengths", "_c.skip"])
            w(f"return {scan.name}_impl<SYMCELL_SCALAR>({call});")
    w("#endif")
    w("}  // namespace SYMCELL_NS")
    w()
    w("#if !SYMCELL_SECOND_UNIT")
    # registered while the library is loaded, as TORCH_LIBRARY would (sc.h's Operators says why not it)
    w("static const sc::Operators _operators(SC_STRING(SYMCELL_NS), c10::CppTypeToScalarType<SYMCELL_SCALAR>::value, "
      f"{len(program.dims)}, {{")
    for scan in scans:
        schema = ", ".join([f"Tensor[] {a.name}" for a in scan.args] + ["int[] _dims"]
                           + (["bool _save"] if scan.save else []) + ["bool _bf16", "Tensor _lengths", "int[] _skip"])
        lists = ", ".join(f'{{"{a.name[1:]}", {len(a.buffers)}}}' for a in scan.args)
        where = scan.first_seq_at
        w(f'  {{"{scan.name}({schema}) -> Tensor[]", {{{lists}}}, {str(scan.save).lower()}, '
          f"{{{where[0]}, {where[1]}}}, &SYMCELL_NS::{scan.name}}},")
    w("}, __FILE__, __LINE__);")
    w("#endif")
    return _undefine_macros(w.text())


# the lowercase object-like macros of the C library
_LOWER_MACROS = frozenset({"errno", "math_errhandling", "stdin", "stdout", "stderr", "linux", "unix", "i386"})


def _undefine_macros(text):
    """#undef, after the headers, every name of the code below that a header may define as a macro (a cell's
    value named M_PI or EIO, or a name derived from one, M_PI_2: the preprocessor expanded it, and the build
    failed): the headers are compiled by then, and the generated code uses no macro of theirs"""
    head, include, body = text.partition('#include "sc.h"\n')
    code = re.sub(r'//[^\n]*|"[^"\n]*"', "", body)
    names = {n for n in re.findall(r"(?<!::)\b([A-Za-z]\w*)\b(?!\s*\()", code)   # (not sc::PANEL)
             if (re.fullmatch(r"[A-Z]\w+", n) or n in _LOWER_MACROS) and n not in RESERVED}   # (M_PIl, P_tmpdir)
    return head + include + "".join(f"#undef {n}\n" for n in sorted(names)) + body
