# symcell triton backend: LSTM
@triton.jit
def _bf16_dot(acc, a, w, _BF16_DOT: tl.constexpr):
    if _BF16_DOT:
        return tl.dot(a, w, acc, out_dtype=tl.float32)
    else:
        return tl.dot(a.to(tl.float32), w.to(tl.float32), acc)


@triton.jit
def _split_dot(acc, b, w, _BF16_DOT: tl.constexpr):
    hi = b.to(tl.bfloat16)
    return _pair_dot(acc, hi, (b - hi.to(tl.float32)).to(tl.bfloat16), w, _BF16_DOT)


@triton.jit
def _pair_dot(acc, hi, lo, w, _BF16_DOT: tl.constexpr):
    return _bf16_dot(_bf16_dot(acc, hi, w, _BF16_DOT), lo, w, _BF16_DOT)


@triton.jit
def _split_dots(acc_hi, acc_lo, b, w, _BF16_DOT: tl.constexpr):
    hi = b.to(tl.bfloat16)
    return _pair_dots(acc_hi, acc_lo, hi, (b - hi.to(tl.float32)).to(tl.bfloat16), w, _BF16_DOT)


@triton.jit
def _pair_dots(acc_hi, acc_lo, hi, lo, w, _BF16_DOT: tl.constexpr):
    # (each part's product into a sum of its own: DOT_SUMS)
    return _bf16_dot(acc_hi, hi, w, _BF16_DOT), _bf16_dot(acc_lo, lo, w, _BF16_DOT)

@triton.jit
def _tiles2(x, BN: tl.constexpr):
    a, b = tl.split(tl.permute(tl.reshape(x, (x.shape[0], 2, BN)), (0, 2, 1)))
    return a, b


@triton.jit
def _tiles4(x, BN: tl.constexpr):
    y = tl.permute(tl.reshape(x, (x.shape[0], 2, 2, BN)), (0, 3, 1, 2))   # [:, :, i, j]: tile 2 i + j
    a, b = tl.split(y)
    t0, t2 = tl.split(a)
    t1, t3 = tl.split(b)
    return t0, t1, t2, t3

@triton.jit
def _join2(t0, t1):
    return tl.reshape(tl.permute(tl.join(t0, t1), (0, 2, 1)), (t0.shape[0], 2 * t0.shape[1]))


@triton.jit
def _join4(t0, t1, t2, t3):
    y = tl.join(tl.join(t0, t2), tl.join(t1, t3))   # [:, :, i, j]: tile 2 i + j
    return tl.reshape(tl.permute(y, (0, 2, 3, 1)), (t0.shape[0], 4 * t0.shape[1]))

@triton.jit(do_not_specialize=['_T', '_B', '_I0', '_I1', '_K0', '_K1', '_P', '_ts_gates', '_ts_h_new', '_ts_c_new'])
def _forward_kernel(_T, _B, _I0, _I1, _K0, _K1, _P, _w_weight_hh, _ptr_bias_ih, _ptr_bias_hh, _ptr_gates, _ts_gates, _pp_h_new, _ps_h_new, _ptr_h_new, _ts_h_new, _pp_c_new, _ptr_c_new, _ts_c_new, _pre0, _len_ptr, _sync_ptr, _BB: tl.constexpr, _BN: tl.constexpr, _BK: tl.constexpr, _BKG: tl.constexpr, _MASKED: tl.constexpr, _WIDE: tl.constexpr, _PHASED: tl.constexpr, _DOT: tl.constexpr, _RESIDENT: tl.constexpr, _BF16_DOT: tl.constexpr):
    # 1 phase(s) a step, 1 grid barrier(s): steps _I0 <= _i < _I1, from phase _K0 of the first to _K1 of the last (all of them on a GPU; under the interpreter, from one barrier to the next)
    _pb = tl.program_id(0)   # this program's batch tile (axis 0: up to 2^31 - 1 of them)
    _pf = tl.program_id(1)   # its share of the features, of _P
    _rows = _pb * _BB + tl.arange(0, _BB)
    _rmask = _rows < _B
    if _MASKED:
        _lens = tl.load(_len_ptr + _rows, mask=_rmask, other=0).to(tl.int32)   # (each row's length)
    if _RESIDENT:   # this program's weight slices, read once, on chip for every step
        # gates: the columns of this program's tiles, and their rows of the weights
        _jpr0 = (1 - _pf + _P - 1) // _P   # this program's tiles in each block of 16 columns
        _ntr0 = 4 * _jpr0
        _qr0 = 0 + tl.arange(0, 4 * _BN) // _BN   # the program's tile of each column
        _cnr0 = (_qr0 // _jpr0) * 16 + (_pf + (_qr0 % _jpr0) * _P) * _BN + tl.arange(0, 4 * _BN) % _BN
        _cmr0 = (_qr0 < _ntr0) & (_cnr0 < 64)
        _kp16 = tl.arange(0, 16)
        _wr0_0_0 = tl.load(_w_weight_hh + _cnr0[None, :] * 16 + (0 + _kp16)[:, None], mask=_cmr0[None, :], other=0.0)
    if _RESIDENT:   # the parameters' values its region reads, loaded ahead (prefetched_leaves)
        _cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)
        _x_bias_ih_3 = tl.load(_ptr_bias_ih + 48 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_3 = tl.load(_ptr_bias_hh + 48 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_ih_1 = tl.load(_ptr_bias_ih + 16 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_1 = tl.load(_ptr_bias_hh + 16 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_ih_0 = tl.load(_ptr_bias_ih + 0 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_0 = tl.load(_ptr_bias_hh + 0 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_ih_2 = tl.load(_ptr_bias_ih + 32 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_2 = tl.load(_ptr_bias_hh + 32 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
    for _i in range(_I0, _I1):
        _t = _i
        if _MASKED:
            _live = _lens > _t   # (the rows still running)
        if _WIDE:
            _tw, _iw = tl.cast(_t, tl.int64), tl.cast(_i, tl.int64)
        else:
            _tw, _iw = _t, _i
        _r_gates = _ptr_gates + _tw * _ts_gates + _rows[:, None] * 64
        _r_h = _pp_h_new + (_iw % 2) * _B * 16 + _rows[:, None] * 16
        _r_h_new = _pp_h_new + ((_iw + 1) % 2) * _B * 16 + _rows[:, None] * 16
        _rk_h_new = _ptr_h_new + _tw * _ts_h_new + _rows[:, None] * 16
        _rs_h = _ps_h_new + (_iw % 2) * 2 * _B * 16 + _rows[:, None] * 16
        _rs_h_new = _ps_h_new + ((_iw + 1) % 2) * 2 * _B * 16 + _rows[:, None] * 16
        _r_c = _pp_c_new + (_iw % 2) * _B * 16 + _rows[:, None] * 16
        _r_c_new = _pp_c_new + ((_iw + 1) % 2) * _B * 16 + _rows[:, None] * 16
        _rk_c_new = _ptr_c_new + _tw * _ts_c_new + _rows[:, None] * 16
        if _RESIDENT:   # this step' values its region reads, loaded ahead (prefetched_leaves)
            _cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)
            _x_c = tl.load(_r_c + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
        if _RESIDENT:   # the matmuls' terms run before the loop, loaded ahead of the barrier
            _xp0 = tl.load(_pre0 + _tw * _B * 64 + _rows[:, None] * 64 + _cnr0[None, :], mask=_rmask[:, None] & _cmr0[None, :], other=0.0)
        if not _PHASED:
            if _P > 1:
                _goal = (tl.cast(_i, tl.int64) * 1 + 1) * _P
                tl.atomic_add(_sync_ptr + _pb, 1, sem="release", scope="gpu")
                _seen = tl.atomic_add(_sync_ptr + _pb, 0, sem="acquire", scope="gpu")
                while _seen < _goal:
                    _seen = tl.atomic_add(_sync_ptr + _pb, 0, sem="acquire", scope="gpu")
                tl.debug_barrier()
        if ((_i > _I0) | (_K0 <= 0)) & ((_i < _I1 - 1) | (0 <= _K1)):   # phase 0
            # gates = x[0:8] @ weight_ih[:, 0:8].T + h[0:16] @ weight_hh[:, 0:16].T
            if _RESIDENT:   # the program's one pass of tiles, against its slices on chip
                _acc4 = _xp0   # the terms run before the loop
                if _MASKED:
                    _acc4_s0 = tl.zeros_like(_acc4)
                    _acc4_s1 = tl.zeros_like(_acc4)
                    _kc16 = tl.arange(0, 16)
                    _acc4_s0, _acc4_s1 = _split_dots(_acc4_s0, _acc4_s1, tl.load(_r_h + (0 + _kc16)[None, :], mask=_rmask[:, None], other=0.0), _wr0_0_0, _BF16_DOT)
                    _acc4 += _acc4_s0 + _acc4_s1
                else:   # (the parts its writer stored: split_at_write)
                    _acc4_s0 = tl.zeros_like(_acc4)
                    _acc4_s1 = tl.zeros_like(_acc4)
                    _kc16 = tl.arange(0, 16)
                    _acc4_s0, _acc4_s1 = _pair_dots(_acc4_s0, _acc4_s1, tl.load(_rs_h + (0 + _kc16)[None, :], mask=_rmask[:, None], other=0.0), tl.load(_rs_h + _B * 16 + (0 + _kc16)[None, :], mask=_rmask[:, None], other=0.0), _wr0_0_0, _BF16_DOT)
                    _acc4 += _acc4_s0 + _acc4_s1
                tl.store(_r_gates + (_cnr0)[None, :], _acc4, mask=_rmask[:, None] & _cmr0[None, :])
                _g0_0, _g0_1, _g0_2, _g0_3 = _tiles4(_acc4, _BN)   # its tiles, for the region next
            else:
                _jp = (1 - _pf + _P - 1) // _P   # this program's tiles in each block of 16 columns
                _nt = 4 * _jp
                for _g0 in range(0, _nt, 4):
                    _q4 = _g0 + tl.arange(0, 4 * _BN) // _BN   # the program's tile of each column
                    _cn4 = (_q4 // _jp) * 16 + (_pf + (_q4 % _jp) * _P) * _BN + tl.arange(0, 4 * _BN) % _BN
                    _cm4 = (_q4 < _nt) & (_cn4 < 64)
                    _acc4 = tl.load(_pre0 + _tw * _B * 64 + _rows[:, None] * 64 + _cn4[None, :], mask=_rmask[:, None] & _cm4[None, :], other=0.0)   # the terms run before the loop
                    for _k0 in range(0, 16, _BK):
                        _ck = _k0 + tl.arange(0, _BK)
                        _a = tl.load(_r_h + (0 + _ck)[None, :], mask=_rmask[:, None] & (_ck < 16)[None, :], other=0.0)
                        _wt4 = tl.load(_w_weight_hh + _cn4[None, :] * 16 + (0 + _ck)[:, None], mask=(_ck < 16)[:, None] & _cm4[None, :], other=0.0).to(tl.float32)
                        _acc4 += tl.dot(_a, _wt4, input_precision=_DOT)
                    tl.store(_r_gates + (_cn4)[None, :], _acc4, mask=_rmask[:, None] & _cm4[None, :])
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote
            # fused region: 2 output(s) of 16 features
            for _j0 in range(_pf * _BN, 16, _P * _BN):
                _cj = _j0 + tl.arange(0, _BN)
                _m2 = _rmask[:, None] & (_cj < 16)[None, :]
                if _MASKED:
                    _mv = _m2 & _live[:, None]
                else:
                    _mv = _m2
                gates_3 = _g0_3 if _RESIDENT else tl.load(_r_gates + (48 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_3 = _x_bias_ih_3 if _RESIDENT else tl.load(_ptr_bias_ih + 48 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_3 = _x_bias_hh_3 if _RESIDENT else tl.load(_ptr_bias_hh + 48 + _cj, mask=_cj < 16, other=0.0)[None, :]
                gates_1 = _g0_1 if _RESIDENT else tl.load(_r_gates + (16 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_1 = _x_bias_ih_1 if _RESIDENT else tl.load(_ptr_bias_ih + 16 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_1 = _x_bias_hh_1 if _RESIDENT else tl.load(_ptr_bias_hh + 16 + _cj, mask=_cj < 16, other=0.0)[None, :]
                c = _x_c if _RESIDENT else tl.load(_r_c + (0 + _cj)[None, :], mask=_m2, other=0.0)
                gates_0 = _g0_0 if _RESIDENT else tl.load(_r_gates + (0 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_0 = _x_bias_ih_0 if _RESIDENT else tl.load(_ptr_bias_ih + 0 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_0 = _x_bias_hh_0 if _RESIDENT else tl.load(_ptr_bias_hh + 0 + _cj, mask=_cj < 16, other=0.0)[None, :]
                gates_2 = _g0_2 if _RESIDENT else tl.load(_r_gates + (32 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_2 = _x_bias_ih_2 if _RESIDENT else tl.load(_ptr_bias_ih + 32 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_2 = _x_bias_hh_2 if _RESIDENT else tl.load(_ptr_bias_hh + 32 + _cj, mask=_cj < 16, other=0.0)[None, :]
                _e0 = c*tl.sigmoid(bias_hh_1 + bias_ih_1 + gates_1) + tl.sigmoid(bias_hh_0 + bias_ih_0 + gates_0)*(2.0 * tl.sigmoid(2.0 * (bias_hh_2 + bias_ih_2 + gates_2)) - 1.0)
                _zero = tl.zeros((_BB, _BN), dtype=tl.float32)   # outputs of parameters alone still have rows
                _v0 = tl.sigmoid(bias_hh_3 + bias_ih_3 + gates_3)*(2.0 * tl.sigmoid(2.0 * (_e0)) - 1.0)
                if _MASKED:
                    _v0 = tl.where(_mv, _v0, 0.0)
                _o0 = _zero + (_v0)
                tl.store(_r_h_new + (0 + _cj)[None, :], _o0, mask=_m2)
                tl.store(_rk_h_new + (0 + _cj)[None, :], _o0, mask=_m2)
                if _RESIDENT and not _MASKED:   # its bfloat16 parts, for the matmul: split_at_write
                    _sh_h_new = (_o0).to(tl.bfloat16)
                    tl.store(_rs_h_new + (0 + _cj)[None, :], _sh_h_new, mask=_m2)
                    tl.store(_rs_h_new + _B * 16 + (0 + _cj)[None, :], ((_o0) - _sh_h_new.to(tl.float32)).to(tl.bfloat16), mask=_m2)
                _v1 = _e0
                if _MASKED:
                    _v1 = tl.where(_mv, _v1, 0.0)
                _o1 = _zero + (_v1)
                tl.store(_r_c_new + (0 + _cj)[None, :], _o1, mask=_m2)
                tl.store(_rk_c_new + (0 + _cj)[None, :], _o1, mask=_m2)
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote
            if _MASKED:   # rows past their own length keep their state
                _done = ~_live
                for _j0 in range(_pf * _BN, 16, _P * _BN):
                    _cj = _j0 + tl.arange(0, _BN)
                    _m2 = _rmask[:, None] & _done[:, None] & (_cj < 16)[None, :]
                    _old = tl.load(_r_h + (_cj)[None, :], mask=_m2, other=0.0)
                    tl.store(_r_h_new + (_cj)[None, :], _old, mask=_m2)
                    tl.store(_rk_h_new + (_cj)[None, :], _old, mask=_m2)
                for _j0 in range(_pf * _BN, 16, _P * _BN):
                    _cj = _j0 + tl.arange(0, _BN)
                    _m2 = _rmask[:, None] & _done[:, None] & (_cj < 16)[None, :]
                    _old = tl.load(_r_c + (_cj)[None, :], mask=_m2, other=0.0)
                    tl.store(_r_c_new + (_cj)[None, :], _old, mask=_m2)
                    tl.store(_rk_c_new + (_cj)[None, :], _old, mask=_m2)
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote

@triton.jit(do_not_specialize=['_T', '_B', '_I0', '_I1', '_K0', '_K1', '_P'])
def _backward_kernel(_T, _B, _I0, _I1, _K0, _K1, _P, _w_weight_hh, _ptr_bias_ih, _ptr_bias_hh, _ptr_c_new, _init_c, _ptr_gates, _ptr__dys_h, _ptr_d_gates, _pp_d_h, _pp_d_c, _pt0, _len_ptr, _sync_ptr, _BB: tl.constexpr, _BN: tl.constexpr, _BK: tl.constexpr, _BKG: tl.constexpr, _MASKED: tl.constexpr, _WIDE: tl.constexpr, _PHASED: tl.constexpr, _DOT: tl.constexpr, _RESIDENT: tl.constexpr, _BF16_DOT: tl.constexpr):
    # 2 phase(s) a step, 1 grid barrier(s): steps _I0 <= _i < _I1, from phase _K0 of the first to _K1 of the last (all of them on a GPU; under the interpreter, from one barrier to the next)
    _pb = tl.program_id(0)   # this program's batch tile (axis 0: up to 2^31 - 1 of them)
    _pf = tl.program_id(1)   # its share of the features, of _P
    _rows = _pb * _BB + tl.arange(0, _BB)
    _rmask = _rows < _B
    if _MASKED:
        _lens = tl.load(_len_ptr + _rows, mask=_rmask, other=0).to(tl.int32)   # (each row's length)
    if _RESIDENT:   # this program's weight slices, read once, on chip for every step
        # d_h[0:16] transposed: this program's tile of it, its columns of d_gates (its tiles of each block of 16), and their rows of the weight
        _ckr0 = _pf * _BN + tl.arange(0, _BN)
        _jpp0 = (1 - _pf + _P - 1) // _P   # this program's tiles in each block of 16 columns
        _ntp0 = 4 * _jpp0
        _qp0_0 = 0 + tl.arange(0, 1 * _BN) // _BN   # the program's tile of each column
        _cnp0_0 = (_qp0_0 // _jpp0) * 16 + (_pf + (_qp0_0 % _jpp0) * _P) * _BN + tl.arange(0, 1 * _BN) % _BN
        _cmp0_0 = (_qp0_0 < _ntp0) & (_cnp0_0 < 64)
        _qp0_1 = 1 + tl.arange(0, 1 * _BN) // _BN   # the program's tile of each column
        _cnp0_1 = (_qp0_1 // _jpp0) * 16 + (_pf + (_qp0_1 % _jpp0) * _P) * _BN + tl.arange(0, 1 * _BN) % _BN
        _cmp0_1 = (_qp0_1 < _ntp0) & (_cnp0_1 < 64)
        _qp0_2 = 2 + tl.arange(0, 1 * _BN) // _BN   # the program's tile of each column
        _cnp0_2 = (_qp0_2 // _jpp0) * 16 + (_pf + (_qp0_2 % _jpp0) * _P) * _BN + tl.arange(0, 1 * _BN) % _BN
        _cmp0_2 = (_qp0_2 < _ntp0) & (_cnp0_2 < 64)
        _qp0_3 = 3 + tl.arange(0, 1 * _BN) // _BN   # the program's tile of each column
        _cnp0_3 = (_qp0_3 // _jpp0) * 16 + (_pf + (_qp0_3 % _jpp0) * _P) * _BN + tl.arange(0, 1 * _BN) % _BN
        _cmp0_3 = (_qp0_3 < _ntp0) & (_cnp0_3 < 64)
        _kp16 = tl.arange(0, 16)
        _wr0_0_0_0 = tl.load(_w_weight_hh + _cnp0_0[:, None] * 16 + (0 + _kp16)[None, :], mask=_cmp0_0[:, None], other=0.0)
        _wr0_0_0_1 = tl.load(_w_weight_hh + _cnp0_1[:, None] * 16 + (0 + _kp16)[None, :], mask=_cmp0_1[:, None], other=0.0)
        _wr0_0_0_2 = tl.load(_w_weight_hh + _cnp0_2[:, None] * 16 + (0 + _kp16)[None, :], mask=_cmp0_2[:, None], other=0.0)
        _wr0_0_0_3 = tl.load(_w_weight_hh + _cnp0_3[:, None] * 16 + (0 + _kp16)[None, :], mask=_cmp0_3[:, None], other=0.0)
    if _RESIDENT:   # the parameters' values its region reads, loaded ahead (prefetched_leaves)
        _cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)
        _x_bias_ih_3 = tl.load(_ptr_bias_ih + 48 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_3 = tl.load(_ptr_bias_hh + 48 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_ih_1 = tl.load(_ptr_bias_ih + 16 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_1 = tl.load(_ptr_bias_hh + 16 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_ih_0 = tl.load(_ptr_bias_ih + 0 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_0 = tl.load(_ptr_bias_hh + 0 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_ih_2 = tl.load(_ptr_bias_ih + 32 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
        _x_bias_hh_2 = tl.load(_ptr_bias_hh + 32 + _cjx, mask=_cjx < 16, other=0.0)[None, :]
    _cr_d_h = tl.zeros((_BB, _BN), dtype=tl.float32)
    _n_x__dys_h = tl.zeros((_BB, _BN), dtype=tl.float32)
    _n_x_c = tl.zeros((_BB, _BN), dtype=tl.float32)
    _n_x_gates_0 = tl.zeros((_BB, _BN), dtype=tl.float32)
    _n_x_gates_1 = tl.zeros((_BB, _BN), dtype=tl.float32)
    _n_x_gates_2 = tl.zeros((_BB, _BN), dtype=tl.float32)
    _n_x_gates_3 = tl.zeros((_BB, _BN), dtype=tl.float32)
    _cr_d_c = tl.zeros((_BB, _BN), dtype=tl.float32)
    for _i in range(_I0, _I1):
        _t = _T - 1 - _i
        if _MASKED:
            _live = _lens > _t   # (the rows still running)
        if _WIDE:
            _tw, _iw = tl.cast(_t, tl.int64), tl.cast(_i, tl.int64)
        else:
            _tw, _iw = _t, _i
        _r_c = _ptr_c_new + (_tw - 1) * _B * 16 + _rows[:, None] * 16
        _ri_c = _init_c + _rows[:, None] * 16
        _r_gates = _ptr_gates + _tw * _B * 64 + _rows[:, None] * 64
        _r__dys_h = _ptr__dys_h + _tw * _B * 16 + _rows[:, None] * 16
        _r_d_gates = _ptr_d_gates + _tw * _B * 64 + _rows[:, None] * 64
        _r_d_h_new = _pp_d_h + (_iw % 2) * _B * 16 + _rows[:, None] * 16
        _r_d_h = _pp_d_h + ((_iw + 1) % 2) * _B * 16 + _rows[:, None] * 16
        _r_d_c_new = _pp_d_c + (_iw % 2) * _B * 16 + _rows[:, None] * 16
        _r_d_c = _pp_d_c + ((_iw + 1) % 2) * _B * 16 + _rows[:, None] * 16
        if _RESIDENT:   # this step' values its region reads, loaded ahead (prefetched_leaves)
            _cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)
            if _i > _I0:   # (loaded during the step before, ahead of its barrier)
                _x__dys_h = _n_x__dys_h
                _x_gates_3 = _n_x_gates_3
                _x_gates_1 = _n_x_gates_1
                _x_c = _n_x_c
                _x_gates_0 = _n_x_gates_0
                _x_gates_2 = _n_x_gates_2
            else:
                _x__dys_h = tl.load(_r__dys_h + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _x_gates_3 = tl.load(_r_gates + (48 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _x_gates_1 = tl.load(_r_gates + (16 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _x_c = tl.load(_r_c + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :] & ((_cjx * 0 + _t) > 0)[None, :], other=0.0) + tl.load(_ri_c + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :] & ((_cjx * 0 + _t) == 0)[None, :], other=0.0)
                _x_gates_0 = tl.load(_r_gates + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _x_gates_2 = tl.load(_r_gates + (32 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
        if ((_i > _I0) | (_K0 <= 0)) & ((_i < _I1 - 1) | (0 <= _K1)):   # phase 0
            if _MASKED:
                for _j0 in range(_pf * _BN, 16, _P * _BN):
                    _cj = _j0 + tl.arange(0, _BN)
                    _m2 = _rmask[:, None] & (_cj < 16)[None, :]
                    tl.store(_r_d_h + (_cj)[None, :], tl.zeros((_BB, _BN), dtype=tl.float32), mask=_m2)
            if _MASKED:
                for _j0 in range(_pf * _BN, 16, _P * _BN):
                    _cj = _j0 + tl.arange(0, _BN)
                    _m2 = _rmask[:, None] & (_cj < 16)[None, :]
                    tl.store(_r_d_c + (_cj)[None, :], tl.zeros((_BB, _BN), dtype=tl.float32), mask=_m2)
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote
            _fw_d_h_new = tl.zeros((_BB, _BN), dtype=tl.float32)   # (the sum, for the region after: forwarded)
            for _j0 in range(_pf * _BN, 16, _P * _BN):
                _cj = _j0 + tl.arange(0, _BN)
                _m2 = _rmask[:, None] & (_cj < 16)[None, :]
                _ga = _r_d_h_new + (_cj)[None, :]
                if _RESIDENT and not _MASKED:
                    if _i > _I0:
                        _was = _cr_d_h
                    else:
                        _was = tl.load(_ga, mask=_m2, other=0.0)
                else:
                    _was = tl.load(_ga, mask=_m2, other=0.0)
                _fw_d_h_new = _was + (_x__dys_h if _RESIDENT else tl.load(_r__dys_h + (_cj)[None, :], mask=_m2, other=0.0))
                tl.store(_ga, _fw_d_h_new, mask=_m2)
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote
            if _MASKED:   # ended rows: the carried cotangent passes to the previous state, the step sees none
                _done = ~_live
                for _j0 in range(_pf * _BN, 16, _P * _BN):
                    _cj = _j0 + tl.arange(0, _BN)
                    _m2 = _rmask[:, None] & _done[:, None] & (_cj < 16)[None, :]
                    _dn = tl.load(_r_d_h_new + (_cj)[None, :], mask=_m2, other=0.0)
                    tl.store(_r_d_h + (_cj)[None, :], _dn, mask=_m2)
                    tl.store(_r_d_h_new + (_cj)[None, :], tl.zeros((_BB, _BN), dtype=tl.float32), mask=_m2)
                for _j0 in range(_pf * _BN, 16, _P * _BN):
                    _cj = _j0 + tl.arange(0, _BN)
                    _m2 = _rmask[:, None] & _done[:, None] & (_cj < 16)[None, :]
                    _dn = tl.load(_r_d_c_new + (_cj)[None, :], mask=_m2, other=0.0)
                    tl.store(_r_d_c + (_cj)[None, :], _dn, mask=_m2)
                    tl.store(_r_d_c_new + (_cj)[None, :], tl.zeros((_BB, _BN), dtype=tl.float32), mask=_m2)
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote
            # fused region: 5 output(s) of 16 features
            _dg0_3 = tl.zeros((_BB, _BN), dtype=tl.float32)   # (this tile, for the partial products: joined)
            _dg0_1 = tl.zeros((_BB, _BN), dtype=tl.float32)   # (this tile, for the partial products: joined)
            _dg0_0 = tl.zeros((_BB, _BN), dtype=tl.float32)   # (this tile, for the partial products: joined)
            _dg0_2 = tl.zeros((_BB, _BN), dtype=tl.float32)   # (this tile, for the partial products: joined)
            for _j0 in range(_pf * _BN, 16, _P * _BN):
                _cj = _j0 + tl.arange(0, _BN)
                _m2 = _rmask[:, None] & (_cj < 16)[None, :]
                if _MASKED:
                    _mv = _m2 & _live[:, None]
                else:
                    _mv = _m2
                gates_3 = _x_gates_3 if _RESIDENT else tl.load(_r_gates + (48 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_3 = _x_bias_ih_3 if _RESIDENT else tl.load(_ptr_bias_ih + 48 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_3 = _x_bias_hh_3 if _RESIDENT else tl.load(_ptr_bias_hh + 48 + _cj, mask=_cj < 16, other=0.0)[None, :]
                gates_1 = _x_gates_1 if _RESIDENT else tl.load(_r_gates + (16 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_1 = _x_bias_ih_1 if _RESIDENT else tl.load(_ptr_bias_ih + 16 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_1 = _x_bias_hh_1 if _RESIDENT else tl.load(_ptr_bias_hh + 16 + _cj, mask=_cj < 16, other=0.0)[None, :]
                c = _x_c if _RESIDENT else tl.load(_r_c + (0 + _cj)[None, :], mask=_m2 & ((_cj * 0 + _t) > 0)[None, :], other=0.0) + tl.load(_ri_c + (0 + _cj)[None, :], mask=_m2 & ((_cj * 0 + _t) == 0)[None, :], other=0.0)
                gates_0 = _x_gates_0 if _RESIDENT else tl.load(_r_gates + (0 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_0 = _x_bias_ih_0 if _RESIDENT else tl.load(_ptr_bias_ih + 0 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_0 = _x_bias_hh_0 if _RESIDENT else tl.load(_ptr_bias_hh + 0 + _cj, mask=_cj < 16, other=0.0)[None, :]
                gates_2 = _x_gates_2 if _RESIDENT else tl.load(_r_gates + (32 + _cj)[None, :], mask=_m2, other=0.0)
                bias_ih_2 = _x_bias_ih_2 if _RESIDENT else tl.load(_ptr_bias_ih + 32 + _cj, mask=_cj < 16, other=0.0)[None, :]
                bias_hh_2 = _x_bias_hh_2 if _RESIDENT else tl.load(_ptr_bias_hh + 32 + _cj, mask=_cj < 16, other=0.0)[None, :]
                d_h_new = _fw_d_h_new if _RESIDENT and not _MASKED else tl.load(_r_d_h_new + (0 + _cj)[None, :], mask=_m2, other=0.0)
                if _RESIDENT and not _MASKED:
                    if (_i > _I0) & ((_i - 1 > _I0) | (_K0 <= 0)):
                        d_c_new = _cr_d_c
                    else:
                        d_c_new = tl.load(_r_d_c_new + (0 + _cj)[None, :], mask=_m2, other=0.0)
                else:
                    d_c_new = tl.load(_r_d_c_new + (0 + _cj)[None, :], mask=_m2, other=0.0)
                _c0 = tl.sigmoid(bias_hh_3 + bias_ih_3 + gates_3)
                _c1 = tl.sigmoid(bias_hh_1 + bias_ih_1 + gates_1)
                _c2 = _c1*c
                _c3 = tl.sigmoid(bias_hh_0 + bias_ih_0 + gates_0)
                _c4 = (2.0 * tl.sigmoid(2.0 * (bias_hh_2 + bias_ih_2 + gates_2)) - 1.0)
                _c5 = _c3*_c4
                _c6 = (2.0 * tl.sigmoid(2.0 * (_c2 + _c5)) - 1.0)
                _c7 = -_c0*_c6*d_h_new*(_c0 - 1.0)
                _c8 = -_c0*d_h_new*((_c6*_c6) - 1.0) + d_c_new
                _c9 = -_c8
                _c10 = _c2*_c9*(_c1 - 1.0)
                _c11 = _c5*_c9*(_c3 - 1.0)
                _c12 = _c3*_c9*((_c4*_c4) - 1.0)
                _zero = tl.zeros((_BB, _BN), dtype=tl.float32)   # outputs of parameters alone still have rows
                _v0 = _c7
                if _MASKED:
                    _v0 = tl.where(_mv, _v0, 0.0)
                _o0 = _zero + (_v0)
                tl.store(_r_d_gates + (48 + _cj)[None, :], _o0, mask=_m2)
                _dg0_3 = _o0
                _v1 = _c10
                if _MASKED:
                    _v1 = tl.where(_mv, _v1, 0.0)
                _o1 = _zero + (_v1)
                tl.store(_r_d_gates + (16 + _cj)[None, :], _o1, mask=_m2)
                _dg0_1 = _o1
                _v2 = _c1*_c8
                if _MASKED:
                    _v2 = tl.where(_mv, _v2, 0.0)
                if _MASKED:   # (ended rows may have passed a cotangent into it)
                    _ga = _r_d_c + (0 + _cj)[None, :]
                    tl.store(_ga, tl.load(_ga, mask=_m2, other=0.0) + (_v2), mask=_m2)
                else:   # (it holds the step's zeros)
                    _o2 = _zero + (_v2)
                    tl.store(_r_d_c + (0 + _cj)[None, :], _o2, mask=_m2)
                    _cr_d_c = _o2   # (for the next step: carried_regions)
                _v3 = _c11
                if _MASKED:
                    _v3 = tl.where(_mv, _v3, 0.0)
                _o3 = _zero + (_v3)
                tl.store(_r_d_gates + (0 + _cj)[None, :], _o3, mask=_m2)
                _dg0_0 = _o3
                _v4 = _c12
                if _MASKED:
                    _v4 = tl.where(_mv, _v4, 0.0)
                _o4 = _zero + (_v4)
                tl.store(_r_d_gates + (32 + _cj)[None, :], _o4, mask=_m2)
                _dg0_2 = _o4
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote
            # d_h[0:16] += d_gates @ weight_hh[:, 0:16], transposed: this program's part, summed after the barrier
            if _RESIDENT:
                _dh0 = _dg0_0.to(tl.bfloat16)
                _dl0 = (_dg0_0 - _dh0.to(tl.float32)).to(tl.bfloat16)
                _dh1 = _dg0_1.to(tl.bfloat16)
                _dl1 = (_dg0_1 - _dh1.to(tl.float32)).to(tl.bfloat16)
                _dh2 = _dg0_2.to(tl.bfloat16)
                _dl2 = (_dg0_2 - _dh2.to(tl.float32)).to(tl.bfloat16)
                _dh3 = _dg0_3.to(tl.bfloat16)
                _dl3 = (_dg0_3 - _dh3.to(tl.float32)).to(tl.bfloat16)
                _pw = _pt0 + (((_iw % 2) * tl.num_programs(0) + _pb) * _P + _pf) * _BB * 16 + tl.arange(0, _BB)[:, None] * 16
                _kc16 = tl.arange(0, 16)
                tl.store(_pw + (0 + _kc16)[None, :], _pair_dot(_pair_dot(_pair_dot(_pair_dot(tl.zeros((_BB, 16), dtype=tl.float32), _dh0, _dl0, _wr0_0_0_0, _BF16_DOT), _dh1, _dl1, _wr0_0_0_1, _BF16_DOT), _dh2, _dl2, _wr0_0_0_2, _BF16_DOT), _dh3, _dl3, _wr0_0_0_3, _BF16_DOT))
                tl.debug_barrier()
        if _RESIDENT:   # the next step's read-only values, loaded ahead of this step's barrier
            if _i + 1 < _I1:
                _cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)
                _n_x__dys_h = tl.load(_r__dys_h - 1 * _B * 16 + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _n_x_gates_3 = tl.load(_r_gates - 1 * _B * 64 + (48 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _n_x_gates_1 = tl.load(_r_gates - 1 * _B * 64 + (16 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _n_x_c = tl.load(_r_c - 1 * _B * 16 + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :] & ((_cjx * 0 + (_t - 1)) > 0)[None, :], other=0.0) + tl.load(_ri_c + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :] & ((_cjx * 0 + (_t - 1)) == 0)[None, :], other=0.0)
                _n_x_gates_0 = tl.load(_r_gates - 1 * _B * 64 + (0 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
                _n_x_gates_2 = tl.load(_r_gates - 1 * _B * 64 + (32 + _cjx)[None, :], mask=_rmask[:, None] & (_cjx < 16)[None, :], other=0.0)
        if not _PHASED:
            if _P > 1:
                _goal = (tl.cast(_i, tl.int64) * 1 + 1) * _P
                tl.atomic_add(_sync_ptr + _pb, 1, sem="release", scope="gpu")
                _seen = tl.atomic_add(_sync_ptr + _pb, 0, sem="acquire", scope="gpu")
                while _seen < _goal:
                    _seen = tl.atomic_add(_sync_ptr + _pb, 0, sem="acquire", scope="gpu")
                tl.debug_barrier()
        if ((_i > _I0) | (_K0 <= 1)) & ((_i < _I1 - 1) | (1 <= _K1)):   # phase 1
            # d_h[0:16] += d_gates @ weight_hh[:, 0:16]
            if _RESIDENT:   # the program's one tile, against its slice on chip
                _acc = tl.zeros((_BB, _BN), dtype=tl.float32)
                _pr = _pt0 + ((_iw % 2) * tl.num_programs(0) + _pb) * _P * _BB * 16 + tl.arange(0, _BB)[:, None] * 16 + _ckr0[None, :]
                for _p in tl.static_range(1):   # (_P <= 1)
                    _acc += tl.load(_pr + _p * _BB * 16, mask=(_ckr0 * 0 + _p < _P)[None, :], other=0.0)
                _zero = tl.zeros((_BB, _BN), dtype=tl.float32)
                if _MASKED:   # (ended rows may have passed a cotangent into it)
                    _ga = _r_d_h + (0 + _ckr0)[None, :]
                    tl.store(_ga, tl.load(_ga, mask=_rmask[:, None] & (_ckr0 < 16)[None, :], other=0.0) + (_acc), mask=_rmask[:, None] & (_ckr0 < 16)[None, :])
                else:   # (it holds the step's zeros)
                    _og = _zero + (_acc)
                    tl.store(_r_d_h + (0 + _ckr0)[None, :], _og, mask=_rmask[:, None] & (_ckr0 < 16)[None, :])
                    _cr_d_h = _og   # (for the next step: carried_sums)
            else:
                for _k0 in range(_pf * _BN, 16, _P * _BN):
                    _ck = _k0 + tl.arange(0, _BN)
                    _acc = tl.zeros((_BB, _BN), dtype=tl.float32)
                    for _n0 in range(0, 64, _BKG):
                        _cn = _n0 + tl.arange(0, _BKG)
                        _dy = tl.load(_r_d_gates + (_cn)[None, :], mask=_rmask[:, None] & (_cn < 64)[None, :], other=0.0)
                        _wt = tl.load(_w_weight_hh + _cn[:, None] * 16 + (0 + _ck)[None, :], mask=(_cn < 64)[:, None] & (_ck < 16)[None, :], other=0.0).to(tl.float32)
                        _acc += tl.dot(_dy, _wt, input_precision=_DOT)
                    _zero = tl.zeros((_BB, _BN), dtype=tl.float32)
                    if _MASKED:   # (ended rows may have passed a cotangent into it)
                        _ga = _r_d_h + (0 + _ck)[None, :]
                        tl.store(_ga, tl.load(_ga, mask=_rmask[:, None] & (_ck < 16)[None, :], other=0.0) + (_acc), mask=_rmask[:, None] & (_ck < 16)[None, :])
                    else:   # (it holds the step's zeros)
                        _og = _zero + (_acc)
                        tl.store(_r_d_h + (0 + _ck)[None, :], _og, mask=_rmask[:, None] & (_ck < 16)[None, :])
            tl.debug_barrier()   # the next statement reads what other threads of this program wrote

def forward(_xs, _inits, _params, _save, _lengths=None, _skip=()):
    _x_seq, = _xs
    _h_init, _c_init, = _inits
    weight_ih, weight_hh, bias_ih, bias_hh, = _params
    _T, _B = _x_seq.shape[0], _x_seq.shape[1]
    _grid = triton.cdiv(_B, 16)   # batch tiles
    _gates_seq = _x_seq.new_empty(((_T if _save else 1), _B, 64)); _gates_ts = (_B * 64 if _save else 0)
    _h_new_pp = _x_seq.new_empty((2, _B, 16)); _h_new_pp[0] = _h_init   # the carry's two slots
    _h_new_seq = _x_seq.new_empty((_T, _B, 16)); _h_new_ts = _B * 16
    _c_new_pp = _x_seq.new_empty((2, _B, 16)); _c_new_pp[0] = _c_init   # the carry's two slots
    _c_new_seq = _x_seq.new_empty(((_T if _save else 1), _B, 16)); _c_new_ts = _B * 16 if _save else 0
    if _T > 0:
        _len = _lengths if _lengths is not None else _x_seq.new_zeros((1,), dtype=torch.int64)
        _pre0 = _mm(_x_seq.reshape(_T * _B, 8), weight_ih.t())   # the terms of gates on sequences, every step at once
        _weight_hh_w16 = _low(weight_hh)   # a 16-bit module's weights in its dtype (exact), else as they are
        _P = _programs(_x_seq, 1, _grid)   # programs splitting a batch tile's features
        _sync = _x_seq.new_zeros((_grid,), dtype=torch.int64)   # a barrier counter a batch tile
        _resident = _resident_slices(_P, 1, 2048, _weight_hh_w16)   # 2048 bytes on chip a program
        _h_new_ps = _parts(_h_new_pp[0]) if _resident else _x_seq.new_empty((1,))   # the carry's bfloat16 parts, two slots
        _launch(_forward_kernel, (_grid, _P), _T, _B, _x_seq, _weight_hh_w16, bias_ih, bias_hh, _gates_seq, _gates_ts, _h_new_pp, _h_new_ps, _h_new_seq, _h_new_ts, _c_new_pp, _c_new_seq, _c_new_ts, _pre0, _len, _sync, _phases=1, _first_barrier=True, _BB=16, _BN=16, _MASKED=_lengths is not None, _WIDE=_wide(_weight_hh_w16, bias_ih, bias_hh, _gates_seq, _gates_ts, _h_new_pp, _h_new_ps, _h_new_seq, _h_new_ts, _c_new_pp, _c_new_seq, _c_new_ts, _pre0), _RESIDENT=_resident, num_warps=4)
    h = _h_new_pp[_T % 2].clone()   # the carry after the last step
    c = _c_new_pp[_T % 2].clone()   # the carry after the last step
    return [_h_new_seq, h, c] + ([_gates_seq, _c_new_seq] if _save else [])

def backward(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _lengths=None, _skip=()):
    __dys_h_seq, = _d_ys
    _d_h_new_init, _d_c_new_init, = _d_finals
    _x_seq, = _xs
    _h_init, _c_init, = _inits
    weight_ih, weight_hh, bias_ih, bias_hh, = _params
    _h_new_seq, = _ys
    _gates_seq, _c_new_seq, = _res
    # _skip: one flag per argument tensor (all zeros), then one per result (not wanted); those not given are off
    _unwanted_d_x = len(_skip) > 13 and bool(_skip[13])
    _unwanted_d_weight_ih = len(_skip) > 16 and bool(_skip[16])
    _unwanted_d_weight_hh = len(_skip) > 17 and bool(_skip[17])
    _T, _B = _x_seq.shape[0], _x_seq.shape[1]
    _d_x_seq = _x_seq.new_zeros((_T, _B, 8))
    _d_gates_seq = _x_seq.new_zeros((_T, _B, 64))
    d_weight_ih = _x_seq.new_zeros((64, 8,))
    d_weight_hh = _x_seq.new_zeros((64, 16,))
    d_bias_ih = _x_seq.new_zeros((64,))
    d_bias_hh = _x_seq.new_zeros((64,))
    _grid = triton.cdiv(_B, 16)   # batch tiles
    _d_h_pp = _x_seq.new_empty((2, _B, 16)); _d_h_pp[0] = _d_h_new_init   # the carry's two slots
    _d_c_pp = _x_seq.new_empty((2, _B, 16)); _d_c_pp[0] = _d_c_new_init   # the carry's two slots
    if _T > 0:
        _len = _lengths if _lengths is not None else _x_seq.new_zeros((1,), dtype=torch.int64)
        _weight_hh_w16 = _low(weight_hh)   # a 16-bit module's weights in its dtype (exact), else as they are
        _P = _programs(_x_seq, 1, _grid)   # programs splitting a batch tile's features
        _sync = _x_seq.new_zeros((_grid,), dtype=torch.int64)   # a barrier counter a batch tile
        _resident = _resident_slices(_P, 1, 2048, _weight_hh_w16)   # 2048 bytes on chip a program
        _d_h_pt0 = _x_seq.new_empty((2, _grid, _P, 16, 16) if _resident else (1,))   # each program's partial d_h, transposed
        _launch(_backward_kernel, (_grid, _P), _T, _B, _x_seq, _weight_hh_w16, bias_ih, bias_hh, _c_new_seq, _c_init, _gates_seq, __dys_h_seq, _d_gates_seq, _d_h_pp, _d_c_pp, _d_h_pt0, _len, _sync, _phases=2, _first_barrier=False, _BB=16, _BN=16, _MASKED=_lengths is not None, _WIDE=_wide(_weight_hh_w16, bias_ih, bias_hh, _c_new_seq, _c_init, _gates_seq, __dys_h_seq, _d_gates_seq, _d_h_pp, _d_c_pp, _d_h_pt0), _RESIDENT=_resident, num_warps=4)
    d_h_new = _d_h_pp[_T % 2].clone()   # the carry after the last step
    d_c_new = _d_c_pp[_T % 2].clone()   # the carry after the last step
    # after the loop, over all T*B rows: one GEMM for all steps where a loop would run one per step
    if _T > 0:
        x = _x_seq.reshape(_T * _B, 8)
        h = torch.cat([_h_init[None], _h_new_seq[:-1]]).view(_T * _B, 16)
        d_x = _d_x_seq.view(_T * _B, 8)
        d_gates = _d_gates_seq.view(_T * _B, 64)
        _live = _live_rows(_lengths, _T)   # (with lengths: the rows whose sequence runs at their step)
        # fused pointwise region: 8 output(s) of 16 features
        _rs0 = d_gates[:, 48:64]
        _rs1 = d_gates[:, 16:32]
        _rs2 = d_gates[:, 0:16]
        _rs3 = d_gates[:, 32:48]
        d_bias_ih[48:64] += _sum_rows(_on_live(_rs0, _live))
        d_bias_hh[48:64] += _sum_rows(_on_live(_rs0, _live))
        d_bias_ih[16:32] += _sum_rows(_on_live(_rs1, _live))
        d_bias_hh[16:32] += _sum_rows(_on_live(_rs1, _live))
        d_bias_ih[0:16] += _sum_rows(_on_live(_rs2, _live))
        d_bias_hh[0:16] += _sum_rows(_on_live(_rs2, _live))
        d_bias_ih[32:48] += _sum_rows(_on_live(_rs3, _live))
        d_bias_hh[32:48] += _sum_rows(_on_live(_rs3, _live))
        if not (_unwanted_d_x):
            d_x += _mm(d_gates, weight_ih)
        if not (_unwanted_d_weight_ih):
            d_weight_ih += _mm(d_gates.t(), x)
        if not (_unwanted_d_weight_hh):
            d_weight_hh += _mm(d_gates.t(), h)
    return [_d_x_seq, d_h_new, d_c_new, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh]

