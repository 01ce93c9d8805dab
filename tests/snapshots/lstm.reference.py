# symcell reference backend: LSTM
def forward(_xs, _inits, _params, _save, _lengths=None):
    _x_seq, = _xs
    _h_init, _c_init, = _inits
    weight_ih, weight_hh, bias_ih, bias_hh, = _params
    _T, _B = _x_seq.shape[0], _x_seq.shape[1]
    _h_new_seq = _x_seq.new_empty((_T, _B, 16))
    _c_new_seq = _x_seq.new_empty((_T, _B, 16)) if _save else None
    _gates_seq = _x_seq.new_empty((_T, _B, 64)) if _save else None
    h, c, = _h_init, _c_init,
    for _t in range(_T):
        _live = None if _lengths is None else (_t < _lengths)[:, None]   # (the rows still running)
        x = _x_seq[_t]
        gates = torch.mm(x, weight_ih.t()) + torch.mm(h, weight_hh.t())
        # fused pointwise region: 2 output(s) of 16 features
        gates_3 = gates[:, 48:64]
        bias_ih_3 = bias_ih[48:64]
        bias_hh_3 = bias_hh[48:64]
        gates_1 = gates[:, 16:32]
        bias_ih_1 = bias_ih[16:32]
        bias_hh_1 = bias_hh[16:32]
        gates_0 = gates[:, 0:16]
        bias_ih_0 = bias_ih[0:16]
        bias_hh_0 = bias_hh[0:16]
        gates_2 = gates[:, 32:48]
        bias_ih_2 = bias_ih[32:48]
        bias_hh_2 = bias_hh[32:48]
        _e0 = c*torch.sigmoid(bias_hh_1 + bias_ih_1 + gates_1) + torch.sigmoid(bias_hh_0 + bias_ih_0 + gates_0)*torch.tanh(bias_hh_2 + bias_ih_2 + gates_2)
        h_new = _on_live(torch.sigmoid(bias_hh_3 + bias_ih_3 + gates_3)*torch.tanh(_e0), _live)
        c_new = _on_live(_e0, _live)
        if _live is not None:   # rows past their length keep their state
            h_new = torch.where(_live, h_new, h)
            c_new = torch.where(_live, c_new, c)
        _h_new_seq[_t] = h_new
        if _save:
            _c_new_seq[_t] = c_new
            _gates_seq[_t] = gates
        h, c, = h_new, c_new,
    return [_h_new_seq, h, c] + ([_gates_seq, _c_new_seq] if _save else [])

def backward(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _lengths=None):
    __dys_h_seq, = _d_ys
    _d_h_new_init, _d_c_new_init, = _d_finals
    _x_seq, = _xs
    _h_init, _c_init, = _inits
    weight_ih, weight_hh, bias_ih, bias_hh, = _params
    _h_new_seq, = _ys
    _gates_seq, _c_new_seq, = _res
    _T, _B = _x_seq.shape[0], _x_seq.shape[1]
    _d_x_seq = _x_seq.new_zeros((_T, _B, 8))
    _d_gates_seq = _x_seq.new_zeros((_T, _B, 64))
    d_weight_ih = _x_seq.new_zeros((64, 8,))
    d_weight_hh = _x_seq.new_zeros((64, 16,))
    d_bias_ih = _x_seq.new_zeros((64,))
    d_bias_hh = _x_seq.new_zeros((64,))
    d_h_new, d_c_new, = _d_h_new_init, _d_c_new_init,
    for _t in reversed(range(_T)):
        _live = None if _lengths is None else (_t < _lengths)[:, None]   # (the rows still running)
        c = _c_new_seq[_t - 1] if _t > 0 else _c_init
        gates = _gates_seq[_t]
        _dys_h = __dys_h_seq[_t]
        d_h = _x_seq.new_zeros((_B, 16))
        d_c = _x_seq.new_zeros((_B, 16))
        d_gates = _d_gates_seq[_t]
        d_h_new = d_h_new + _dys_h
        if _live is not None:   # ended rows: the carried cotangent passes to the previous state
            d_h = torch.where(_live, d_h, d_h_new)
            d_h_new = torch.where(_live, d_h_new, torch.zeros_like(d_h_new))
            d_c = torch.where(_live, d_c, d_c_new)
            d_c_new = torch.where(_live, d_c_new, torch.zeros_like(d_c_new))
        # fused pointwise region: 13 output(s) of 16 features
        gates_3 = gates[:, 48:64]
        bias_ih_3 = bias_ih[48:64]
        bias_hh_3 = bias_hh[48:64]
        gates_1 = gates[:, 16:32]
        bias_ih_1 = bias_ih[16:32]
        bias_hh_1 = bias_hh[16:32]
        gates_0 = gates[:, 0:16]
        bias_ih_0 = bias_ih[0:16]
        bias_hh_0 = bias_hh[0:16]
        gates_2 = gates[:, 32:48]
        bias_ih_2 = bias_ih[32:48]
        bias_hh_2 = bias_hh[32:48]
        _c0 = torch.sigmoid(bias_hh_3 + bias_ih_3 + gates_3)
        _c1 = torch.sigmoid(bias_hh_1 + bias_ih_1 + gates_1)
        _c2 = _c1*c
        _c3 = torch.sigmoid(bias_hh_0 + bias_ih_0 + gates_0)
        _c4 = torch.tanh(bias_hh_2 + bias_ih_2 + gates_2)
        _c5 = _c3*_c4
        _c6 = torch.tanh(_c2 + _c5)
        _c7 = -_c0*_c6*d_h_new*(_c0 - 1)
        _c8 = -_c0*d_h_new*(_c6**2 - 1) + d_c_new
        _c9 = -_c8
        _c10 = _c2*_c9*(_c1 - 1)
        _c11 = _c5*_c9*(_c3 - 1)
        _c12 = _c3*_c9*(_c4**2 - 1)
        d_gates[:, 48:64] += _on_live(_c7, _live)
        d_bias_ih[48:64] += _sum_rows(_on_live(_c7, _live))
        d_bias_hh[48:64] += _sum_rows(_on_live(_c7, _live))
        d_gates[:, 16:32] += _on_live(_c10, _live)
        d_bias_ih[16:32] += _sum_rows(_on_live(_c10, _live))
        d_bias_hh[16:32] += _sum_rows(_on_live(_c10, _live))
        d_c += _on_live(_c1*_c8, _live)
        d_gates[:, 0:16] += _on_live(_c11, _live)
        d_bias_ih[0:16] += _sum_rows(_on_live(_c11, _live))
        d_bias_hh[0:16] += _sum_rows(_on_live(_c11, _live))
        d_gates[:, 32:48] += _on_live(_c12, _live)
        d_bias_ih[32:48] += _sum_rows(_on_live(_c12, _live))
        d_bias_hh[32:48] += _sum_rows(_on_live(_c12, _live))
        d_h += torch.mm(d_gates, weight_hh)
        d_h_new, d_c_new, = d_h, d_c,
    # after the loop, over all T*B rows: one GEMM for all steps where a loop would run one per step
    if _T > 0:
        x = _x_seq.reshape(_T * _B, 8)
        h = torch.cat([_h_init[None], _h_new_seq[:-1]]).view(_T * _B, 16)
        d_x = _d_x_seq.view(_T * _B, 8)
        d_gates = _d_gates_seq.view(_T * _B, 64)
        d_x += torch.mm(d_gates, weight_ih)
        d_weight_ih += torch.mm(d_gates.t(), x)
        d_weight_hh += torch.mm(d_gates.t(), h)
    return [_d_x_seq, d_h_new, d_c_new, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh]

