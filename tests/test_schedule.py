"""The compiler's passes one by one, on cells whose schedule a reader can work out by hand: rewrite, hoist,
materialize, allocate_values, form_regions (schedule.py), plan (plan.py) and the kernel program (kernel.py)."""
import sympy

from symcell import define, pipeline, relu, sigmoid, tanh
from symcell.cells import GRUCell, LSTMCell
from symcell.kernel import Accumulate, HoldEnded, Keep, OperandGrad, PassEnded, Pointwise, Role
from symcell.schedule import Kind, MatMul, Region, Stage, allocate_values, hoist, materialize, rewrite
from zoo import CatSplit, Gated


def lower(cell, dims=None):
    return pipeline.lower(cell.spec.ir, dims)


def test_lstm_is_one_matmul_of_two_terms_and_one_region_of_two_outputs():
    s = lower(LSTMCell).schedule
    assert s.pre == ()
    mm, region = s.loop
    assert isinstance(mm, MatMul) and isinstance(region, Region)
    assert mm.out == "gates" and [(t.weight, t.operand.value) for t in mm.terms] == [("weight_ih", "x"),
                                                                                     ("weight_hh", "h")]
    assert [d.value for d, _ in region.outputs] == ["h_new", "c_new"]
    # c_new = c*f + i*g appears in h_new = o*tanh(c_new): one common subexpression, named once
    (temp, expr), = region.temps
    assert temp.name == "_e0" and region.results[1] == temp and temp in region.results[0].free_symbols
    assert [(v.value, v.start, v.stop) for s_, v in region.leaves if s_.name == "gates_2"] == [
        ("gates", 2 * sympy.Symbol("H", positive=True, integer=True), 3 * sympy.Symbol("H", positive=True, integer=True))]


def test_gru_hoists_its_input_matmul_before_the_loop():
    s = lower(GRUCell).schedule
    (pre,) = s.pre
    assert isinstance(pre, MatMul) and pre.out == "weight_ih_x"
    assert s.value("weight_ih_x").stage == Stage.PRE
    assert [type(st).__name__ for st in s.loop] == ["MatMul", "Region"]


def test_the_passes_one_at_a_time():
    ir = Gated.spec.ir                       # U @ (r * h): a matmul on a pointwise function of the state
    returns = rewrite(ir.returns)
    pre = hoist(returns)
    assert {n.attr[0][0] for n in pre if n.op == "matmul"} == {"Wx"}      # only Wx @ x depends on no state
    buffered = materialize(returns)
    assert [n.op for n in buffered] == ["pw"]                              # r * h: a GEMM reads it from memory
    alloc = allocate_values(ir, returns, pre, buffered)
    kinds = {v.name: (v.kind, v.stage) for v in alloc.values}
    assert kinds["t0"] == (Kind.PW, Stage.LOOP) and kinds["Wx_x"] == (Kind.MATMUL, Stage.PRE)
    assert kinds["h_new"] == (Kind.NEW_STATE, Stage.LOOP)
    assert {d.value for _, d, _ in alloc.writes} == {"t0", "h_new"}


def test_rewrite_splits_a_matmul_on_a_cat_into_terms():
    @define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "H+I")})
    def Cat(x, h, W):
        return tanh(W @ __import__("symcell").cat(h, x))
    (r,) = rewrite(Cat.spec.ir.returns)
    mm = r.args[0]
    H, I = (sympy.Symbol(n, positive=True, integer=True) for n in "HI")
    assert mm.op == "matmul" and mm.attr == (("W", 0, H), ("W", H, H + I))
    assert [a.op for a in mm.args] == ["state", "input"]


def test_an_undecidable_split_keeps_the_cat_in_a_buffer():
    s = lower(CatSplit).schedule
    assert any(v.kind == Kind.CAT for v in s.values)


def test_plan_keeps_the_gates_and_the_cell_state():
    p = lower(LSTMCell).plan
    assert p.res_loop == ("gates",) and p.res_states == ("c",) and p.res_pre == ()
    assert p.loop_mm == ("gates",) and p.deferred_ops == frozenset({"x"})
    p = lower(GRUCell).plan
    assert p.res_pre == ("weight_ih_x",) and p.res_loop == ("weight_hh_h",) and p.res_states == ()


def test_the_forward_scan_of_an_lstm():
    f = lower(LSTMCell).program.forward
    role = {b.name: (b.role, b.keep) for b in f.buffers}
    assert role["x"] == (Role.SEQ, Keep.NEVER) and role["h"] == (Role.CARRY_IN, Keep.NEVER)
    assert role["h_new"] == (Role.CARRY_OUT, Keep.ALWAYS)       # an output: kept always
    assert role["c_new"] == (Role.CARRY_OUT, Keep.SAVE)         # read by the backward: kept when saving
    assert role["gates"] == (Role.STEP, Keep.SAVE)
    assert f.carries == (("h", "h_new"), ("c", "c_new"))
    assert isinstance(f.step[-1], HoldEnded) and f.step[-1].pairs == f.carries
    assert [(r.name, r.buffers, r.save) for r in f.returns] == [
        ("ys", ("h_new",), False), ("finals", ("h", "c"), False), ("res", ("gates", "c_new"), True)]


def test_the_backward_scan_of_an_lstm_is_a_reverse_scan_over_the_residuals():
    b = lower(LSTMCell).program.backward
    assert b.reverse and [a.name for a in b.args] == ["_d_ys", "_d_finals", "_xs", "_inits", "_params", "_ys", "_res"]
    assert b.arg_of("c_new") == ("_res", 1) and b.arg_of("h_new") == ("_ys", 0)
    prev = {x.name: x.seq for x in b.with_role(Role.PREV)}
    assert prev == {"h": "h_new", "c": "c_new"}                 # the state entering step t: the one after t - 1
    assert [type(st) for st in b.step] == [Accumulate, PassEnded, Pointwise, OperandGrad]
    (og,) = [st for st in b.step if isinstance(st, OperandGrad)]
    assert (og.dest.value, og.src, og.weight) == ("d_h", "d_gates", "weight_hh")   # d_x waits for the loop's end
    assert [(type(st).__name__, st.weight if isinstance(st, OperandGrad) else st.dest) for st in b.after] == [
        ("OperandGrad", "weight_ih"), ("WeightGrad", "d_weight_ih"), ("WeightGrad", "d_weight_hh")]
    region = b.step[2]
    assert all(acc for _, _, acc in region.outputs)               # a derived region accumulates into gradients
    assert {d.value for d, _, _ in region.outputs} == {"d_gates", "d_c", "d_bias_ih", "d_bias_hh"}
    assert {v.value for _, v in region.leaves} >= {"gates", "c", "d_h_new", "d_c_new"}
    assert b.carries == (("d_h_new", "d_h"), ("d_c_new", "d_c"))
    acc = {x.name for x in b.buffers if x.acc}
    assert {"d_h", "d_c", "d_x", "d_gates", "d_bias_ih"} <= acc and "d_h_new" not in acc


def test_the_lstms_bias_gradients_are_d_gates_summed_after_the_loop_for_a_backend_that_asks():
    """kernel.params_summed_after_loop (the triton backend's pass): the region adds into d_gates and d_c alone,
    and after the loop d_gates summed over all T*B rows gives each bias's slice"""
    from symcell.kernel import params_summed_after_loop
    b = params_summed_after_loop(lower(LSTMCell).program).backward
    sums, *gemms = b.after
    assert [(type(st).__name__, st.weight if isinstance(st, OperandGrad) else st.dest) for st in gemms] == [
        ("OperandGrad", "weight_ih"), ("WeightGrad", "d_weight_ih"), ("WeightGrad", "d_weight_hh")]
    assert {d.value for d, _, _ in b.step[2].outputs} == {"d_gates", "d_c"}
    assert isinstance(sums, Pointwise) and {v.value for _, v in sums.leaves} == {"d_gates"}
    assert sorted((d.value, d.start, d.stop) for d, _, _ in sums.outputs) == sorted(
        (b_, v.start, v.stop) for b_ in ("d_bias_hh", "d_bias_ih") for _, v in sums.leaves)
    from symcell import backends   # (on a CPU the sums are adds in registers: each step keeps them)
    assert backends.get("triton").param_sums_after_loop and not backends.get("cpp").param_sums_after_loop


def test_a_bias_gradient_moves_after_the_loop_only_where_the_sequence_it_equals_gets_nothing_else():
    """kernel._param_sums_after: d_b += rows' sum of e, beside d_g += e into a sequence, becomes d_g's sum over
    all rows after the loop; not when the step adds anything else into d_g (its sum would be another value), nor
    when e goes only into a step's buffer"""
    from symcell.kernel import View, _param_sums_after
    g = sympy.Symbol("g")
    outputs = ((View("d_g", 0, 4), g * 2, True), (View("d_b", 0, 4), g * 2, True))
    region = Pointwise(((g, View("g", 0, 4)),), (), outputs, (g * 2, g * 2))
    step, after = _param_sums_after([region], {"d_g"}, {"d_b"})
    assert [d.value for d, _, _ in step[0].outputs] == ["d_g"] and step[0].temps == region.temps
    assert [(d.value, e_) for d, e_, _ in after[0].outputs] == [("d_b", after[0].leaves[0][0])]
    assert after[0].leaves[0][1] == View("d_g", 0, 4)
    other = Accumulate("d_g", "g")
    assert _param_sums_after([region, other], {"d_g"}, {"d_b"}) == ([region, other], [])
    # d_g an argument or a step's buffer (not zeros the scan allocates): its sum is not d_b's
    assert _param_sums_after([region], set(), {"d_b"}) == ([region], [])
    # another output of the region into the same columns of d_g
    h = sympy.Symbol("h")
    twice = Pointwise(((g, View("g", 0, 4)), (h, View("h", 0, 4))), (), outputs + ((View("d_g", 0, 4), h, True),),
                      (g * 2, g * 2, h))
    assert _param_sums_after([twice], {"d_g"}, {"d_b"}) == ([twice], [])


def test_a_sole_add_into_zeros_is_a_store_only_where_nothing_else_writes_those_columns():
    """kernel.sole_write (the triton kernels store such an output instead of loading and adding: zeros are there)"""
    from dataclasses import replace

    from symcell.kernel import View, sole_write
    g, h = sympy.Symbol("g"), sympy.Symbol("h")
    outputs = ((View("d_g", 0, 4), g * 2, True), (View("d_b", 0, 4), g * 2, True))
    region = Pointwise(((g, View("g", 0, 4)),), (), outputs, (g * 2, g * 2))
    assert sole_write([region], region, 0, {"d_g"})
    assert not sole_write([region], region, 1, {"d_g"})           # not a sequence the scan zeroes
    assert not sole_write([region], region, 0, set())             # an argument, or a step's buffer
    assert not sole_write([region, Accumulate("d_g", "g")], region, 0, {"d_g"})   # another statement adds to it
    twice = Pointwise(((g, View("g", 0, 4)), (h, View("h", 0, 4))), (), outputs + ((View("d_g", 2, 6), h, True),),
                      (g * 2, g * 2, h))
    assert not sole_write([twice], twice, 0, {"d_g"})             # another output of the region overlaps it
    apart = replace(twice, outputs=outputs + ((View("d_g", 4, 8), h, True),))
    assert sole_write([apart], apart, 0, {"d_g"}) and sole_write([apart], apart, 2, {"d_g"})
    assigned = replace(region, outputs=((View("d_g", 0, 4), g * 2, False),) + outputs[1:])
    assert not sole_write([assigned], assigned, 0, {"d_g"})       # an assignment is a store already


def test_a_weight_gradient_is_assigned_by_its_first_gemms_only_where_they_tile_its_columns():
    """kernel.weight_grads_assigned (the cpp backend allocates those uninitialised): the LSTM's two, each written
    by one WeightGrad after the loop; a second one over the same columns adds (the first assigns); not where the
    ranges overlap otherwise or leave columns out, nor where anything but WeightGrads after the loop writes it"""
    from dataclasses import replace

    from symcell.kernel import WeightGrad, weight_grads_assigned
    b = lower(LSTMCell).program.backward
    first_ih, first_hh = [st for st in b.after if isinstance(st, WeightGrad)]
    assert weight_grads_assigned(b) == {"d_weight_ih": (first_ih,), "d_weight_hh": (first_hh,)}
    H = first_hh.col_stop

    def with_after(*extra, step=()):
        return weight_grads_assigned(replace(b, after=b.after + extra, step=b.step + step))
    again = replace(first_hh, src="d_x")   # (any source: the analysis reads only where it writes)
    assert with_after(again)["d_weight_hh"] == (first_hh,)
    halves = (replace(first_hh, col_stop=H / 2), replace(first_hh, col_start=H / 2))
    only_halves = replace(b, after=tuple(st for st in b.after if st is not first_hh) + halves)
    assert weight_grads_assigned(only_halves)["d_weight_hh"] == halves        # two ranges that tile it
    assert "d_weight_hh" not in with_after(halves[1])                         # [0, H) and [H/2, H) overlap
    assert "d_weight_hh" not in weight_grads_assigned(replace(only_halves, after=only_halves.after[:-1]))
    assert "d_weight_hh" not in with_after(Accumulate("d_weight_hh", "d_x"))  # another kind of write
    assert "d_weight_hh" not in with_after(step=(again,))                     # a write inside the loop
    assert "d_weight_ih" in with_after(step=(again,))


def test_bound_programs_have_integer_sizes():
    f = lower(LSTMCell, {"I": 3, "H": 5}).program.forward
    assert f.buffer("gates").size == 20 and f.buffer("weight_ih").size == (20, 3)


def test_a_cell_with_no_matmul_is_one_region():
    @define(inputs={"x": "H"}, state={"h": "H"}, params={"w": ("H",)})
    def Leaky(x, h, w):
        return relu(sigmoid(w) * h + x)
    s = lower(Leaky).schedule
    assert s.pre == () and [type(st).__name__ for st in s.loop] == ["Region"]
    assert lower(Leaky).program.backward.after == ()
