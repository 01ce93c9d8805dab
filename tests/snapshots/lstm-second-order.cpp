// symcell cpp backend: LSTM
// _dims: H, I
// names: _dim_D a dimension; _n_v the features per row of buffer v; _ld_W the row stride of matrix W;
// _seq_v a (T, B, n) sequence (row block t is step t); _init_v a carried value's initial value;
// _t_v, _res_v, _buf_v, _pp_v the tensors behind an allocated sequence, a kept residual, per-step scratch and
// the two alternating slots of a carried value; _wt_m the transposed, stacked weights of matmul m (in panels in
// the loop, sc::mm_panels); _wp_k the weights of the step's k-th transposed matmul, in panels;
// _parts_v per-thread partial sums of a vector parameter's gradient; _b0.._b1 a thread's batch rows (_nb of
// them); _na the rows still running at step _t; d_v the gradient of v; _w_W weight matrix W as the call reads it
// (sc::weight: a bfloat16 or float16 module's as given, where the forward multiplies it as stored).
// Built for one dtype, SYMCELL_SCALAR (float or double: a library a dtype), as two translation units in
// parallel (build.py): the first scan and the operators in one, the other scans in the other
// (SYMCELL_SECOND_UNIT); SYMCELL_NS names this library
#include "sc.h"

namespace SYMCELL_NS {
template <typename scalar_t>
std::vector<at::Tensor> tangent_forward_impl(at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::TensorList _v_xs, at::TensorList _v_inits, at::TensorList _v_params, at::IntArrayRef _dims, bool _save, const at::Tensor& _lengths, at::IntArrayRef _skip) {
  const int64_t _dim_H = _dims[0];
  const int64_t _dim_I = _dims[1];
  const int64_t _n_x = _dim_I;
  const int64_t _ld_weight_ih = _dim_I;  // weight_ih is (4*_dim_H, _dim_I)
  const int64_t _ld_weight_hh = _dim_H;  // weight_hh is (4*_dim_H, _dim_H)
  const int64_t _n_bias_ih = 4*_dim_H;
  const int64_t _n_bias_hh = 4*_dim_H;
  const int64_t _n_h = _dim_H;
  const int64_t _n_c = _dim_H;
  const int64_t _n_h_new = _dim_H;
  const int64_t _n_c_new = _dim_H;
  const int64_t _n_gates = 4*_dim_H;
  const int64_t _n__v_x = _dim_I;
  const int64_t _ld__v_weight_ih = _dim_I;  // _v_weight_ih is (4*_dim_H, _dim_I)
  const int64_t _ld__v_weight_hh = _dim_H;  // _v_weight_hh is (4*_dim_H, _dim_H)
  const int64_t _n__v_bias_ih = 4*_dim_H;
  const int64_t _n__v_bias_hh = 4*_dim_H;
  const int64_t _n__v_h = _dim_H;
  const int64_t _n__v_c = _dim_H;
  const int64_t _n__v_h_new = _dim_H;
  const int64_t _n__v_c_new = _dim_H;
  const int64_t _n__v_gates = 4*_dim_H;
  const int64_t _steps = _xs[0].size(0), _batch = _xs[0].size(1);
  // per-row sequence lengths (int64), or none: every row runs all _steps
  // (read once checked: sc::expect_lengths, below, names another dtype)
  const int64_t* _len = _lengths.numel() > 0 && _lengths.scalar_type() == at::kLong ? _lengths.data_ptr<int64_t>() : nullptr;
  const auto _opt = _xs[0].options();
  sc::expect<scalar_t>(_xs[0], {_steps, _batch, _n_x}, "xs[0] (x)");
  sc::expect<scalar_t>(_inits[0], {_batch, _n_h}, "inits[0] (h)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_inits[1], {_batch, _n_c}, "inits[1] (c)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_params[0], {4*_dim_H, _dim_I}, "params[0] (weight_ih)");
  sc::expect<scalar_t>(_params[1], {4*_dim_H, _dim_H}, "params[1] (weight_hh)");
  sc::expect<scalar_t>(_params[2], {4*_dim_H}, "params[2] (bias_ih)");
  sc::expect<scalar_t>(_params[3], {4*_dim_H}, "params[3] (bias_hh)");
  sc::expect<scalar_t>(_ys[0], {_steps, _batch, _n_h_new}, "ys[0] (h_new)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_res[0], {_steps, _batch, _n_gates}, "res[0] (gates)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_res[1], {_steps, _batch, _n_c_new}, "res[1] (c_new)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_xs[0], {_steps, _batch, _n__v_x}, "v_xs[0] (_v_x)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_inits[0], {_batch, _n__v_h}, "v_inits[0] (_v_h)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_v_inits[1], {_batch, _n__v_c}, "v_inits[1] (_v_c)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_v_params[0], {4*_dim_H, _dim_I}, "v_params[0] (_v_weight_ih)");
  sc::expect<scalar_t>(_v_params[1], {4*_dim_H, _dim_H}, "v_params[1] (_v_weight_hh)");
  sc::expect<scalar_t>(_v_params[2], {4*_dim_H}, "v_params[2] (_v_bias_ih)");
  sc::expect<scalar_t>(_v_params[3], {4*_dim_H}, "v_params[3] (_v_bias_hh)");
  sc::expect_lengths(_lengths, _batch, _steps);
  const scalar_t* _seq_x = sc::ptr<scalar_t>(_xs[0]);
  const scalar_t* _init_h = sc::ptr<scalar_t>(_inits[0]);
  const scalar_t* _init_c = sc::ptr<scalar_t>(_inits[1]);
  const scalar_t* weight_ih = sc::ptr<scalar_t>(_params[0]);
  const scalar_t* weight_hh = sc::ptr<scalar_t>(_params[1]);
  const scalar_t* bias_ih = sc::ptr<scalar_t>(_params[2]);
  const scalar_t* bias_hh = sc::ptr<scalar_t>(_params[3]);
  const scalar_t* _seq_h_new = sc::ptr<scalar_t>(_ys[0]);
  const scalar_t* _seq_gates = sc::ptr<scalar_t>(_res[0]);
  const scalar_t* _seq_c_new = sc::ptr<scalar_t>(_res[1]);
  const scalar_t* _seq__v_x = sc::ptr<scalar_t>(_v_xs[0]);
  const scalar_t* _init__v_h = sc::ptr<scalar_t>(_v_inits[0]);
  const scalar_t* _init__v_c = sc::ptr<scalar_t>(_v_inits[1]);
  const scalar_t* _v_weight_ih = sc::ptr<scalar_t>(_v_params[0]);
  const scalar_t* _v_weight_hh = sc::ptr<scalar_t>(_v_params[1]);
  const scalar_t* _v_bias_ih = sc::ptr<scalar_t>(_v_params[2]);
  const scalar_t* _v_bias_hh = sc::ptr<scalar_t>(_v_params[3]);
  // _skip: one flag per argument tensor (all zeros), then one per result (not wanted)
  const bool _zero__v_x = sc::flag(_skip, 10);
  const bool _zero__v_weight_ih = sc::flag(_skip, 13);
  const bool _zero__v_weight_hh = sc::flag(_skip, 14);
  at::Tensor _t__v_h_new = sc::empty({_steps, _batch, _n__v_h_new}, _opt);
  at::Tensor _res__v_c_new = !_save ? at::Tensor() : _len != nullptr ? sc::zeros({_steps, _batch, _n__v_c_new}, _opt) : sc::empty({_steps, _batch, _n__v_c_new}, _opt);
  at::Tensor _pp__v_c_new = sc::empty({2, _batch, _n__v_c_new}, _opt);   // two alternating slots
  at::Tensor _t__v_gates = sc::empty({_steps, _batch, _n__v_gates}, _opt);
  scalar_t* _seq__v_gates = sc::ptr<scalar_t>(_t__v_gates);
  const bool _direct = sc::direct(_steps, _batch);   // the matmuls on their weights as stored
  scalar_t* _wt__v_gates0 = sc::ptr<scalar_t>(sc::workspace(0, 2*_dim_I * _n__v_gates, _opt));
  int64_t _k__v_gates0 = 0;
  const bool _on__v_gates0_0 = !(_zero__v_x);
  if (_on__v_gates0_0) {
    if (!_direct) sc::transpose(weight_ih, _ld_weight_ih, _n__v_gates, _dim_I, _wt__v_gates0 + (_k__v_gates0) * _n__v_gates, _n__v_gates);
    _k__v_gates0 += _dim_I;
  }
  const bool _on__v_gates0_1 = !(_zero__v_weight_ih);
  if (_on__v_gates0_1) {
    if (!_direct) sc::transpose(_v_weight_ih, _ld__v_weight_ih, _n__v_gates, _dim_I, _wt__v_gates0 + (_k__v_gates0) * _n__v_gates, _n__v_gates);
    _k__v_gates0 += _dim_I;
  }
  scalar_t* _wt__v_gates1 = sc::ptr<scalar_t>(sc::workspace(1, sc::step_panels_numel(2*_dim_H, _n__v_gates), _opt));
  int64_t _k__v_gates1 = 0;
  const bool _on__v_gates1_0 = true;
  if (_on__v_gates1_0) {
    if (!_direct) sc::transpose_step_panels(weight_hh, _ld_weight_hh, _n__v_gates, _dim_H, _wt__v_gates1, 2*_dim_H * sc::PANEL, _k__v_gates1);
    _k__v_gates1 += _dim_H;
  }
  const bool _on__v_gates1_1 = !(_zero__v_weight_hh);
  if (_on__v_gates1_1) {
    if (!_direct) sc::transpose_step_panels(_v_weight_hh, _ld__v_weight_hh, _n__v_gates, _dim_H, _wt__v_gates1, 2*_dim_H * sc::PANEL, _k__v_gates1);
    _k__v_gates1 += _dim_H;
  }
  at::Tensor _operands__v_gates0 = sc::empty({_steps * _batch, 2*_dim_I}, _opt);
  at::Tensor _operands__v_gates1 = sc::empty({_batch, 2*_dim_H}, _opt);
  // before the loop: what depends on no carried value, over all _steps*_batch rows at once
  {
    const scalar_t* x = _seq_x;
    const scalar_t* _v_x = _seq__v_x;
    scalar_t* _v_gates = _seq__v_gates;
    // _v_gates = _v_x[0:_dim_I] @ weight_ih[:, 0:_dim_I].T + x[0:_dim_I] @ _v_weight_ih[:, 0:_dim_I].T
    if (_direct) {
      bool _acc = false;
      if (_on__v_gates0_0) {
        sc::mm_stored(_steps * _batch, _n__v_gates, _dim_I, _v_x, _n__v_x, weight_ih, _ld_weight_ih, _acc, _v_gates, _n__v_gates);
        _acc = true;
      }
      if (_on__v_gates0_1) {
        sc::mm_stored(_steps * _batch, _n__v_gates, _dim_I, x, _n_x, _v_weight_ih, _ld__v_weight_ih, _acc, _v_gates, _n__v_gates);
        _acc = true;
      }
      if (!_acc) sc::mm_empty<scalar_t>(_steps * _batch, _n__v_gates, 0, false, _v_gates, _n__v_gates);   // no term ran
    } else {
      { scalar_t* _cat = sc::ptr<scalar_t>(_operands__v_gates0) + (0) * _k__v_gates0;
        for (int64_t _r = 0; _r < _steps * _batch; ++_r) {
          int64_t _o = 0;
          if (_on__v_gates0_0) { std::memcpy(_cat + _r * _k__v_gates0 + _o, _v_x + _r * _n__v_x, sizeof(scalar_t) * _dim_I); _o += _dim_I; }
          if (_on__v_gates0_1) { std::memcpy(_cat + _r * _k__v_gates0 + _o, x + _r * _n_x, sizeof(scalar_t) * _dim_I); _o += _dim_I; }
        }
        sc::mm_kn(_steps * _batch, _n__v_gates, _k__v_gates0, _cat, _k__v_gates0, _wt__v_gates0, _n__v_gates, false, _v_gates, _n__v_gates);
      }
    }
  }
  // the time loop, on batch rows [_b0, _b1) (see sc::scan_rows: its weights' bytes choose how it splits)
  sc::scan_rows(_batch, sizeof(scalar_t) * (4*_dim_H * _dim_I + 4*_dim_H * _dim_H), [&](int64_t _b0, int64_t _b1) {
    const int64_t _nb = _b1 - _b0;
    const scalar_t* _v_h = _init__v_h + _b0 * _n__v_h;
    const scalar_t* _v_c = _init__v_c + _b0 * _n__v_c;
    for (int64_t _t = 0; _t < _steps; ++_t) {
      const scalar_t* h = _t > 0 ? _seq_h_new + ((_t - 1) * _batch + _b0) * _n_h : _init_h + _b0 * _n_h;
      const scalar_t* c = _t > 0 ? _seq_c_new + ((_t - 1) * _batch + _b0) * _n_c : _init_c + _b0 * _n_c;
      const scalar_t* gates = _seq_gates + (_t * _batch + _b0) * _n_gates;
      scalar_t* _v_h_new = (sc::ptr<scalar_t>(_t__v_h_new) + (_t) * _batch * _n__v_h_new) + _b0 * _n__v_h_new;
      scalar_t* _v_c_new = (_save ? sc::ptr<scalar_t>(_res__v_c_new) + (_t) * _batch * _n__v_c_new : sc::ptr<scalar_t>(_pp__v_c_new) + ((_t) & 1) * _batch * _n__v_c_new) + _b0 * _n__v_c_new;
      scalar_t* _v_gates = _seq__v_gates + (_t * _batch + _b0) * _n__v_gates;
      int64_t _na = _nb;   // the rows up to the last one still running (see render.py)
      if (_len != nullptr) while (_na > 0 && _len[_b0 + _na - 1] <= _t) --_na;
      // _v_gates += _v_h[0:_dim_H] @ weight_hh[:, 0:_dim_H].T + h[0:_dim_H] @ _v_weight_hh[:, 0:_dim_H].T
      if (_direct) {
        bool _acc = true;
        if (_on__v_gates1_0) {
          sc::mm_stored(_na, _n__v_gates, _dim_H, _v_h, _n__v_h, weight_hh, _ld_weight_hh, _acc, _v_gates, _n__v_gates);
          _acc = true;
        }
        if (_on__v_gates1_1) {
          sc::mm_stored(_na, _n__v_gates, _dim_H, h, _n_h, _v_weight_hh, _ld__v_weight_hh, _acc, _v_gates, _n__v_gates);
          _acc = true;
        }
        if (!_acc) sc::mm_empty<scalar_t>(_na, _n__v_gates, 0, false, _v_gates, _n__v_gates);   // no term ran
      } else {
        { scalar_t* _cat = sc::ptr<scalar_t>(_operands__v_gates1) + (_b0) * _k__v_gates1;
          for (int64_t _r = 0; _r < _na; ++_r) {
            int64_t _o = 0;
            if (_on__v_gates1_0) { std::memcpy(_cat + _r * _k__v_gates1 + _o, _v_h + _r * _n__v_h, sizeof(scalar_t) * _dim_H); _o += _dim_H; }
            if (_on__v_gates1_1) { std::memcpy(_cat + _r * _k__v_gates1 + _o, h + _r * _n_h, sizeof(scalar_t) * _dim_H); _o += _dim_H; }
          }
          sc::mm_panels(_na, _n__v_gates, _k__v_gates1, _cat, _k__v_gates1, _wt__v_gates1, 2*_dim_H * sc::PANEL, 0, true, _v_gates, _n__v_gates);
        }
      }
      {  // fused region: 2 output(s), _dim_H features per row
        const int64_t _n = _dim_H;
        sc::rows(_na, _n, [&](int64_t _r0, int64_t _r1) {
          for (int64_t _r = _r0; _r < _r1; ++_r) {
            const scalar_t* _r__v_bias_hh = _v_bias_hh;
            const scalar_t* _r__v_bias_ih = _v_bias_ih;
            const scalar_t* _r__v_c = _v_c + _r * _n__v_c;
            const scalar_t* _r__v_gates = _v_gates + _r * _n__v_gates;
            const scalar_t* _r_bias_hh = bias_hh;
            const scalar_t* _r_bias_ih = bias_ih;
            const scalar_t* _r_c = c + _r * _n_c;
            const scalar_t* _r_gates = gates + _r * _n_gates;
            scalar_t* _w__v_c_new = _v_c_new + _r * _n__v_c_new;
            scalar_t* _w__v_h_new = _v_h_new + _r * _n__v_h_new;
            if (_len != nullptr && _t >= _len[_b0 + _r]) {   // an ended row: zeros, nothing added
              for (int64_t _j = 0; _j < _n; ++_j) _w__v_h_new[_j] = 0;
              for (int64_t _j = 0; _j < _n; ++_j) _w__v_c_new[_j] = 0;
              continue;
            }
            #pragma omp simd
            for (int64_t _j = 0; _j < _n; ++_j) {
              const scalar_t gates_3 = _r_gates[3*_dim_H + _j];
              const scalar_t bias_ih_3 = _r_bias_ih[3*_dim_H + _j];
              const scalar_t bias_hh_3 = _r_bias_hh[3*_dim_H + _j];
              const scalar_t gates_1 = _r_gates[_dim_H + _j];
              const scalar_t bias_ih_1 = _r_bias_ih[_dim_H + _j];
              const scalar_t bias_hh_1 = _r_bias_hh[_dim_H + _j];
              const scalar_t c = _r_c[_j];
              const scalar_t gates_0 = _r_gates[_j];
              const scalar_t bias_ih_0 = _r_bias_ih[_j];
              const scalar_t bias_hh_0 = _r_bias_hh[_j];
              const scalar_t gates_2 = _r_gates[2*_dim_H + _j];
              const scalar_t bias_ih_2 = _r_bias_ih[2*_dim_H + _j];
              const scalar_t bias_hh_2 = _r_bias_hh[2*_dim_H + _j];
              const scalar_t _v_gates_3 = _r__v_gates[3*_dim_H + _j];
              const scalar_t _v_bias_ih_3 = _r__v_bias_ih[3*_dim_H + _j];
              const scalar_t _v_bias_hh_3 = _r__v_bias_hh[3*_dim_H + _j];
              const scalar_t _v_gates_1 = _r__v_gates[_dim_H + _j];
              const scalar_t _v_bias_ih_1 = _r__v_bias_ih[_dim_H + _j];
              const scalar_t _v_bias_hh_1 = _r__v_bias_hh[_dim_H + _j];
              const scalar_t _v_c = _r__v_c[_j];
              const scalar_t _v_gates_0 = _r__v_gates[_j];
              const scalar_t _v_bias_ih_0 = _r__v_bias_ih[_j];
              const scalar_t _v_bias_hh_0 = _r__v_bias_hh[_j];
              const scalar_t _v_gates_2 = _r__v_gates[2*_dim_H + _j];
              const scalar_t _v_bias_ih_2 = _r__v_bias_ih[2*_dim_H + _j];
              const scalar_t _v_bias_hh_2 = _r__v_bias_hh[2*_dim_H + _j];
              const scalar_t _u0 = sc::sigmoid(bias_hh_3 + bias_ih_3 + gates_3);
              const scalar_t _u1 = sc::sigmoid(bias_hh_1 + bias_ih_1 + gates_1);
              const scalar_t _u2 = _u1*c;
              const scalar_t _u3 = sc::sigmoid(bias_hh_0 + bias_ih_0 + gates_0);
              const scalar_t _u4 = sc::tanh(bias_hh_2 + bias_ih_2 + gates_2);
              const scalar_t _u5 = _u3*_u4;
              const scalar_t _u6 = sc::tanh(_u2 + _u5);
              const scalar_t _u7 = _u1*_v_c + _u2*(1 - _u1)*(_v_bias_hh_1 + _v_bias_ih_1 + _v_gates_1) + _u3*(1 - (_u4*_u4))*(_v_bias_hh_2 + _v_bias_ih_2 + _v_gates_2) + _u5*(1 - _u3)*(_v_bias_hh_0 + _v_bias_ih_0 + _v_gates_0);
              _w__v_h_new[_j] = _u0*_u6*(1 - _u0)*(_v_bias_hh_3 + _v_bias_ih_3 + _v_gates_3) + _u0*_u7*(1 - (_u6*_u6));
              _w__v_c_new[_j] = _u7;
            }
          }
        });
      }
      if (_len != nullptr) {  // rows past their own length keep their state
        for (int64_t _r = 0; _r < _nb; ++_r) {
          if (_t >= _len[_b0 + _r]) {
            std::memcpy(_v_h_new + _r * _n__v_h, _v_h + _r * _n__v_h, sizeof(scalar_t) * _n__v_h);
            std::memcpy(_v_c_new + _r * _n__v_c, _v_c + _r * _n__v_c, sizeof(scalar_t) * _n__v_c);
          }
        }
      }
      _v_h = _v_h_new;
      _v_c = _v_c_new;
    }
  });
  const scalar_t* _last__v_h = _steps > 0 ? (sc::ptr<scalar_t>(_t__v_h_new) + (_steps - 1) * _batch * _n__v_h_new) : _init__v_h;
  const scalar_t* _last__v_c = _steps > 0 ? (_save ? sc::ptr<scalar_t>(_res__v_c_new) + (_steps - 1) * _batch * _n__v_c_new : sc::ptr<scalar_t>(_pp__v_c_new) + ((_steps - 1) & 1) * _batch * _n__v_c_new) : _init__v_c;
  std::vector<at::Tensor> _out;
  _out.push_back(_t__v_h_new);
  { at::Tensor _f = sc::empty({_batch, _n__v_h}, _opt); if (_batch * _n__v_h > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last__v_h, sizeof(scalar_t) * _batch * _n__v_h); _out.push_back(_f); }
  { at::Tensor _f = sc::empty({_batch, _n__v_c}, _opt); if (_batch * _n__v_c > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last__v_c, sizeof(scalar_t) * _batch * _n__v_c); _out.push_back(_f); }
  if (_save) {
    _out.push_back(_t__v_gates);
    _out.push_back(_res__v_c_new);
  }
  return _out;
}

template <typename scalar_t>
std::vector<at::Tensor> tangent_backward_impl(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::TensorList _v_d_ys, at::TensorList _v_d_finals, at::TensorList _v_xs, at::TensorList _v_inits, at::TensorList _v_params, at::TensorList _v_ys, at::TensorList _v_res, at::IntArrayRef _dims, const at::Tensor& _lengths, at::IntArrayRef _skip) {
  const int64_t _dim_H = _dims[0];
  const int64_t _dim_I = _dims[1];
  const int64_t _n_x = _dim_I;
  const int64_t _ld_weight_ih = _dim_I;  // weight_ih is (4*_dim_H, _dim_I)
  const int64_t _ld_weight_hh = _dim_H;  // weight_hh is (4*_dim_H, _dim_H)
  const int64_t _n_bias_ih = 4*_dim_H;
  const int64_t _n_bias_hh = 4*_dim_H;
  const int64_t _n_h = _dim_H;
  const int64_t _n_c = _dim_H;
  const int64_t _n_h_new = _dim_H;
  const int64_t _n_c_new = _dim_H;
  const int64_t _n_gates = 4*_dim_H;
  const int64_t _n__dys_h = _dim_H;
  const int64_t _n_d_h_new = _dim_H;
  const int64_t _n_d_c_new = _dim_H;
  const int64_t _n_d_h = _dim_H;
  const int64_t _n_d_c = _dim_H;
  const int64_t _n_d_gates = 4*_dim_H;
  const int64_t _n__v_x = _dim_I;
  const int64_t _ld__v_weight_ih = _dim_I;  // _v_weight_ih is (4*_dim_H, _dim_I)
  const int64_t _ld__v_weight_hh = _dim_H;  // _v_weight_hh is (4*_dim_H, _dim_H)
  const int64_t _n__v_bias_ih = 4*_dim_H;
  const int64_t _n__v_bias_hh = 4*_dim_H;
  const int64_t _n__v_h = _dim_H;
  const int64_t _n__v_c = _dim_H;
  const int64_t _n__v_h_new = _dim_H;
  const int64_t _n__v_c_new = _dim_H;
  const int64_t _n__v_gates = 4*_dim_H;
  const int64_t _n__v__dys_h = _dim_H;
  const int64_t _n__v_d_h_new = _dim_H;
  const int64_t _n__v_d_c_new = _dim_H;
  const int64_t _n__v_d_h = _dim_H;
  const int64_t _n__v_d_c = _dim_H;
  const int64_t _n__v_d_x = _dim_I;
  const int64_t _n__v_d_gates = 4*_dim_H;
  const int64_t _ld__v_d_weight_ih = _dim_I;  // _v_d_weight_ih is (4*_dim_H, _dim_I)
  const int64_t _ld__v_d_weight_hh = _dim_H;  // _v_d_weight_hh is (4*_dim_H, _dim_H)
  const int64_t _n__v_d_bias_ih = 4*_dim_H;
  const int64_t _n__v_d_bias_hh = 4*_dim_H;
  const int64_t _steps = _xs[0].size(0), _batch = _xs[0].size(1);
  // per-row sequence lengths (int64), or none: every row runs all _steps
  // (read once checked: sc::expect_lengths, below, names another dtype)
  const int64_t* _len = _lengths.numel() > 0 && _lengths.scalar_type() == at::kLong ? _lengths.data_ptr<int64_t>() : nullptr;
  const auto _opt = _xs[0].options();
  sc::expect<scalar_t>(_d_ys[0], {_steps, _batch, _n__dys_h}, "d_ys[0] (_dys_h)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_d_finals[0], {_batch, _n_d_h_new}, "d_finals[0] (d_h_new)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_d_finals[1], {_batch, _n_d_c_new}, "d_finals[1] (d_c_new)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_xs[0], {_steps, _batch, _n_x}, "xs[0] (x)");
  sc::expect<scalar_t>(_inits[0], {_batch, _n_h}, "inits[0] (h)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_inits[1], {_batch, _n_c}, "inits[1] (c)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_params[0], {4*_dim_H, _dim_I}, "params[0] (weight_ih)");
  sc::expect<scalar_t>(_params[1], {4*_dim_H, _dim_H}, "params[1] (weight_hh)");
  sc::expect<scalar_t>(_params[2], {4*_dim_H}, "params[2] (bias_ih)");
  sc::expect<scalar_t>(_params[3], {4*_dim_H}, "params[3] (bias_hh)");
  sc::expect<scalar_t>(_ys[0], {_steps, _batch, _n_h_new}, "ys[0] (h_new)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_res[0], {_steps, _batch, _n_gates}, "res[0] (gates)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_res[1], {_steps, _batch, _n_c_new}, "res[1] (c_new)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_d_ys[0], {_steps, _batch, _n__v__dys_h}, "v_d_ys[0] (_v__dys_h)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_d_finals[0], {_batch, _n__v_d_h_new}, "v_d_finals[0] (_v_d_h_new)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_v_d_finals[1], {_batch, _n__v_d_c_new}, "v_d_finals[1] (_v_d_c_new)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_v_xs[0], {_steps, _batch, _n__v_x}, "v_xs[0] (_v_x)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_inits[0], {_batch, _n__v_h}, "v_inits[0] (_v_h)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_v_inits[1], {_batch, _n__v_c}, "v_inits[1] (_v_c)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_v_params[0], {4*_dim_H, _dim_I}, "v_params[0] (_v_weight_ih)");
  sc::expect<scalar_t>(_v_params[1], {4*_dim_H, _dim_H}, "v_params[1] (_v_weight_hh)");
  sc::expect<scalar_t>(_v_params[2], {4*_dim_H}, "v_params[2] (_v_bias_ih)");
  sc::expect<scalar_t>(_v_params[3], {4*_dim_H}, "v_params[3] (_v_bias_hh)");
  sc::expect<scalar_t>(_v_ys[0], {_steps, _batch, _n__v_h_new}, "v_ys[0] (_v_h_new)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_res[0], {_steps, _batch, _n__v_gates}, "v_res[0] (_v_gates)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_v_res[1], {_steps, _batch, _n__v_c_new}, "v_res[1] (_v_c_new)", ", with T and B from xs[0] (x),");
  sc::expect_lengths(_lengths, _batch, _steps);
  const scalar_t* _seq__dys_h = sc::ptr<scalar_t>(_d_ys[0]);
  const scalar_t* _init_d_h_new = sc::ptr<scalar_t>(_d_finals[0]);
  const scalar_t* _init_d_c_new = sc::ptr<scalar_t>(_d_finals[1]);
  const scalar_t* _seq_x = sc::ptr<scalar_t>(_xs[0]);
  const scalar_t* _init_h = sc::ptr<scalar_t>(_inits[0]);
  const scalar_t* _init_c = sc::ptr<scalar_t>(_inits[1]);
  const scalar_t* weight_ih = sc::ptr<scalar_t>(_params[0]);
  const scalar_t* weight_hh = sc::ptr<scalar_t>(_params[1]);
  const scalar_t* bias_ih = sc::ptr<scalar_t>(_params[2]);
  const scalar_t* bias_hh = sc::ptr<scalar_t>(_params[3]);
  const scalar_t* _seq_h_new = sc::ptr<scalar_t>(_ys[0]);
  const scalar_t* _seq_gates = sc::ptr<scalar_t>(_res[0]);
  const scalar_t* _seq_c_new = sc::ptr<scalar_t>(_res[1]);
  const scalar_t* _seq__v__dys_h = sc::ptr<scalar_t>(_v_d_ys[0]);
  const scalar_t* _init__v_d_h_new = sc::ptr<scalar_t>(_v_d_finals[0]);
  const scalar_t* _init__v_d_c_new = sc::ptr<scalar_t>(_v_d_finals[1]);
  const scalar_t* _seq__v_x = sc::ptr<scalar_t>(_v_xs[0]);
  const scalar_t* _init__v_h = sc::ptr<scalar_t>(_v_inits[0]);
  const scalar_t* _init__v_c = sc::ptr<scalar_t>(_v_inits[1]);
  const scalar_t* _v_weight_ih = sc::ptr<scalar_t>(_v_params[0]);
  const scalar_t* _v_weight_hh = sc::ptr<scalar_t>(_v_params[1]);
  const scalar_t* _v_bias_ih = sc::ptr<scalar_t>(_v_params[2]);
  const scalar_t* _v_bias_hh = sc::ptr<scalar_t>(_v_params[3]);
  const scalar_t* _seq__v_h_new = sc::ptr<scalar_t>(_v_ys[0]);
  const scalar_t* _seq__v_gates = sc::ptr<scalar_t>(_v_res[0]);
  const scalar_t* _seq__v_c_new = sc::ptr<scalar_t>(_v_res[1]);
  // _skip: one flag per argument tensor (all zeros), then one per result (not wanted)
  const bool _zero__v_x = sc::flag(_skip, 16);
  const bool _zero__v_h = sc::flag(_skip, 17);
  const bool _zero__v_weight_ih = sc::flag(_skip, 19);
  const bool _zero__v_weight_hh = sc::flag(_skip, 20);
  const bool _zero__v_h_new = sc::flag(_skip, 23);
  const bool _unwanted__v_d_x = sc::flag(_skip, 26);
  const bool _unwanted__v_d_h_new = sc::flag(_skip, 27);
  const bool _unwanted__v_d_weight_ih = sc::flag(_skip, 29);
  const bool _unwanted__v_d_weight_hh = sc::flag(_skip, 30);
  at::Tensor _pp_d_h = sc::empty({2, _batch, _n_d_h}, _opt);   // two alternating slots
  at::Tensor _pp_d_c = sc::empty({2, _batch, _n_d_c}, _opt);   // two alternating slots
  at::Tensor _t_d_gates = sc::zeros({_steps, _batch, _n_d_gates}, _opt);
  scalar_t* _seq_d_gates = sc::ptr<scalar_t>(_t_d_gates);
  at::Tensor _pp__v_d_h = sc::empty({2, _batch, _n__v_d_h}, _opt);   // two alternating slots
  at::Tensor _pp__v_d_c = sc::empty({2, _batch, _n__v_d_c}, _opt);   // two alternating slots
  at::Tensor _t__v_d_x = sc::zeros({_steps, _batch, _n__v_d_x}, _opt);
  scalar_t* _seq__v_d_x = sc::ptr<scalar_t>(_t__v_d_x);
  at::Tensor _t__v_d_gates = sc::zeros({_steps, _batch, _n__v_d_gates}, _opt);
  scalar_t* _seq__v_d_gates = sc::ptr<scalar_t>(_t__v_d_gates);
  at::Tensor _t__v_d_weight_ih = _steps == 0 ? sc::zeros({4*_dim_H, _dim_I}, _opt) : sc::empty({4*_dim_H, _dim_I}, _opt);
  scalar_t* _v_d_weight_ih = sc::ptr<scalar_t>(_t__v_d_weight_ih);
  at::Tensor _t__v_d_weight_hh = _steps == 0 ? sc::zeros({4*_dim_H, _dim_H}, _opt) : sc::empty({4*_dim_H, _dim_H}, _opt);
  scalar_t* _v_d_weight_hh = sc::ptr<scalar_t>(_t__v_d_weight_hh);
  at::Tensor _t__v_d_bias_ih = sc::zeros({4*_dim_H}, _opt);
  scalar_t* _v_d_bias_ih = sc::ptr<scalar_t>(_t__v_d_bias_ih);
  at::Tensor _parts__v_d_bias_ih = sc::zeros({sc::threads(), _n__v_d_bias_ih}, _opt);
  at::Tensor _t__v_d_bias_hh = sc::zeros({4*_dim_H}, _opt);
  scalar_t* _v_d_bias_hh = sc::ptr<scalar_t>(_t__v_d_bias_hh);
  at::Tensor _parts__v_d_bias_hh = sc::zeros({sc::threads(), _n__v_d_bias_hh}, _opt);
  const bool _direct_grads = sc::direct_grads(_steps, _batch, std::max({_ld__v_weight_hh, _ld_weight_hh}) * int64_t(sizeof(scalar_t)));   // the transposed matmuls on theirs
  scalar_t* _wp_0 = sc::ptr<scalar_t>(sc::workspace(0, sc::step_panels_numel(_n_d_gates, _dim_H), _opt));   // weight_hh in panels
  if (!_direct_grads) sc::copy_step_panels(weight_hh, _ld_weight_hh, _n_d_gates, _dim_H, _wp_0);
  scalar_t* _wp_1 = sc::ptr<scalar_t>(sc::workspace(1, sc::step_panels_numel(_n_d_gates, _dim_H), _opt));   // _v_weight_hh in panels
  if (!(_direct_grads || (_zero__v_weight_hh || ((_steps <= 1) && _unwanted__v_d_h_new)))) sc::copy_step_panels(_v_weight_hh, _ld__v_weight_hh, _n_d_gates, _dim_H, _wp_1);
  if (_batch * _n_d_h_new > 0) std::memcpy(sc::ptr<scalar_t>(_pp_d_h) + (((_steps - 1) + 1) & 1) * _batch * _n_d_h_new, _init_d_h_new, sizeof(scalar_t) * _batch * _n_d_h_new);
  if (_batch * _n_d_c_new > 0) std::memcpy(sc::ptr<scalar_t>(_pp_d_c) + (((_steps - 1) + 1) & 1) * _batch * _n_d_c_new, _init_d_c_new, sizeof(scalar_t) * _batch * _n_d_c_new);
  if (_batch * _n__v_d_h_new > 0) std::memcpy(sc::ptr<scalar_t>(_pp__v_d_h) + (((_steps - 1) + 1) & 1) * _batch * _n__v_d_h_new, _init__v_d_h_new, sizeof(scalar_t) * _batch * _n__v_d_h_new);
  if (_batch * _n__v_d_c_new > 0) std::memcpy(sc::ptr<scalar_t>(_pp__v_d_c) + (((_steps - 1) + 1) & 1) * _batch * _n__v_d_c_new, _init__v_d_c_new, sizeof(scalar_t) * _batch * _n__v_d_c_new);
  // the time loop, on batch rows [_b0, _b1) (see sc::scan_rows: its weights' bytes choose how it splits)
  sc::scan_rows(_batch, sizeof(scalar_t) * (4*_dim_H * _dim_I + 4*_dim_H * _dim_H), [&](int64_t _b0, int64_t _b1) {
    const int64_t _nb = _b1 - _b0;
    scalar_t* d_h_new = sc::ptr<scalar_t>(_pp_d_h) + (((_steps - 1) + 1) & 1) * _batch * _n_d_h_new + _b0 * _n_d_h_new;
    scalar_t* d_c_new = sc::ptr<scalar_t>(_pp_d_c) + (((_steps - 1) + 1) & 1) * _batch * _n_d_c_new + _b0 * _n_d_c_new;
    scalar_t* _v_d_h_new = sc::ptr<scalar_t>(_pp__v_d_h) + (((_steps - 1) + 1) & 1) * _batch * _n__v_d_h_new + _b0 * _n__v_d_h_new;
    scalar_t* _v_d_c_new = sc::ptr<scalar_t>(_pp__v_d_c) + (((_steps - 1) + 1) & 1) * _batch * _n__v_d_c_new + _b0 * _n__v_d_c_new;
    for (int64_t _t = _steps - 1; _t >= 0; --_t) {
      const scalar_t* c = _t > 0 ? _seq_c_new + ((_t - 1) * _batch + _b0) * _n_c : _init_c + _b0 * _n_c;
      const scalar_t* gates = _seq_gates + (_t * _batch + _b0) * _n_gates;
      const scalar_t* _dys_h = _seq__dys_h + (_t * _batch + _b0) * _n__dys_h;
      scalar_t* d_h = (sc::ptr<scalar_t>(_pp_d_h) + ((_t) & 1) * _batch * _n_d_h) + _b0 * _n_d_h;
      sc::zero(d_h, _nb * _n_d_h);
      scalar_t* d_c = (sc::ptr<scalar_t>(_pp_d_c) + ((_t) & 1) * _batch * _n_d_c) + _b0 * _n_d_c;
      sc::zero(d_c, _nb * _n_d_c);
      scalar_t* d_gates = _seq_d_gates + (_t * _batch + _b0) * _n_d_gates;
      const scalar_t* _v_c = _t > 0 ? _seq__v_c_new + ((_t - 1) * _batch + _b0) * _n__v_c : _init__v_c + _b0 * _n__v_c;
      const scalar_t* _v_gates = _seq__v_gates + (_t * _batch + _b0) * _n__v_gates;
      const scalar_t* _v__dys_h = _seq__v__dys_h + (_t * _batch + _b0) * _n__v__dys_h;
      scalar_t* _v_d_h = (sc::ptr<scalar_t>(_pp__v_d_h) + ((_t) & 1) * _batch * _n__v_d_h) + _b0 * _n__v_d_h;
      sc::zero(_v_d_h, _nb * _n__v_d_h);
      scalar_t* _v_d_c = (sc::ptr<scalar_t>(_pp__v_d_c) + ((_t) & 1) * _batch * _n__v_d_c) + _b0 * _n__v_d_c;
      sc::zero(_v_d_c, _nb * _n__v_d_c);
      scalar_t* _v_d_gates = _seq__v_d_gates + (_t * _batch + _b0) * _n__v_d_gates;
      int64_t _na = _nb;   // the rows up to the last one still running (see render.py)
      if (_len != nullptr) while (_na > 0 && _len[_b0 + _na - 1] <= _t) --_na;
      for (int64_t _i = 0; _i < _nb * _n_d_h_new; ++_i) d_h_new[_i] += _dys_h[_i];
      for (int64_t _i = 0; _i < _nb * _n__v_d_h_new; ++_i) _v_d_h_new[_i] += _v__dys_h[_i];
      if (_len != nullptr) {  // ended rows: the carried cotangent passes to the previous state,
        // the step sees none (the backward of holding the state)
        for (int64_t _r = 0; _r < _nb; ++_r) {
          if (_t >= _len[_b0 + _r]) {
            std::memcpy(d_h + _r * _n_d_h, d_h_new + _r * _n_d_h, sizeof(scalar_t) * _n_d_h);
            sc::zero(d_h_new + _r * _n_d_h, _n_d_h);
            std::memcpy(d_c + _r * _n_d_c, d_c_new + _r * _n_d_c, sizeof(scalar_t) * _n_d_c);
            sc::zero(d_c_new + _r * _n_d_c, _n_d_c);
          }
        }
      }
      if (_len != nullptr) {  // ended rows: the carried cotangent passes to the previous state,
        // the step sees none (the backward of holding the state)
        for (int64_t _r = 0; _r < _nb; ++_r) {
          if (_t >= _len[_b0 + _r]) {
            std::memcpy(_v_d_h + _r * _n__v_d_h, _v_d_h_new + _r * _n__v_d_h, sizeof(scalar_t) * _n__v_d_h);
            sc::zero(_v_d_h_new + _r * _n__v_d_h, _n__v_d_h);
            std::memcpy(_v_d_c + _r * _n__v_d_c, _v_d_c_new + _r * _n__v_d_c, sizeof(scalar_t) * _n__v_d_c);
            sc::zero(_v_d_c_new + _r * _n__v_d_c, _n__v_d_c);
          }
        }
      }
      {  // fused region: 18 output(s), _dim_H features per row
        const int64_t _n = _dim_H;
        sc::rows(_na, _n, [&](int64_t _r0, int64_t _r1) {
          scalar_t* _p__v_d_bias_hh = sc::partial<scalar_t>(_parts__v_d_bias_hh, _n__v_d_bias_hh);   // summed over rows
          scalar_t* _p__v_d_bias_ih = sc::partial<scalar_t>(_parts__v_d_bias_ih, _n__v_d_bias_ih);   // summed over rows
          for (int64_t _r = _r0; _r < _r1; ++_r) {
            const scalar_t* _r__v_bias_hh = _v_bias_hh;
            const scalar_t* _r__v_bias_ih = _v_bias_ih;
            const scalar_t* _r__v_c = _v_c + _r * _n__v_c;
            const scalar_t* _r__v_d_c_new = _v_d_c_new + _r * _n__v_d_c_new;
            const scalar_t* _r__v_d_h_new = _v_d_h_new + _r * _n__v_d_h_new;
            const scalar_t* _r__v_gates = _v_gates + _r * _n__v_gates;
            const scalar_t* _r_bias_hh = bias_hh;
            const scalar_t* _r_bias_ih = bias_ih;
            const scalar_t* _r_c = c + _r * _n_c;
            const scalar_t* _r_d_c_new = d_c_new + _r * _n_d_c_new;
            const scalar_t* _r_d_h_new = d_h_new + _r * _n_d_h_new;
            const scalar_t* _r_gates = gates + _r * _n_gates;
            scalar_t* _w__v_d_c = _v_d_c + _r * _n__v_d_c;
            scalar_t* _w__v_d_gates = _v_d_gates + _r * _n__v_d_gates;
            scalar_t* _w_d_c = d_c + _r * _n_d_c;
            scalar_t* _w_d_gates = d_gates + _r * _n_d_gates;
            if (_len != nullptr && _t >= _len[_b0 + _r]) {   // an ended row: zeros, nothing added
              continue;
            }
            #pragma omp simd
            for (int64_t _j = 0; _j < _n; ++_j) {
              const scalar_t gates_3 = _r_gates[3*_dim_H + _j];
              const scalar_t bias_ih_3 = _r_bias_ih[3*_dim_H + _j];
              const scalar_t bias_hh_3 = _r_bias_hh[3*_dim_H + _j];
              const scalar_t gates_1 = _r_gates[_dim_H + _j];
              const scalar_t bias_ih_1 = _r_bias_ih[_dim_H + _j];
              const scalar_t bias_hh_1 = _r_bias_hh[_dim_H + _j];
              const scalar_t c = _r_c[_j];
              const scalar_t gates_0 = _r_gates[_j];
              const scalar_t bias_ih_0 = _r_bias_ih[_j];
              const scalar_t bias_hh_0 = _r_bias_hh[_j];
              const scalar_t gates_2 = _r_gates[2*_dim_H + _j];
              const scalar_t bias_ih_2 = _r_bias_ih[2*_dim_H + _j];
              const scalar_t bias_hh_2 = _r_bias_hh[2*_dim_H + _j];
              const scalar_t d_h_new = _r_d_h_new[_j];
              const scalar_t d_c_new = _r_d_c_new[_j];
              const scalar_t _v_gates_3 = _r__v_gates[3*_dim_H + _j];
              const scalar_t _v_bias_ih_3 = _r__v_bias_ih[3*_dim_H + _j];
              const scalar_t _v_bias_hh_3 = _r__v_bias_hh[3*_dim_H + _j];
              const scalar_t _v_gates_1 = _r__v_gates[_dim_H + _j];
              const scalar_t _v_bias_ih_1 = _r__v_bias_ih[_dim_H + _j];
              const scalar_t _v_bias_hh_1 = _r__v_bias_hh[_dim_H + _j];
              const scalar_t _v_c = _r__v_c[_j];
              const scalar_t _v_gates_0 = _r__v_gates[_j];
              const scalar_t _v_bias_ih_0 = _r__v_bias_ih[_j];
              const scalar_t _v_bias_hh_0 = _r__v_bias_hh[_j];
              const scalar_t _v_gates_2 = _r__v_gates[2*_dim_H + _j];
              const scalar_t _v_bias_ih_2 = _r__v_bias_ih[2*_dim_H + _j];
              const scalar_t _v_bias_hh_2 = _r__v_bias_hh[2*_dim_H + _j];
              const scalar_t _v_d_h_new = _r__v_d_h_new[_j];
              const scalar_t _v_d_c_new = _r__v_d_c_new[_j];
              const scalar_t _u0 = sc::sigmoid(bias_hh_3 + bias_ih_3 + gates_3);
              const scalar_t _u1 = _u0*d_h_new;
              const scalar_t _u2 = 1 - _u0;
              const scalar_t _u3 = sc::sigmoid(bias_hh_1 + bias_ih_1 + gates_1);
              const scalar_t _u4 = _u3*c;
              const scalar_t _u5 = sc::sigmoid(bias_hh_0 + bias_ih_0 + gates_0);
              const scalar_t _u6 = sc::tanh(bias_hh_2 + bias_ih_2 + gates_2);
              const scalar_t _u7 = _u5*_u6;
              const scalar_t _u8 = sc::tanh(_u4 + _u7);
              const scalar_t _u9 = _u2*_u8;
              const scalar_t _u10 = 1 - _u3;
              const scalar_t _u11 = _u10*_u4;
              const scalar_t _u12 = 1 - (_u8*_u8);
              const scalar_t _u13 = _u1*_u12;
              const scalar_t _u14 = _u11*_u13;
              const scalar_t _u15 = _u3*d_c_new;
              const scalar_t _u16 = _u12*_u3;
              const scalar_t _u17 = _u1*_u16;
              const scalar_t _u18 = 1 - _u5;
              const scalar_t _u19 = _u18*_u7;
              const scalar_t _u20 = _u13*_u19;
              const scalar_t _u21 = 1 - (_u6*_u6);
              const scalar_t _u22 = _u21*_u5;
              const scalar_t _u23 = _u22*d_c_new;
              const scalar_t _u24 = _u13*_u22;
              const scalar_t _u25 = _u0*_v_d_h_new;
              const scalar_t _u26 = _v_bias_hh_3 + _v_bias_ih_3 + _v_gates_3;
              const scalar_t _u27 = _u3*_v_c;
              const scalar_t _u28 = _v_bias_hh_1 + _v_bias_ih_1 + _v_gates_1;
              const scalar_t _u29 = _v_bias_hh_2 + _v_bias_ih_2 + _v_gates_2;
              const scalar_t _u30 = _u22*_u29;
              const scalar_t _u31 = _v_bias_hh_0 + _v_bias_ih_0 + _v_gates_0;
              const scalar_t _u32 = _u11*_u28 + _u19*_u31 + _u27 + _u30;
              const scalar_t _u33 = _u13*_u2;
              const scalar_t _u34 = -(_u0*_u0)*_u26*_u9*d_h_new + _u1*(_u2*_u2)*_u26*_u8 + _u25*_u9 + _u32*_u33;
              const scalar_t _u35 = _u10*_u15;
              const scalar_t _u36 = _u28*d_c_new;
              const scalar_t _u37 = (_u10*_u10)*_u4;
              const scalar_t _u38 = _u10*(_u3*_u3)*c;
              const scalar_t _u39 = _u12*_u25;
              const scalar_t _u40 = _u13*_u28;
              const scalar_t _u41 = _u26*_u33;
              const scalar_t _u42 = 2*_u32*_u8;
              const scalar_t _u43 = _u10*_u13*_u27 + _u11*_u39 + _u11*_u41 + _u11*_v_d_c_new - _u14*_u42 + _u35*_v_c + _u36*_u37 - _u36*_u38 + _u37*_u40 - _u38*_u40;
              const scalar_t _u44 = _u2*_u26;
              const scalar_t _u45 = _u31*d_c_new;
              const scalar_t _u46 = (_u18*_u18)*_u7;
              const scalar_t _u47 = _u18*(_u5*_u5)*_u6;
              const scalar_t _u48 = _u18*_u23;
              const scalar_t _u49 = _u13*_u31;
              const scalar_t _u50 = _u13*_u18*_u30 + _u19*_u39 + _u19*_u41 + _u19*_v_d_c_new - _u20*_u42 + _u29*_u48 + _u45*_u46 - _u45*_u47 + _u46*_u49 - _u47*_u49;
              const scalar_t _u51 = 2*_u21*_u29*_u7;
              const scalar_t _u52 = -_u13*_u51 + _u18*_u24*_u31 + _u22*_u39 + _u22*_v_d_c_new - _u24*_u42 + _u24*_u44 + _u31*_u48 - _u51*d_c_new;
              _w_d_gates[3*_dim_H + _j] += _u1*_u9;
              _w_d_gates[_dim_H + _j] += _u11*d_c_new + _u14;
              _w_d_c[_j] += _u15 + _u17;
              _w_d_gates[_j] += _u19*d_c_new + _u20;
              _w_d_gates[2*_dim_H + _j] += _u23 + _u24;
              _w__v_d_gates[3*_dim_H + _j] += _u34;
              _w__v_d_gates[_dim_H + _j] += _u43;
              _w__v_d_c[_j] += _u10*_u17*_u28 + _u16*_u25 - _u17*_u42 + _u17*_u44 + _u28*_u35 + _u3*_v_d_c_new;
              _w__v_d_gates[_j] += _u50;
              _w__v_d_gates[2*_dim_H + _j] += _u52;
              _p__v_d_bias_ih[3*_dim_H + _j] += _u34;
              _p__v_d_bias_hh[3*_dim_H + _j] += _u34;
              _p__v_d_bias_ih[_dim_H + _j] += _u43;
              _p__v_d_bias_hh[_dim_H + _j] += _u43;
              _p__v_d_bias_ih[_j] += _u50;
              _p__v_d_bias_hh[_j] += _u50;
              _p__v_d_bias_ih[2*_dim_H + _j] += _u52;
              _p__v_d_bias_hh[2*_dim_H + _j] += _u52;
            }
          }
        });
      }
      // d_h[0:_dim_H] += d_gates @ weight_hh[:, 0:_dim_H]
      if (_direct_grads) sc::mm_kn(_na, _dim_H, _n_d_gates, d_gates, _n_d_gates, weight_hh, _ld_weight_hh, true, d_h, _n_d_h);
      else sc::mm_panels(_na, _dim_H, _n_d_gates, d_gates, _n_d_gates, _wp_0, _n_d_gates * sc::PANEL, 0, true, d_h, _n_d_h);
      if (!((_t == 0) && _unwanted__v_d_h_new)) {
        // _v_d_h[0:_dim_H] += _v_d_gates @ weight_hh[:, 0:_dim_H]
        if (_direct_grads) sc::mm_kn(_na, _dim_H, _n__v_d_gates, _v_d_gates, _n__v_d_gates, weight_hh, _ld_weight_hh, true, _v_d_h, _n__v_d_h);
        else sc::mm_panels(_na, _dim_H, _n__v_d_gates, _v_d_gates, _n__v_d_gates, _wp_0, _n__v_d_gates * sc::PANEL, 0, true, _v_d_h, _n__v_d_h);
      }
      if (!(_zero__v_weight_hh || ((_t == 0) && _unwanted__v_d_h_new))) {
        // _v_d_h[0:_dim_H] += d_gates @ _v_weight_hh[:, 0:_dim_H]
        if (_direct_grads) sc::mm_kn(_na, _dim_H, _n_d_gates, d_gates, _n_d_gates, _v_weight_hh, _ld__v_weight_hh, true, _v_d_h, _n__v_d_h);
        else sc::mm_panels(_na, _dim_H, _n_d_gates, d_gates, _n_d_gates, _wp_1, _n_d_gates * sc::PANEL, 0, true, _v_d_h, _n__v_d_h);
      }
      d_h_new = d_h;
      d_c_new = d_c;
      _v_d_h_new = _v_d_h;
      _v_d_c_new = _v_d_c;
    }
  });
  const scalar_t* _last_d_h_new = _steps > 0 ? (sc::ptr<scalar_t>(_pp_d_h) + ((0) & 1) * _batch * _n_d_h) : _init_d_h_new;
  const scalar_t* _last_d_c_new = _steps > 0 ? (sc::ptr<scalar_t>(_pp_d_c) + ((0) & 1) * _batch * _n_d_c) : _init_d_c_new;
  const scalar_t* _last__v_d_h_new = _steps > 0 ? (sc::ptr<scalar_t>(_pp__v_d_h) + ((0) & 1) * _batch * _n__v_d_h) : _init__v_d_h_new;
  const scalar_t* _last__v_d_c_new = _steps > 0 ? (sc::ptr<scalar_t>(_pp__v_d_c) + ((0) & 1) * _batch * _n__v_d_c) : _init__v_d_c_new;
  // after the loop, over all _steps*_batch rows: one GEMM for all steps where the loop would run one per step
  if (_steps > 0) {
    {
      const scalar_t* x = _seq_x;
      scalar_t* d_gates = _seq_d_gates;
      const scalar_t* _v_x = _seq__v_x;
      scalar_t* _v_d_x = _seq__v_d_x;
      scalar_t* _v_d_gates = _seq__v_d_gates;
      if (!(_unwanted__v_d_x)) {
        // _v_d_x[0:_dim_I] += _v_d_gates @ weight_ih[:, 0:_dim_I]
        sc::mm_kn(_steps * _batch, _dim_I, _n__v_d_gates, _v_d_gates, _n__v_d_gates, weight_ih, _ld_weight_ih, true, _v_d_x, _n__v_d_x);
      }
      if (!(_zero__v_weight_ih || _unwanted__v_d_x)) {
        // _v_d_x[0:_dim_I] += d_gates @ _v_weight_ih[:, 0:_dim_I]
        sc::mm_kn(_steps * _batch, _dim_I, _n_d_gates, d_gates, _n_d_gates, _v_weight_ih, _ld__v_weight_ih, true, _v_d_x, _n__v_d_x);
      }
      if (!(_unwanted__v_d_weight_ih)) {
        // _v_d_weight_ih[:, 0:_dim_I] = _v_d_gates.T @ x
        sc::mm_tn<scalar_t>(_n__v_d_gates, _dim_I, _steps * _batch, _v_d_gates, _n__v_d_gates, x, _n_x, false, _v_d_weight_ih, _ld__v_d_weight_ih);
      }
      if (!(_zero__v_x || _unwanted__v_d_weight_ih)) {
        // _v_d_weight_ih[:, 0:_dim_I] += d_gates.T @ _v_x
        sc::mm_tn<scalar_t>(_n_d_gates, _dim_I, _steps * _batch, d_gates, _n_d_gates, _v_x, _n__v_x, true, _v_d_weight_ih, _ld__v_d_weight_ih);
      }
      if (!(_unwanted__v_d_weight_hh)) {
        // _v_d_weight_hh[:, 0:_dim_H] = _v_d_gates.T @ h
        sc::mm_tn<scalar_t>(_n__v_d_gates, _dim_H, _batch, _v_d_gates, _n__v_d_gates, _init_h, _n_h, false, _v_d_weight_hh, _ld__v_d_weight_hh);
        sc::mm_tn<scalar_t>(_n__v_d_gates, _dim_H, (_steps - 1) * _batch, _v_d_gates + _batch * _n__v_d_gates, _n__v_d_gates, _seq_h_new, _n_h, true, _v_d_weight_hh, _ld__v_d_weight_hh);
      }
      if (!((_zero__v_h && _zero__v_h_new) || _unwanted__v_d_weight_hh)) {
        // _v_d_weight_hh[:, 0:_dim_H] += d_gates.T @ _v_h
        sc::mm_tn<scalar_t>(_n_d_gates, _dim_H, _batch, d_gates, _n_d_gates, _init__v_h, _n__v_h, true, _v_d_weight_hh, _ld__v_d_weight_hh);
        sc::mm_tn<scalar_t>(_n_d_gates, _dim_H, (_steps - 1) * _batch, d_gates + _batch * _n_d_gates, _n_d_gates, _seq__v_h_new, _n__v_h, true, _v_d_weight_hh, _ld__v_d_weight_hh);
      }
    }
  }
  sc::sum_partials(_parts__v_d_bias_ih, _n__v_d_bias_ih, _v_d_bias_ih);
  sc::sum_partials(_parts__v_d_bias_hh, _n__v_d_bias_hh, _v_d_bias_hh);
  std::vector<at::Tensor> _out;
  _out.push_back(_t__v_d_x);
  { at::Tensor _f = sc::empty({_batch, _n__v_d_h_new}, _opt); if (_batch * _n__v_d_h_new > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last__v_d_h_new, sizeof(scalar_t) * _batch * _n__v_d_h_new); _out.push_back(_f); }
  { at::Tensor _f = sc::empty({_batch, _n__v_d_c_new}, _opt); if (_batch * _n__v_d_c_new > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last__v_d_c_new, sizeof(scalar_t) * _batch * _n__v_d_c_new); _out.push_back(_f); }
  _out.push_back(_t__v_d_weight_ih);
  _out.push_back(_t__v_d_weight_hh);
  _out.push_back(_t__v_d_bias_ih);
  _out.push_back(_t__v_d_bias_hh);
  return _out;
}

#if SYMCELL_SECOND_UNIT
template std::vector<at::Tensor> tangent_backward_impl<SYMCELL_SCALAR>(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::TensorList _v_d_ys, at::TensorList _v_d_finals, at::TensorList _v_xs, at::TensorList _v_inits, at::TensorList _v_params, at::TensorList _v_ys, at::TensorList _v_res, at::IntArrayRef _dims, const at::Tensor& _lengths, at::IntArrayRef _skip);
#else
extern template std::vector<at::Tensor> tangent_backward_impl<SYMCELL_SCALAR>(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::TensorList _v_d_ys, at::TensorList _v_d_finals, at::TensorList _v_xs, at::TensorList _v_inits, at::TensorList _v_params, at::TensorList _v_ys, at::TensorList _v_res, at::IntArrayRef _dims, const at::Tensor& _lengths, at::IntArrayRef _skip);

std::vector<at::Tensor> tangent_forward(const sc::Call& _c) {
  return tangent_forward_impl<SYMCELL_SCALAR>(_c.lists[0], _c.lists[1], _c.lists[2], _c.lists[3], _c.lists[4], _c.lists[5], _c.lists[6], _c.lists[7], _c.dims, _c.save, _c.lengths, _c.skip);
}
std::vector<at::Tensor> tangent_backward(const sc::Call& _c) {
  return tangent_backward_impl<SYMCELL_SCALAR>(_c.lists[0], _c.lists[1], _c.lists[2], _c.lists[3], _c.lists[4], _c.lists[5], _c.lists[6], _c.lists[7], _c.lists[8], _c.lists[9], _c.lists[10], _c.lists[11], _c.lists[12], _c.lists[13], _c.dims, _c.lengths, _c.skip);
}
#endif
}  // namespace SYMCELL_NS

#if !SYMCELL_SECOND_UNIT
static const sc::Operators _operators(SC_STRING(SYMCELL_NS), c10::CppTypeToScalarType<SYMCELL_SCALAR>::value, 2, {
  {"tangent_forward(Tensor[] _xs, Tensor[] _inits, Tensor[] _params, Tensor[] _ys, Tensor[] _res, Tensor[] _v_xs, Tensor[] _v_inits, Tensor[] _v_params, int[] _dims, bool _save, bool _bf16, Tensor _lengths, int[] _skip) -> Tensor[]", {{"xs", 1}, {"inits", 2}, {"params", 4}, {"ys", 1}, {"res", 2}, {"v_xs", 1}, {"v_inits", 2}, {"v_params", 4}}, true, {0, 0}, &SYMCELL_NS::tangent_forward},
  {"tangent_backward(Tensor[] _d_ys, Tensor[] _d_finals, Tensor[] _xs, Tensor[] _inits, Tensor[] _params, Tensor[] _ys, Tensor[] _res, Tensor[] _v_d_ys, Tensor[] _v_d_finals, Tensor[] _v_xs, Tensor[] _v_inits, Tensor[] _v_params, Tensor[] _v_ys, Tensor[] _v_res, int[] _dims, bool _bf16, Tensor _lengths, int[] _skip) -> Tensor[]", {{"d_ys", 1}, {"d_finals", 2}, {"xs", 1}, {"inits", 2}, {"params", 4}, {"ys", 1}, {"res", 2}, {"v_d_ys", 1}, {"v_d_finals", 2}, {"v_xs", 1}, {"v_inits", 2}, {"v_params", 4}, {"v_ys", 1}, {"v_res", 2}}, false, {2, 0}, &SYMCELL_NS::tangent_backward},
}, __FILE__, __LINE__);
#endif
