"""symcell.cells.LSTM / GRU against nn.LSTM / nn.GRU with the same state_dict, every option, every backend; and
symcell.RNN stacking a user-defined cell, against an eager reference."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import symcell
from symcell import ShapeError
from symcell.cells import GRU, LSTM, from_nn
from zoo import CASES, eager_scan_lengths, rel_err

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = [b for b in ("reference", "cpp", "triton")
            if symcell.backends.get(b).usable(torch.device("cpu" if b != "triton" else DEVICE))]

# (num_layers, bidirectional, batch_first, proj_size (LSTM only), bias, packed)
OPTIONS = [
    (2, True, False, 0, True, False),
    (1, False, True, 2, True, False),
    (2, True, True, 2, True, True),
    (3, False, False, 0, False, True),
    (1, True, False, 0, True, True),
]


def _grads(outs, wrt, cots):
    return torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), wrt, retain_graph=True)


def _pair(kind, I, H, L, bidir, batch_first, proj, bias, backend, dropout=0.0):
    opts = dict(num_layers=L, bidirectional=bidir, batch_first=batch_first, bias=bias, dropout=dropout)
    if kind == "lstm":
        ref, ours = nn.LSTM(I, H, proj_size=proj, **opts), LSTM(I, H, proj_size=proj, backend=backend, **opts)
    else:
        ref, ours = nn.GRU(I, H, **opts), GRU(I, H, backend=backend, **opts)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert all(ours.state_dict()[k].shape == v.shape for k, v in ref.state_dict().items())
    ours.load_state_dict(ref.state_dict())
    dev = "cpu" if backend != "triton" else DEVICE
    return ref.to(dev), ours.to(dev)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "L{}{}{}{}{}{}".format(
    o[0], "-bidir" if o[1] else "", "-bf" if o[2] else "", f"-proj{o[3]}" if o[3] else "", "" if o[4] else "-nobias",
    "-packed" if o[5] else ""))
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_matches_nn_outputs_states_and_every_gradient(kind, options, backend):
    L, bidir, batch_first, proj, bias, packed = options
    proj = proj if kind == "lstm" else 0
    torch.manual_seed(0)
    I, H, T, B = 3, 5, 6, 4
    ref, ours = _pair(kind, I, H, L, bidir, batch_first, proj, bias, backend, dropout=0.3 if L > 1 else 0.0)
    ref.eval(), ours.eval()   # dropout acts in training only
    dev = next(ref.parameters()).device
    D = 2 if bidir else 1
    x = torch.randn((B, T, I) if batch_first else (T, B, I), device=dev, requires_grad=True)
    h0 = torch.randn(L * D, B, proj or H, device=dev, requires_grad=True)
    c0 = torch.randn(L * D, B, H, device=dev, requires_grad=True)
    hx, init = ((h0, c0), [h0, c0]) if kind == "lstm" else (h0, [h0])
    lengths = [4, 6, 1, 3]
    inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False) if packed else x
    with torch.backends.cudnn.flags(enabled=False):   # cuDNN refuses a backward in eval mode; nn's own kernels do not
        out_r, st_r = ref(inp, hx)
    out_s, st_s = ours(inp, hx)
    if packed:
        assert isinstance(out_s, type(out_r))
        assert torch.equal(out_s.batch_sizes, out_r.batch_sizes)
        assert torch.equal(out_s.sorted_indices, out_r.sorted_indices)
        out_r, out_s = out_r.data, out_s.data
    st_r = st_r if kind == "lstm" else (st_r,)
    st_s = st_s if kind == "lstm" else (st_s,)
    for a, b in zip((out_s, *st_s), (out_r, *st_r)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    cots = [torch.randn_like(t) for t in (out_r, *st_r)]
    names = [n for n, _ in ours.named_parameters()]
    g_s = _grads((out_s, *st_s), [x, *init, *ours.parameters()], cots)
    g_r = _grads((out_r, *st_r), [x, *init, *[dict(ref.named_parameters())[n] for n in names]], cots)
    for what, a, b in zip(["x", *(["h_0", "c_0"] if kind == "lstm" else ["h_0"]), *names], g_s, g_r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=what)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unbatched_input_default_state_and_conversions(kind):
    torch.manual_seed(1)
    nn_cls, cls = (nn.LSTM, LSTM) if kind == "lstm" else (nn.GRU, GRU)
    ref = nn_cls(4, 3, num_layers=2, bidirectional=True)
    ours = from_nn(ref, backend="reference")
    assert isinstance(ours, cls) and ours.num_layers == 2 and ours.bidirectional
    x = torch.randn(5, 4)               # one sequence, no batch dimension
    out_r, st_r = ref(x)
    out_s, st_s = ours(x)
    assert out_s.shape == out_r.shape == (5, 6)
    torch.testing.assert_close(out_s, out_r, rtol=1e-5, atol=1e-6)
    for a, b in zip(st_s if kind == "lstm" else (st_s,), st_r if kind == "lstm" else (st_r,)):
        assert a.shape == b.shape == (4, 3)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    back = ours.to_nn()
    assert type(back) is nn_cls and back.bidirectional and back.num_layers == 2
    for k, v in ref.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    ours.flatten_parameters()  # a no-op, for cuDNN-style code
    assert len(ours.all_weights) == 4


def test_conversions_take_subclasses_and_keep_frozen_parameters_frozen():
    class Tagger(nn.LSTM):      # a user's subclass: from_nn refused it while LSTM.from_nn took it
        pass

    ref = Tagger(3, 4, num_layers=2)
    ref.weight_hh_l0.requires_grad_(False)
    ours = from_nn(ref, backend="reference")
    assert isinstance(ours, LSTM)
    frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}
    assert frozen == {"weight_hh_l0"}        # it came back trainable
    ours.bias_ih_l1.requires_grad_(False)
    assert {n for n, p in ours.to_nn().named_parameters() if not p.requires_grad} == {"weight_hh_l0", "bias_ih_l1"}

    # a parametrized or pruned module converts with its weights' values (its state_dict holds their parts)
    from torch.nn.utils import parametrizations, prune
    ref = nn.LSTM(3, 4)
    parametrizations.weight_norm(ref, "weight_hh_l0")
    prune.l1_unstructured(ref, "weight_ih_l0", amount=0.5)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(from_nn(ref, backend="reference")(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)
    parametrizations.weight_norm(ours, "weight_hh_l1")
    torch.testing.assert_close(ours.to_nn()(x)[0], ours(x)[0], rtol=1e-5, atol=1e-6)
    # ... and a frozen one stays frozen (its requires_grad is its parts': it came back trainable)
    for p in ref.parametrizations.weight_hh_l0.parameters():
        p.requires_grad_(False)
    ref.weight_ih_l0_orig.requires_grad_(False)
    trained = [n for n, p in from_nn(ref, backend="reference").named_parameters() if p.requires_grad]
    assert trained == ["bias_ih_l0", "bias_hh_l0"]


def test_dropout_between_layers_in_training_draws_as_nn_does():
    # nn.LSTM (CPU) drops the output of every layer but the last with the same generator calls as F.dropout
    torch.manual_seed(2)
    ref = nn.LSTM(3, 4, num_layers=3, dropout=0.5, bidirectional=True)
    ours = LSTM.from_nn(ref, backend="reference")
    assert ours.training
    x = torch.randn(5, 2, 3)
    torch.manual_seed(7)
    out_r, _ = ref(x)
    torch.manual_seed(7)
    out_s, _ = ours(x)
    torch.testing.assert_close(out_s, out_r, rtol=1e-5, atol=1e-6)
    torch.manual_seed(8)
    assert not torch.allclose(ours(x)[0], out_s)     # a different draw gives a different result
    ours.eval()
    torch.testing.assert_close(ours(x)[0], ref.eval()(x)[0], rtol=1e-5, atol=1e-6)


def test_lengths_argument_equals_packing():
    torch.manual_seed(3)
    ours = GRU(3, 4, num_layers=2, bidirectional=True, backend="reference")
    x = torch.randn(2, 6, 3)
    out_p, h_p = ours(pack_padded_sequence(x, [6, 2], batch_first=True))
    ours.batch_first = True
    out_l, h_l = ours(x, lengths=torch.tensor([6, 2]))
    assert torch.all(out_l[1, 2:] == 0)
    torch.testing.assert_close(h_l, h_p)
    torch.testing.assert_close(out_l, pad_packed_sequence(out_p, batch_first=True)[0])


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_packed_batch_of_many_sequences_in_the_order_a_backend_prefers(kind, backend):
    """a PackedSequence whose rows the backend runs in another order (the cpp backend deals rows to threads by
    length: at 2 threads from 8 rows on): the output is packed with the caller's lengths, not the reordered ones
    (which failed: 'lengths array must be sorted in decreasing order'), and matches nn's"""
    from torch.nn.utils.rnn import pack_sequence
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(4)
        ref = getattr(nn, kind)(3, 4, bidirectional=True)
        ours = from_nn(ref, backend=backend)
        seqs = [torch.randn(n, 3) for n in (6, 6, 5, 5, 4, 3, 2, 1, 1)]
        for sort in (True, False):
            packed = pack_sequence(seqs if sort else seqs[::-1], enforce_sorted=sort)
            (out_s, h_s), (out_r, h_r) = ours(packed), ref(packed)
            torch.testing.assert_close(out_s.data, out_r.data, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(h_s, h_r, rtol=1e-5, atol=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_option_and_state_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"proj_size has to be smaller than hidden_size; got proj_size=5, "
                                         r"hidden_size=4"):
        LSTM(3, 4, proj_size=5)
    with pytest.raises(ValueError, match="num_layers must be greater than zero, got 0"):
        GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\], got 1.5"):
        GRU(3, 4, dropout=1.5)
    with pytest.warns(UserWarning, match="dropout=0.2 acts between layers"):
        GRU(3, 4, dropout=0.2)
    gru = GRU(3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"state 'h' must have shape \(num_layers \* directions, B, 4\) = "
                                         r"\(4, 2, 4\), got \(1, 2, 4\)"):
        gru(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\], got min 1 and max 6"):
        gru(torch.randn(5, 2, 3), lengths=[6, 1])
    with pytest.raises(ValueError, match=r"lengths must have one entry per batch row, shape \(2,\), got \(3,\)"):
        gru(torch.randn(5, 2, 3), lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths must hold integers, got dtype torch.float32"):
        gru(torch.randn(5, 2, 3), lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="a PackedSequence carries its lengths"):
        gru(pack_padded_sequence(torch.randn(5, 2, 3), [5, 2]), lengths=[5, 2])
    with pytest.raises(ValueError, match=r"input must be \(T, B, features\).*got shape \(2, 5, 2, 3\)"):
        gru(torch.randn(2, 5, 2, 3))
    with pytest.raises(TypeError, match="expected an nn.LSTM or nn.GRU, got RNN"):
        from_nn(nn.RNN(3, 4))


# --- any cell: symcell.RNN ---------------------------------------------------------------------------------
def _eager_stack(step, x, states, layer_params, lengths, L, D, dropout_p=0.0, out=0, others=()):
    """The stacked, bidirectional reference: eager_scan_lengths per layer and direction (`others`: the cell's
    other inputs, the same for every layer)."""
    finals = [[] for _ in states]
    for k in range(L):
        outs = []
        for d in range(D):
            init = [s[k * D + d] for s in states]
            ys, fin = eager_scan_lengths(step, [x, *others], init, layer_params[k][d], (out,), lengths,
                                         reverse=d == 1)
            outs.append(ys[0])
            for j, f in enumerate(fin):
                finals[j].append(f)
        x = torch.cat(outs, -1)
    return x, tuple(torch.stack(f) for f in finals)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["Gated", "LLTM", "Readout", "SLSTM", "LayerNormLSTM"])
def test_user_cell_stacked_bidirectional_with_lengths(backend, name):
    cell_cls, step = type(CASES[name][0](backend="reference")), CASES[name][1]
    if name == "Readout":   # its output is not a state: the same step with y alone as its output
        from zoo import ReadoutY as cell_cls
    if name == "SLSTM":     # one cell class per head count
        cell_cls = symcell.cells.slstm_cell(2)
    dims = {"Gated": dict(I=3, H=4), "LLTM": dict(F=3, S=4), "Readout": dict(I=3, H=5, O=4),
            "SLSTM": dict(I=3, H=4), "LayerNormLSTM": dict(I=3, H=4)}[name]
    dtype = torch.float32 if backend == "triton" else torch.float64
    dev = DEVICE if backend == "triton" else "cpu"
    torch.manual_seed(4)
    rnn = symcell.RNN(cell_cls, num_layers=2, bidirectional=True, backend=backend, **dims).to(dev, dtype)
    T, B = 5, 9
    x = torch.randn(T, B, 3, dtype=dtype, device=dev, requires_grad=True)
    states = [(0.5 * torch.randn(4, B, n, dtype=dtype, device=dev)).requires_grad_() for n in rnn.state_sizes.values()]
    lengths = [5, 3, 0, 1, 5, 2, 4, 5, 1]
    out, fin = rnn(x, states, lengths=lengths)
    fin = fin if isinstance(fin, tuple) else (fin,)
    # the reference in float64 (the float32 eager loop's own rounding differs from machine to machine: AVX2 or
    # AVX-512 kernels; against it, a LayerNormLSTM gradient was 7e-4 apart at one place on an AVX-512 EPYC)
    wrt = [x, *states, *rnn.parameters()]
    x_r, *states_r = [t.detach().double().requires_grad_() for t in (x, *states)]
    params_r = [p.detach().double().requires_grad_() for p in rnn.parameters()]
    per = len(params_r) // 4
    layer_params = [[params_r[(k * 2 + d) * per:(k * 2 + d + 1) * per] for d in range(2)] for k in range(2)]
    out_r, fin_r = _eager_stack(step, x_r, states_r, layer_params, lengths, 2, 2, out=CASES[name][2][0])
    # (each tensor relative to its largest value, as the README's float32 promise: a layer norm of 4 features
    # magnifies float32's rounding at a row whose values are close)
    limit = 1e-4 if dtype == torch.float32 else 1e-9
    assert out.shape == (T, B, 8)
    for k, (a, b) in enumerate(zip((out, *fin), (out_r, *fin_r))):
        assert rel_err(a.double(), b) < limit, (k, rel_err(a.double(), b))
    cots = [torch.randn_like(t) for t in (out, *fin)]
    grads_r = _grads((out_r, *fin_r), [x_r, *states_r, *params_r], [c.double() for c in cots])
    for k, (a, b) in enumerate(zip(_grads((out, *fin), wrt, cots), grads_r)):
        assert rel_err(a.double(), b) < limit, (k, rel_err(a.double(), b))
    assert set(dict(rnn.named_parameters())) >= {f"{p}_l1_reverse" for p, _ in cell_cls.spec.ir.user_params}


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_a_cell_of_several_inputs_stacks_its_first_and_gives_every_layer_the_others(backend):
    """a T-LSTM's time deltas: symcell.RNN stacked one-input cells only; now (x, dt): layer k > 0 takes the layer
    below's output for x and dt as it is, in both directions, with lengths, batch_first and unbatched"""
    from zoo import TimeStep, timestep_ref
    torch.manual_seed(2)
    rnn = symcell.RNN(TimeStep, num_layers=2, bidirectional=True, backend=backend, I=3, H=4).double()
    T, B = 5, 4
    x = torch.randn(T, B, 3, dtype=torch.float64, requires_grad=True)
    dt = torch.rand(T, B, 1, dtype=torch.float64, requires_grad=True)
    h0 = (0.5 * torch.randn(4, B, 4, dtype=torch.float64)).requires_grad_()
    lengths = [5, 2, 0, 4]
    out, fin = rnn((x, dt), h0, lengths=lengths)
    x_r, dt_r, h0_r = (t.detach().requires_grad_() for t in (x, dt, h0))
    params_r = [p.detach().requires_grad_() for p in rnn.parameters()]
    layer_params = [[params_r[(k * 2 + d) * 2:(k * 2 + d + 1) * 2] for d in range(2)] for k in range(2)]
    out_r, (fin_r,) = _eager_stack(timestep_ref, x_r, [h0_r], layer_params, lengths, 2, 2, others=(dt_r,))
    assert rel_err(out, out_r) < 1e-10 and rel_err(fin, fin_r) < 1e-10
    cots = [torch.randn_like(out), torch.randn_like(fin)]
    for a, b in zip(_grads((out, fin), [x, dt, h0, *rnn.parameters()], cots),
                    _grads((out_r, fin_r), [x_r, dt_r, h0_r, *params_r], cots)):
        assert rel_err(a, b) < 1e-10
    rnn.batch_first = True   # (B, T, n) each
    torch.testing.assert_close(rnn((x.transpose(0, 1), dt.transpose(0, 1)), h0, lengths=lengths)[0],
                               out.transpose(0, 1), rtol=1e-12, atol=1e-12)
    one, _ = rnn((x[:, 0], dt[:, 0]), h0[:, 0])   # one unbatched sequence: (T, n) each
    torch.testing.assert_close(one, rnn((x[:, :1].transpose(0, 1), dt[:, :1].transpose(0, 1)), h0[:, :1])[0][0])
    with pytest.raises(TypeError, match=r"^TimeStep: input must be a tuple of 2 sequences \(x, dt\), got Tensor$"):
        rnn(x)
    with pytest.raises(ShapeError, match=r"^TimeStep: expected 2 input\(s\) \(x, dt\), got 3$"):
        rnn((x, dt, dt))
    with pytest.raises(ShapeError, match=r"input 'dt' has shape \(5, 1\) but input 'x' has \(4, 5, 3\)"):
        rnn((x.transpose(0, 1), dt[:, 0]))
    with pytest.raises(TypeError, match="a cell of several inputs takes padded sequences with lengths=, not "
                                        "PackedSequences \\(input 'x'\\)"):
        rnn((pack_padded_sequence(x, [5, 5, 5, 5]), dt))


def test_stacking_needs_an_input_dimension_of_its_own():
    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"W": ("H", "H")})
    def Square(x, h, W):
        return symcell.tanh(W @ h + x)

    symcell.RNN(Square, num_layers=2, H=3)    # the layer below is H wide: nothing changes
    with pytest.raises(ValueError, match=r"binding the input dimension H to the width of the layer below \(6\) "
                                         r"changes the state sizes"):
        symcell.RNN(Square, num_layers=2, bidirectional=True, H=3)

    @symcell.define(inputs={"x": "2*I"}, state={"h": "H"}, params={"W": ("H", "2*I")})
    def Pairs(x, h, W):
        return symcell.tanh(W @ x + h)

    with pytest.raises(ValueError, match="the input of Pairs has size 2\\*I; stacking rebinds"):
        symcell.RNN(Pairs, num_layers=2, I=3, H=4)

    # an output (not a state) sized by the input dimension: the layers above were wider than output_size says,
    # and a third layer failed at its first call naming no layer
    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I"), "V": ("2*I", "H")},
                    outputs={"y": "2*I"})
    def Recon(x, h, W, V):
        h = symcell.tanh(W @ x + h)
        return h, symcell.tanh(V @ h)

    symcell.RNN(Recon, I=3, H=4)
    with pytest.raises(ValueError, match=r"binding the input dimension I to the width of the layer below \(6\) "
                                         r"changes the output size \(6 -> 12\)"):
        symcell.RNN(Recon, num_layers=2, I=3, H=4)

    # sizes that do not fit the width of the layer below: said so, naming the cell and the parameter as declared
    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": (2, "H", "I/2"), "U": ("2*H", "H")})
    def Half(x, h, W, U):
        a, b = symcell.split(W @ x + U @ h, 2)
        return symcell.tanh(a) * symcell.sigmoid(b)

    with pytest.raises(ValueError, match=r"Half's layers above the first bind its input dimension I to the width "
                                         r"of the layer below, 3, where the sizes do not fit \(Half: param 'W': size "
                                         r"I/2 is 3/2 for H=3, I=3"):
        symcell.RNN(Half, num_layers=2, I=4, H=3)
    with pytest.raises(ValueError, match=r"Readout has 1 input\(s\) and 2 output\(s\); stacking needs one output"):
        symcell.RNN(type(CASES["Readout"][0](backend="reference")), I=3, H=4, O=2)

    @symcell.define(inputs={"x": "I", "m": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
    def Masked(x, m, h, W):   # (GRU-D's mask: as wide as the first input, which layers above rebind)
        return symcell.tanh(W @ (x * m) + h)

    with pytest.raises(ValueError, match=r"changes the other inputs' sizes \(\{'m': 3\} -> \{'m': 4\}\); the "
                                         r"input dimension must be used by the first input \(and weights\) only"):
        symcell.RNN(Masked, num_layers=2, I=3, H=4)


def test_a_stacked_layernorm_lstm_starts_as_the_single_cell_does():
    """spec.initial: symcell.RNN(LayerNormLSTM.spec) starts its gains at 1 and its shift at 0 (as the cell and
    nn.LayerNorm), not uniform(-k, k) like the weights"""
    from symcell.cells import LayerNormLSTM
    rnn = symcell.RNN(LayerNormLSTM.spec, num_layers=2, bidirectional=True, I=3, H=4, backend="reference")
    cell = LayerNormLSTM(3, 4, backend="reference")
    for name, p in rnn.named_parameters():
        base = name.split("_l")[0]
        if base in LayerNormLSTM.spec.initial:
            assert torch.equal(p, torch.full_like(p, LayerNormLSTM.spec.initial[base])), name
            assert torch.equal(getattr(cell, base), torch.full_like(p, LayerNormLSTM.spec.initial[base]))
        else:
            assert p.abs().max() <= 0.5 and p.std() > 0, name   # uniform(-1/2, 1/2) at H = 4


def test_an_rnn_of_a_cell_instance_takes_its_sizes():
    """symcell.RNN(instance) stacks the instance's cell at the instance's sizes (was: only the dimensions passed,
    so RNN(LSTMCell(3, 5)) asked for H and I, and RNN(cell, H=7) silently stacked another size)"""
    from symcell.cells import LSTMCell, SLSTM
    rnn = symcell.RNN(LSTMCell(3, 5, backend="reference"), num_layers=2, backend="reference")
    assert rnn.dims == {"I": 3, "H": 5} and rnn.state_sizes == {"h": 5, "c": 5}
    out, (h, c) = rnn(torch.randn(4, 2, 3))
    assert out.shape == (4, 2, 5) and h.shape == c.shape == (2, 2, 5)
    assert symcell.RNN(SLSTM(3, 4, num_heads=2, backend="reference"), backend="reference").state_sizes["m"] == 4
    with pytest.raises(ValueError, match=r"the cell given has \{'I': 3, 'H': 5\}; the dimension\(s\) passed differ: "
                                         r"\{'H': 7\}"):
        symcell.RNN(LSTMCell(3, 5, backend="reference"), H=7)


def test_an_rnn_of_a_cell_instance_takes_its_options_and_starts_as_it():
    """What the instance was made with and was not passed to RNN: its backend, batch_first, dtype and device (were
    "auto", False and torch's defaults: a batch-first cell's stack read (B, T, I) as (T, B, I) silently); its
    parameters' bound (an LSTMCell with proj_size, as nn's, 1/sqrt(hidden_size): the stack took the first state's
    size, the projection's, 4x nn's at H=64, P=4)"""
    from symcell.cells import LSTM, LSTMCell
    cell = LSTMCell(3, 5, backend="reference", batch_first=True, dtype=torch.float64)
    rnn = symcell.RNN(cell, num_layers=2)
    assert (rnn.backend, rnn.batch_first, rnn.weight_hh_l1.dtype) == ("reference", True, torch.float64)
    x = torch.randn(2, 4, 3, dtype=torch.float64)   # (B, T, I)
    assert rnn(x)[0].shape == cell(x)[0].shape == (2, 4, 5)
    rnn = symcell.RNN(cell, batch_first=False, backend="auto", dtype=torch.float32)   # passed: as passed
    assert (rnn.backend, rnn.batch_first, rnn.weight_hh_l0.dtype) == ("auto", False, torch.float32)
    assert symcell.RNN(LSTMCell(3, 5, device="meta")).weight_hh_l0.is_meta
    for bias in (True, False):
        for m in (symcell.RNN(LSTMCell(4, 64, bias, proj_size=4, backend="reference")),
                  LSTM(4, 64, bias=bias, proj_size=4, backend="reference"), nn.LSTM(4, 64, bias=bias, proj_size=4)):
            assert 0.12 < max(p.abs().max() for p in m.parameters()) <= 0.125   # 1/sqrt(64)


def test_reset_parameters_reaches_parametrized_and_pruned_weights():
    """as nn.LSTMCell's, which resets what the module stores: symcell's wrote into getattr(cell, name), which a
    parametrization, pruning or the old weight_norm compute afresh, so the reset did nothing (meta-device
    construction, then to_empty and reset_parameters, kept whatever memory to_empty left)"""
    import warnings
    from torch.nn.utils import parametrizations, prune
    from symcell.cells import LayerNormLSTM, LSTMCell
    with torch.device("meta"):
        cell = LSTMCell(4, 6, backend="reference")
    parametrizations.weight_norm(cell, "weight_hh")
    cell.to_empty(device="cpu")
    prune.l1_unstructured(cell, "bias_hh", amount=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # (torch.nn.utils.weight_norm is deprecated)
        torch.nn.utils.weight_norm(cell, "weight_ih")
    with torch.no_grad():
        for p in cell.parameters():
            p.fill_(1e6)
    cell.reset_parameters()
    stored = dict(cell.named_parameters())
    assert {"parametrizations.weight_hh.original1", "bias_hh_orig", "weight_ih_v"} <= set(stored)
    for name, p in stored.items():
        assert p.abs().max() <= 6 ** -0.5 and p.std() > 0, name

    ln = LayerNormLSTM(3, 4, backend="reference")
    prune.l1_unstructured(ln, "gamma_c", amount=0.5)
    with torch.no_grad():
        ln.gamma_c_orig.fill_(7.0)
    ln.reset_parameters()
    assert torch.equal(ln.gamma_c_orig, torch.ones(4))
    # ... and a stack's (it filled the pruned gain afresh computed, leaving what it is computed from random)
    stack = symcell.RNN(LayerNormLSTM, I=3, H=4, num_layers=2, backend="reference")
    prune.l1_unstructured(stack, "gamma_c_l1", amount=0.5)
    parametrizations.weight_norm(stack, "gamma_hh_l0", dim=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # (torch.nn.utils.weight_norm is deprecated)
        torch.nn.utils.weight_norm(stack, "beta_c_l0", dim=None)   # (starts at 0: 0 / |0| made it NaN)
        torch.nn.utils.weight_norm(ln, "beta_c", dim=0)
    stack.reset_parameters()
    ln.reset_parameters()
    assert torch.equal(stack.gamma_c_l1_orig, torch.ones(4))
    torch.testing.assert_close(stack.gamma_hh_l0, torch.ones(16))   # (as the module computes it)
    stack(torch.randn(2, 1, 3))                                   # (the hook computes beta_c_l0)
    assert torch.equal(stack.beta_c_l0, torch.zeros(4)) and torch.isfinite(stack.beta_c_l0_v).all()
    ln(torch.randn(2, 1, 3))
    assert torch.equal(ln.beta_c, torch.zeros(4))


@pytest.mark.cpp
@pytest.mark.skipif("cpp" not in BACKENDS, reason="needs the cpp backend, which reorders rows by length")
def test_dropout_with_lengths_draws_each_rows_mask_whatever_the_row_order():
    """the cpp backend puts rows in its order (by length, dealt over threads) before the layers run; dropout was
    drawn on that order, so each row got another's mask: seeded results changed with the backend (h_n 0.53 apart)
    and the thread count"""
    from torch.nn.utils.rnn import pack_padded_sequence
    torch.manual_seed(0)
    x, lengths = torch.randn(6, 9, 3), [6, 1, 4, 6, 2, 5, 3, 6, 1]
    results = []
    for backend, threads in (("reference", 1), ("cpp", 1), ("cpp", 2)):
        gru = GRU(3, 4, num_layers=2, dropout=0.5, backend=backend)
        torch.manual_seed(1)
        gru.reset_parameters()
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.manual_seed(2)
            out, h = gru(x, lengths=lengths)
            torch.manual_seed(2)
            packed, h_packed = gru(pack_padded_sequence(x, lengths, enforce_sorted=False))
        finally:
            torch.set_num_threads(before)
        results.append((out, h, h_packed))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lengths_on_the_meta_device():
    """a module on the meta device (shapes only) took lengths= and packed input as nn.LSTM does not raise on:
    the lengths' check copied them to the CPU ("Cannot copy out of meta tensor"); meta lengths with CPU data say so"""
    from torch.nn.utils.rnn import pack_padded_sequence
    m = LSTM(3, 4, num_layers=2, bidirectional=True, backend="reference", device="meta")
    x = torch.randn(5, 2, 3, device="meta")
    assert m(x, lengths=[5, 2])[0].shape == (5, 2, 8)
    assert m(pack_padded_sequence(x, [5, 2]))[0].data.shape == (7, 8)
    with pytest.raises(ValueError, match="lengths are on the meta device, which holds no values"):
        LSTM(3, 4, backend="reference")(torch.randn(5, 2, 3), lengths=torch.tensor([5, 2], device="meta"))


@pytest.mark.parametrize("name", ["reference", "cpp", "triton"])   # (nothing built: not the backends' tiers)
def test_every_backend_runs_on_the_meta_device_as_nn_does(name):
    """a model built on meta (shapes and memory only) with backend='cpp' or 'triton' raised 'cannot run tensors on
    meta' (the triton backend's said to set TRITON_INTERPRET=1); nn's modules run there. Meta has no values: every
    backend gives the shapes alike, through the reference backend's code"""
    m = LSTM(3, 4, num_layers=2, backend=name, device="meta")
    x = torch.randn(5, 2, 3, device="meta", requires_grad=True)
    out, (h, c) = m(x, lengths=[5, 2])
    out.sum().backward()
    assert out.shape == (5, 2, 4) and h.shape == c.shape == (2, 2, 4) and out.is_meta
    assert x.grad.shape == x.shape and m.weight_hh_l1.grad.is_meta
    assert symcell.cells.GRUCell(3, 4, backend=name, device="meta")(torch.randn(2, 3, device="meta")).shape == (2, 4)
