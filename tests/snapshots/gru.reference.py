# symcell reference backend: GRU
def forward(_xs, _inits, _params, _save, _lengths=None):
    _x_seq, = _xs
    _h_init, = _inits
    weight_ih, weight_hh, bias_ih, bias_hh, = _params
    _T, _B = _x_seq.shape[0], _x_seq.shape[1]
    # before the loop, over all T*B rows: what depends on no carried value
    x = _x_seq.reshape(_T * _B, 8)
    weight_ih_x = torch.mm(x, weight_ih.t())
    _weight_ih_x_seq = weight_ih_x.view(_T, _B, 48)
    _h_new_seq = _x_seq.new_empty((_T, _B, 16))
    _weight_hh_h_seq = _x_seq.new_empty((_T, _B, 48)) if _save else None
    h, = _h_init,
    for _t in range(_T):
        _live = None if _lengths is None else (_t < _lengths)[:, None]   # (the rows still running)
        weight_ih_x = _weight_ih_x_seq[_t]
        weight_hh_h = torch.mm(h, weight_hh.t())
        # fused pointwise region: 1 output(s) of 16 features
        weight_ih_x_1 = weight_ih_x[:, 16:32]
        bias_ih_1 = bias_ih[16:32]
        weight_hh_h_1 = weight_hh_h[:, 16:32]
        bias_hh_1 = bias_hh[16:32]
        weight_ih_x_2 = weight_ih_x[:, 32:48]
        bias_ih_2 = bias_ih[32:48]
        weight_ih_x_0 = weight_ih_x[:, 0:16]
        bias_ih_0 = bias_ih[0:16]
        weight_hh_h_0 = weight_hh_h[:, 0:16]
        bias_hh_0 = bias_hh[0:16]
        weight_hh_h_2 = weight_hh_h[:, 32:48]
        bias_hh_2 = bias_hh[32:48]
        _e0 = torch.sigmoid(bias_hh_1 + bias_ih_1 + weight_hh_h_1 + weight_ih_x_1)
        h_new = _on_live(_e0*h + (1 - _e0)*torch.tanh(bias_ih_2 + weight_ih_x_2 + (bias_hh_2 + weight_hh_h_2)*torch.sigmoid(bias_hh_0 + bias_ih_0 + weight_hh_h_0 + weight_ih_x_0)), _live)
        if _live is not None:   # rows past their length keep their state
            h_new = torch.where(_live, h_new, h)
        _h_new_seq[_t] = h_new
        if _save:
            _weight_hh_h_seq[_t] = weight_hh_h
        h, = h_new,
    return [_h_new_seq, h] + ([_weight_ih_x_seq, _weight_hh_h_seq] if _save else [])

def backward(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _lengths=None):
    __dys_h_seq, = _d_ys
    _d_h_new_init, = _d_finals
    _x_seq, = _xs
    _h_init, = _inits
    weight_ih, weight_hh, bias_ih, bias_hh, = _params
    _h_new_seq, = _ys
    _weight_ih_x_seq, _weight_hh_h_seq, = _res
    _T, _B = _x_seq.shape[0], _x_seq.shape[1]
    _d_x_seq = _x_seq.new_zeros((_T, _B, 8))
    _d_weight_ih_x_seq = _x_seq.new_zeros((_T, _B, 48))
    _d_weight_hh_h_seq = _x_seq.new_zeros((_T, _B, 48))
    d_weight_ih = _x_seq.new_zeros((48, 8,))
    d_weight_hh = _x_seq.new_zeros((48, 16,))
    d_bias_ih = _x_seq.new_zeros((48,))
    d_bias_hh = _x_seq.new_zeros((48,))
    d_h_new, = _d_h_new_init,
    for _t in reversed(range(_T)):
        _live = None if _lengths is None else (_t < _lengths)[:, None]   # (the rows still running)
        h = _h_new_seq[_t - 1] if _t > 0 else _h_init
        weight_ih_x = _weight_ih_x_seq[_t]
        weight_hh_h = _weight_hh_h_seq[_t]
        _dys_h = __dys_h_seq[_t]
        d_h = _x_seq.new_zeros((_B, 16))
        d_weight_ih_x = _d_weight_ih_x_seq[_t]
        d_weight_hh_h = _d_weight_hh_h_seq[_t]
        d_h_new = d_h_new + _dys_h
        if _live is not None:   # ended rows: the carried cotangent passes to the previous state
            d_h = torch.where(_live, d_h, d_h_new)
            d_h_new = torch.where(_live, d_h_new, torch.zeros_like(d_h_new))
        # fused pointwise region: 13 output(s) of 16 features
        weight_ih_x_1 = weight_ih_x[:, 16:32]
        bias_ih_1 = bias_ih[16:32]
        weight_hh_h_1 = weight_hh_h[:, 16:32]
        bias_hh_1 = bias_hh[16:32]
        weight_ih_x_2 = weight_ih_x[:, 32:48]
        bias_ih_2 = bias_ih[32:48]
        weight_ih_x_0 = weight_ih_x[:, 0:16]
        bias_ih_0 = bias_ih[0:16]
        weight_hh_h_0 = weight_hh_h[:, 0:16]
        bias_hh_0 = bias_hh[0:16]
        weight_hh_h_2 = weight_hh_h[:, 32:48]
        bias_hh_2 = bias_hh[32:48]
        _c0 = torch.sigmoid(bias_hh_1 + bias_ih_1 + weight_hh_h_1 + weight_ih_x_1)
        _c1 = _c0 - 1
        _c2 = torch.sigmoid(bias_hh_0 + bias_ih_0 + weight_hh_h_0 + weight_ih_x_0)
        _c3 = _c2*(bias_hh_2 + weight_hh_h_2)
        _c4 = torch.tanh(_c3 + bias_ih_2 + weight_ih_x_2)
        _c5 = _c0*d_h_new
        _c6 = -_c1*_c5*(-_c4 + h)
        _c7 = _c1*d_h_new*(_c4**2 - 1)
        _c8 = -_c3*_c7*(_c2 - 1)
        _c9 = _c2*_c7
        d_weight_ih_x[:, 16:32] += _on_live(_c6, _live)
        d_bias_ih[16:32] += _sum_rows(_on_live(_c6, _live))
        d_weight_hh_h[:, 16:32] += _on_live(_c6, _live)
        d_bias_hh[16:32] += _sum_rows(_on_live(_c6, _live))
        d_weight_ih_x[:, 32:48] += _on_live(_c7, _live)
        d_bias_ih[32:48] += _sum_rows(_on_live(_c7, _live))
        d_weight_ih_x[:, 0:16] += _on_live(_c8, _live)
        d_bias_ih[0:16] += _sum_rows(_on_live(_c8, _live))
        d_weight_hh_h[:, 0:16] += _on_live(_c8, _live)
        d_bias_hh[0:16] += _sum_rows(_on_live(_c8, _live))
        d_weight_hh_h[:, 32:48] += _on_live(_c9, _live)
        d_bias_hh[32:48] += _sum_rows(_on_live(_c9, _live))
        d_h += _on_live(_c5, _live)
        d_h += torch.mm(d_weight_hh_h, weight_hh)
        d_h_new, = d_h,
    # after the loop, over all T*B rows: one GEMM for all steps where a loop would run one per step
    if _T > 0:
        x = _x_seq.reshape(_T * _B, 8)
        h = torch.cat([_h_init[None], _h_new_seq[:-1]]).view(_T * _B, 16)
        d_x = _d_x_seq.view(_T * _B, 8)
        d_weight_ih_x = _d_weight_ih_x_seq.view(_T * _B, 48)
        d_weight_hh_h = _d_weight_hh_h_seq.view(_T * _B, 48)
        d_weight_hh += torch.mm(d_weight_hh_h.t(), h)
        d_x += torch.mm(d_weight_ih_x, weight_ih)
        d_weight_ih += torch.mm(d_weight_ih_x.t(), x)
    return [_d_x_seq, d_h_new, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh]

