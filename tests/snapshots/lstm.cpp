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
std::vector<at::Tensor> forward_impl(at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::IntArrayRef _dims, bool _save, const at::Tensor& _lengths, at::IntArrayRef _skip) {
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
  const int64_t _steps = _xs[0].size(0), _batch = _xs[0].size(1);
  // per-row sequence lengths (int64), or none: every row runs all _steps
  // (read once checked: sc::expect_lengths, below, names another dtype)
  const int64_t* _len = _lengths.numel() > 0 && _lengths.scalar_type() == at::kLong ? _lengths.data_ptr<int64_t>() : nullptr;
  const auto _opt = _xs[0].options();
  sc::expect<scalar_t>(_xs[0], {_steps, _batch, _n_x}, "xs[0] (x)");
  sc::expect<scalar_t>(_inits[0], {_batch, _n_h}, "inits[0] (h)", ", with B from xs[0] (x),");
  sc::expect<scalar_t>(_inits[1], {_batch, _n_c}, "inits[1] (c)", ", with B from xs[0] (x),");
  sc::expect_weight<scalar_t>(_params[0], {4*_dim_H, _dim_I}, "params[0] (weight_ih)");
  sc::expect_weight<scalar_t>(_params[1], {4*_dim_H, _dim_H}, "params[1] (weight_hh)");
  sc::expect<scalar_t>(_params[2], {4*_dim_H}, "params[2] (bias_ih)");
  sc::expect<scalar_t>(_params[3], {4*_dim_H}, "params[3] (bias_hh)");
  sc::expect_lengths(_lengths, _batch, _steps);
  const scalar_t* _seq_x = sc::ptr<scalar_t>(_xs[0]);
  const scalar_t* _init_h = sc::ptr<scalar_t>(_inits[0]);
  const scalar_t* _init_c = sc::ptr<scalar_t>(_inits[1]);
  const scalar_t* bias_ih = sc::ptr<scalar_t>(_params[2]);
  const scalar_t* bias_hh = sc::ptr<scalar_t>(_params[3]);
  const bool _direct = sc::direct(_steps, _batch, sc::is16(_params[0]) || sc::is16(_params[1]));   // the matmuls on their weights as stored
  // the weight matrices as given (a 16-bit one as it is, where scalar_t is float: sc::weight), handed to every GEMM and panel copy as sc::Stored
  const sc::Stored<scalar_t> _w_weight_ih = sc::weight<scalar_t>(_params[0]);
  const sc::Stored<scalar_t> _w_weight_hh = sc::weight<scalar_t>(_params[1]);
  at::Tensor _t_h_new = sc::empty({_steps, _batch, _n_h_new}, _opt);
  at::Tensor _res_c_new = !_save ? at::Tensor() : _len != nullptr ? sc::zeros({_steps, _batch, _n_c_new}, _opt) : sc::empty({_steps, _batch, _n_c_new}, _opt);
  at::Tensor _pp_c_new = sc::empty({2, _batch, _n_c_new}, _opt);   // two alternating slots
  at::Tensor _res_gates = !_save ? at::Tensor() : _len != nullptr ? sc::zeros({_steps, _batch, _n_gates}, _opt) : sc::empty({_steps, _batch, _n_gates}, _opt);
  at::Tensor _buf_gates = sc::empty({_batch, _n_gates}, _opt);   // per-step scratch
  const bool _hoist_gates = sc::hoist(_batch);
  scalar_t* _wt_gates = sc::ptr<scalar_t>(sc::workspace(0, sc::step_panels_numel((_dim_H + _dim_I), _n_gates), _opt));
  if (!(_direct || _hoist_gates)) sc::transpose_step_panels(_w_weight_ih, _ld_weight_ih, _n_gates, _dim_I, _wt_gates, (_dim_H + _dim_I) * sc::PANEL, 0);
  else if (!_direct) sc::clear_last_pairs(_wt_gates, (_dim_H + _dim_I) * sc::PANEL, _n_gates, 0, _dim_I);
  if (!_direct) sc::transpose_step_panels(_w_weight_hh, _ld_weight_hh, _n_gates, _dim_H, _wt_gates, (_dim_H + _dim_I) * sc::PANEL, _dim_I);
  // x @ weight_ih[:, 0:_dim_I].T for every step at once, when a thread's rows are few
  at::Tensor _t_pre_gates = _hoist_gates ? sc::empty({_steps * _batch, _n_gates}, _opt) : at::Tensor();
  scalar_t* _pre_gates = sc::ptr<scalar_t>(_t_pre_gates);
  if (_hoist_gates) sc::mm_nt(_steps * _batch, _n_gates, _dim_I, _seq_x, _n_x, _w_weight_ih, _ld_weight_ih, _pre_gates, _n_gates);
  at::Tensor _operands_gates = sc::empty({_batch, (_dim_H + _dim_I)}, _opt);
  // the time loop, on batch rows [_b0, _b1) (see sc::scan_rows: its weights' bytes choose how it splits)
  sc::scan_rows(_batch, sizeof(scalar_t) * (4*_dim_H * _dim_I + 4*_dim_H * _dim_H), [&](int64_t _b0, int64_t _b1) {
    const int64_t _nb = _b1 - _b0;
    const scalar_t* h = _init_h + _b0 * _n_h;
    const scalar_t* c = _init_c + _b0 * _n_c;
    for (int64_t _t = 0; _t < _steps; ++_t) {
      const scalar_t* x = _seq_x + (_t * _batch + _b0) * _n_x;
      scalar_t* h_new = (sc::ptr<scalar_t>(_t_h_new) + (_t) * _batch * _n_h_new) + _b0 * _n_h_new;
      scalar_t* c_new = (_save ? sc::ptr<scalar_t>(_res_c_new) + (_t) * _batch * _n_c_new : sc::ptr<scalar_t>(_pp_c_new) + ((_t) & 1) * _batch * _n_c_new) + _b0 * _n_c_new;
      scalar_t* gates = (_save ? sc::ptr<scalar_t>(_res_gates) + (_t) * _batch * _n_gates : sc::ptr<scalar_t>(_buf_gates)) + _b0 * _n_gates;
      int64_t _na = _nb;   // the rows up to the last one still running (see render.py)
      if (_len != nullptr) while (_na > 0 && _len[_b0 + _na - 1] <= _t) --_na;
      // gates = the input term's rows from before the loop (_pre_gates) + the rest, or all of it here
      if (_hoist_gates) {
        if (_na > 0) std::memcpy(gates, _pre_gates + (_t * _batch + _b0) * _n_gates, sizeof(scalar_t) * _na * _n_gates);
        if (_direct) {
          sc::mm_stored(_na, _n_gates, _dim_H, h, _n_h, _w_weight_hh, _ld_weight_hh, true, gates, _n_gates);
        } else {
          sc::mm_panels(_na, _n_gates, _dim_H, h, _n_h, _wt_gates, (_dim_H + _dim_I) * sc::PANEL, _dim_I, true, gates, _n_gates);
        }
      } else {
        // gates = x[0:_dim_I] @ weight_ih[:, 0:_dim_I].T + h[0:_dim_H] @ weight_hh[:, 0:_dim_H].T
        if (_direct) {
          sc::mm_stored(_na, _n_gates, _dim_I, x, _n_x, _w_weight_ih, _ld_weight_ih, false, gates, _n_gates);
          sc::mm_stored(_na, _n_gates, _dim_H, h, _n_h, _w_weight_hh, _ld_weight_hh, true, gates, _n_gates);
        } else {
          { scalar_t* _cat = sc::ptr<scalar_t>(_operands_gates) + (_b0) * (_dim_H + _dim_I);
            for (int64_t _r = 0; _r < _na; ++_r) {
              std::memcpy(_cat + _r * (_dim_H + _dim_I) + 0, x + _r * _n_x, sizeof(scalar_t) * _dim_I);
              std::memcpy(_cat + _r * (_dim_H + _dim_I) + _dim_I, h + _r * _n_h, sizeof(scalar_t) * _dim_H);
            }
            sc::mm_panels(_na, _n_gates, (_dim_H + _dim_I), _cat, (_dim_H + _dim_I), _wt_gates, (_dim_H + _dim_I) * sc::PANEL, 0, false, gates, _n_gates);
          }
        }
      }
      {  // fused region: 2 output(s), _dim_H features per row
        const int64_t _n = _dim_H;
        sc::rows(_na, _n, [&](int64_t _r0, int64_t _r1) {
          for (int64_t _r = _r0; _r < _r1; ++_r) {
            const scalar_t* _r_bias_hh = bias_hh;
            const scalar_t* _r_bias_ih = bias_ih;
            const scalar_t* _r_c = c + _r * _n_c;
            const scalar_t* _r_gates = gates + _r * _n_gates;
            scalar_t* _w_c_new = c_new + _r * _n_c_new;
            scalar_t* _w_h_new = h_new + _r * _n_h_new;
            if (_len != nullptr && _t >= _len[_b0 + _r]) {   // an ended row: zeros, nothing added
              for (int64_t _j = 0; _j < _n; ++_j) _w_h_new[_j] = 0;
              for (int64_t _j = 0; _j < _n; ++_j) _w_c_new[_j] = 0;
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
              const scalar_t _e0 = c*sc::sigmoid(bias_hh_1 + bias_ih_1 + gates_1) + sc::sigmoid(bias_hh_0 + bias_ih_0 + gates_0)*sc::tanh(bias_hh_2 + bias_ih_2 + gates_2);
              _w_h_new[_j] = sc::sigmoid(bias_hh_3 + bias_ih_3 + gates_3)*sc::tanh(_e0);
              _w_c_new[_j] = _e0;
            }
          }
        });
      }
      if (_len != nullptr) {  // rows past their own length keep their state
        for (int64_t _r = 0; _r < _nb; ++_r) {
          if (_t >= _len[_b0 + _r]) {
            std::memcpy(h_new + _r * _n_h, h + _r * _n_h, sizeof(scalar_t) * _n_h);
            std::memcpy(c_new + _r * _n_c, c + _r * _n_c, sizeof(scalar_t) * _n_c);
          }
        }
      }
      h = h_new;
      c = c_new;
    }
  });
  const scalar_t* _last_h = _steps > 0 ? (sc::ptr<scalar_t>(_t_h_new) + (_steps - 1) * _batch * _n_h_new) : _init_h;
  const scalar_t* _last_c = _steps > 0 ? (_save ? sc::ptr<scalar_t>(_res_c_new) + (_steps - 1) * _batch * _n_c_new : sc::ptr<scalar_t>(_pp_c_new) + ((_steps - 1) & 1) * _batch * _n_c_new) : _init_c;
  std::vector<at::Tensor> _out;
  _out.push_back(_t_h_new);
  { at::Tensor _f = sc::empty({_batch, _n_h}, _opt); if (_batch * _n_h > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last_h, sizeof(scalar_t) * _batch * _n_h); _out.push_back(_f); }
  { at::Tensor _f = sc::empty({_batch, _n_c}, _opt); if (_batch * _n_c > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last_c, sizeof(scalar_t) * _batch * _n_c); _out.push_back(_f); }
  if (_save) {
    _out.push_back(_res_gates);
    _out.push_back(_res_c_new);
  }
  return _out;
}

template <typename scalar_t>
std::vector<at::Tensor> backward_impl(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::IntArrayRef _dims, const at::Tensor& _lengths, at::IntArrayRef _skip) {
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
  const int64_t _n_d_x = _dim_I;
  const int64_t _n_d_gates = 4*_dim_H;
  const int64_t _ld_d_weight_ih = _dim_I;  // d_weight_ih is (4*_dim_H, _dim_I)
  const int64_t _ld_d_weight_hh = _dim_H;  // d_weight_hh is (4*_dim_H, _dim_H)
  const int64_t _n_d_bias_ih = 4*_dim_H;
  const int64_t _n_d_bias_hh = 4*_dim_H;
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
  sc::expect_weight<scalar_t>(_params[0], {4*_dim_H, _dim_I}, "params[0] (weight_ih)");
  sc::expect_weight<scalar_t>(_params[1], {4*_dim_H, _dim_H}, "params[1] (weight_hh)");
  sc::expect<scalar_t>(_params[2], {4*_dim_H}, "params[2] (bias_ih)");
  sc::expect<scalar_t>(_params[3], {4*_dim_H}, "params[3] (bias_hh)");
  sc::expect<scalar_t>(_ys[0], {_steps, _batch, _n_h_new}, "ys[0] (h_new)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_res[0], {_steps, _batch, _n_gates}, "res[0] (gates)", ", with T and B from xs[0] (x),");
  sc::expect<scalar_t>(_res[1], {_steps, _batch, _n_c_new}, "res[1] (c_new)", ", with T and B from xs[0] (x),");
  sc::expect_lengths(_lengths, _batch, _steps);
  const scalar_t* _seq__dys_h = sc::ptr<scalar_t>(_d_ys[0]);
  const scalar_t* _init_d_h_new = sc::ptr<scalar_t>(_d_finals[0]);
  const scalar_t* _init_d_c_new = sc::ptr<scalar_t>(_d_finals[1]);
  const scalar_t* _seq_x = sc::ptr<scalar_t>(_xs[0]);
  const scalar_t* _init_h = sc::ptr<scalar_t>(_inits[0]);
  const scalar_t* _init_c = sc::ptr<scalar_t>(_inits[1]);
  const scalar_t* bias_ih = sc::ptr<scalar_t>(_params[2]);
  const scalar_t* bias_hh = sc::ptr<scalar_t>(_params[3]);
  const scalar_t* _seq_h_new = sc::ptr<scalar_t>(_ys[0]);
  const scalar_t* _seq_gates = sc::ptr<scalar_t>(_res[0]);
  const scalar_t* _seq_c_new = sc::ptr<scalar_t>(_res[1]);
  const bool _direct_grads = sc::direct_grads(_steps, _batch, _ld_weight_hh * int64_t(sizeof(scalar_t)), sc::is16(_params[0]) || sc::is16(_params[1]));   // the transposed matmuls on theirs
  // the weight matrices as given (a 16-bit one as it is, where scalar_t is float: sc::weight), handed to every GEMM and panel copy as sc::Stored
  const sc::Stored<scalar_t> _w_weight_ih = sc::weight<scalar_t>(_params[0]);
  const sc::Stored<scalar_t> _w_weight_hh = sc::weight<scalar_t>(_params[1]);
  // _skip: one flag per argument tensor (all zeros), then one per result (not wanted)
  const bool _unwanted_d_x = sc::flag(_skip, 13);
  const bool _unwanted_d_h_new = sc::flag(_skip, 14);
  const bool _unwanted_d_weight_ih = sc::flag(_skip, 16);
  const bool _unwanted_d_weight_hh = sc::flag(_skip, 17);
  at::Tensor _pp_d_h = sc::empty({2, _batch, _n_d_h}, _opt);   // two alternating slots
  at::Tensor _pp_d_c = sc::empty({2, _batch, _n_d_c}, _opt);   // two alternating slots
  at::Tensor _t_d_x = sc::zeros({_steps, _batch, _n_d_x}, _opt);
  scalar_t* _seq_d_x = sc::ptr<scalar_t>(_t_d_x);
  at::Tensor _t_d_gates = sc::zeros({_steps, _batch, _n_d_gates}, _opt);
  scalar_t* _seq_d_gates = sc::ptr<scalar_t>(_t_d_gates);
  const bool _g16_d_weight_ih = sc::is16(_params[0]);   // (so is its gradient)
  const auto _opt_d_weight_ih = _g16_d_weight_ih ? _opt.dtype(_params[0].scalar_type()) : _opt;
  at::Tensor _t_d_weight_ih = _steps == 0 ? sc::zeros({4*_dim_H, _dim_I}, _opt_d_weight_ih) : sc::empty({4*_dim_H, _dim_I}, _opt_d_weight_ih);
  scalar_t* d_weight_ih = _g16_d_weight_ih ? nullptr : sc::ptr<scalar_t>(_t_d_weight_ih);
  const sc::Out16 _p16_d_weight_ih = sc::out16(_t_d_weight_ih);
  const bool _g16_d_weight_hh = sc::is16(_params[1]);   // (so is its gradient)
  const auto _opt_d_weight_hh = _g16_d_weight_hh ? _opt.dtype(_params[1].scalar_type()) : _opt;
  at::Tensor _t_d_weight_hh = _steps == 0 ? sc::zeros({4*_dim_H, _dim_H}, _opt_d_weight_hh) : sc::empty({4*_dim_H, _dim_H}, _opt_d_weight_hh);
  scalar_t* d_weight_hh = _g16_d_weight_hh ? nullptr : sc::ptr<scalar_t>(_t_d_weight_hh);
  const sc::Out16 _p16_d_weight_hh = sc::out16(_t_d_weight_hh);
  at::Tensor _t_d_bias_ih = sc::zeros({4*_dim_H}, _opt);
  scalar_t* d_bias_ih = sc::ptr<scalar_t>(_t_d_bias_ih);
  at::Tensor _parts_d_bias_ih = sc::zeros({sc::threads(), _n_d_bias_ih}, _opt);
  at::Tensor _t_d_bias_hh = sc::zeros({4*_dim_H}, _opt);
  scalar_t* d_bias_hh = sc::ptr<scalar_t>(_t_d_bias_hh);
  at::Tensor _parts_d_bias_hh = sc::zeros({sc::threads(), _n_d_bias_hh}, _opt);
  scalar_t* _wp_0 = sc::ptr<scalar_t>(sc::workspace(0, sc::step_panels_numel(_n_d_gates, _dim_H), _opt));   // weight_hh in panels
  if (!(_direct_grads || ((_steps <= 1) && _unwanted_d_h_new))) sc::copy_step_panels(_w_weight_hh, _ld_weight_hh, _n_d_gates, _dim_H, _wp_0);
  if (_batch * _n_d_h_new > 0) std::memcpy(sc::ptr<scalar_t>(_pp_d_h) + (((_steps - 1) + 1) & 1) * _batch * _n_d_h_new, _init_d_h_new, sizeof(scalar_t) * _batch * _n_d_h_new);
  if (_batch * _n_d_c_new > 0) std::memcpy(sc::ptr<scalar_t>(_pp_d_c) + (((_steps - 1) + 1) & 1) * _batch * _n_d_c_new, _init_d_c_new, sizeof(scalar_t) * _batch * _n_d_c_new);
  // the time loop, on batch rows [_b0, _b1) (see sc::scan_rows: its weights' bytes choose how it splits)
  sc::scan_rows(_batch, sizeof(scalar_t) * (4*_dim_H * _dim_I + 4*_dim_H * _dim_H), [&](int64_t _b0, int64_t _b1) {
    const int64_t _nb = _b1 - _b0;
    scalar_t* d_h_new = sc::ptr<scalar_t>(_pp_d_h) + (((_steps - 1) + 1) & 1) * _batch * _n_d_h_new + _b0 * _n_d_h_new;
    scalar_t* d_c_new = sc::ptr<scalar_t>(_pp_d_c) + (((_steps - 1) + 1) & 1) * _batch * _n_d_c_new + _b0 * _n_d_c_new;
    for (int64_t _t = _steps - 1; _t >= 0; --_t) {
      const scalar_t* c = _t > 0 ? _seq_c_new + ((_t - 1) * _batch + _b0) * _n_c : _init_c + _b0 * _n_c;
      const scalar_t* gates = _seq_gates + (_t * _batch + _b0) * _n_gates;
      const scalar_t* _dys_h = _seq__dys_h + (_t * _batch + _b0) * _n__dys_h;
      scalar_t* d_h = (sc::ptr<scalar_t>(_pp_d_h) + ((_t) & 1) * _batch * _n_d_h) + _b0 * _n_d_h;
      sc::zero(d_h, _nb * _n_d_h);
      scalar_t* d_c = (sc::ptr<scalar_t>(_pp_d_c) + ((_t) & 1) * _batch * _n_d_c) + _b0 * _n_d_c;
      sc::zero(d_c, _nb * _n_d_c);
      scalar_t* d_gates = _seq_d_gates + (_t * _batch + _b0) * _n_d_gates;
      int64_t _na = _nb;   // the rows up to the last one still running (see render.py)
      if (_len != nullptr) while (_na > 0 && _len[_b0 + _na - 1] <= _t) --_na;
      for (int64_t _i = 0; _i < _nb * _n_d_h_new; ++_i) d_h_new[_i] += _dys_h[_i];
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
      {  // fused region: 13 output(s), _dim_H features per row
        const int64_t _n = _dim_H;
        sc::rows(_na, _n, [&](int64_t _r0, int64_t _r1) {
          scalar_t* _p_d_bias_hh = sc::partial<scalar_t>(_parts_d_bias_hh, _n_d_bias_hh);   // summed over rows
          scalar_t* _p_d_bias_ih = sc::partial<scalar_t>(_parts_d_bias_ih, _n_d_bias_ih);   // summed over rows
          for (int64_t _r = _r0; _r < _r1; ++_r) {
            const scalar_t* _r_bias_hh = bias_hh;
            const scalar_t* _r_bias_ih = bias_ih;
            const scalar_t* _r_c = c + _r * _n_c;
            const scalar_t* _r_d_c_new = d_c_new + _r * _n_d_c_new;
            const scalar_t* _r_d_h_new = d_h_new + _r * _n_d_h_new;
            const scalar_t* _r_gates = gates + _r * _n_gates;
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
              const scalar_t _c0 = sc::sigmoid(bias_hh_3 + bias_ih_3 + gates_3);
              const scalar_t _c1 = sc::sigmoid(bias_hh_1 + bias_ih_1 + gates_1);
              const scalar_t _c2 = _c1*c;
              const scalar_t _c3 = sc::sigmoid(bias_hh_0 + bias_ih_0 + gates_0);
              const scalar_t _c4 = sc::tanh(bias_hh_2 + bias_ih_2 + gates_2);
              const scalar_t _c5 = _c3*_c4;
              const scalar_t _c6 = sc::tanh(_c2 + _c5);
              const scalar_t _c7 = -_c0*_c6*d_h_new*(_c0 - 1);
              const scalar_t _c8 = -_c0*d_h_new*((_c6*_c6) - 1) + d_c_new;
              const scalar_t _c9 = -_c8;
              const scalar_t _c10 = _c2*_c9*(_c1 - 1);
              const scalar_t _c11 = _c5*_c9*(_c3 - 1);
              const scalar_t _c12 = _c3*_c9*((_c4*_c4) - 1);
              _w_d_gates[3*_dim_H + _j] += _c7;
              _w_d_gates[_dim_H + _j] += _c10;
              _w_d_c[_j] += _c1*_c8;
              _w_d_gates[_j] += _c11;
              _w_d_gates[2*_dim_H + _j] += _c12;
              _p_d_bias_ih[3*_dim_H + _j] += _c7;
              _p_d_bias_hh[3*_dim_H + _j] += _c7;
              _p_d_bias_ih[_dim_H + _j] += _c10;
              _p_d_bias_hh[_dim_H + _j] += _c10;
              _p_d_bias_ih[_j] += _c11;
              _p_d_bias_hh[_j] += _c11;
              _p_d_bias_ih[2*_dim_H + _j] += _c12;
              _p_d_bias_hh[2*_dim_H + _j] += _c12;
            }
          }
        });
      }
      if (!((_t == 0) && _unwanted_d_h_new)) {
        // d_h[0:_dim_H] += d_gates @ weight_hh[:, 0:_dim_H]
        if (_direct_grads) sc::mm_kn(_na, _dim_H, _n_d_gates, d_gates, _n_d_gates, _w_weight_hh, _ld_weight_hh, true, d_h, _n_d_h);
        else sc::mm_panels(_na, _dim_H, _n_d_gates, d_gates, _n_d_gates, _wp_0, _n_d_gates * sc::PANEL, 0, true, d_h, _n_d_h);
      }
      d_h_new = d_h;
      d_c_new = d_c;
    }
  });
  const scalar_t* _last_d_h_new = _steps > 0 ? (sc::ptr<scalar_t>(_pp_d_h) + ((0) & 1) * _batch * _n_d_h) : _init_d_h_new;
  const scalar_t* _last_d_c_new = _steps > 0 ? (sc::ptr<scalar_t>(_pp_d_c) + ((0) & 1) * _batch * _n_d_c) : _init_d_c_new;
  // after the loop, over all _steps*_batch rows: one GEMM for all steps where the loop would run one per step
  if (_steps > 0) {
    {
      const scalar_t* x = _seq_x;
      scalar_t* d_x = _seq_d_x;
      scalar_t* d_gates = _seq_d_gates;
      if (!(_unwanted_d_x)) {
        // d_x[0:_dim_I] += d_gates @ weight_ih[:, 0:_dim_I]
        sc::mm_kn(_steps * _batch, _dim_I, _n_d_gates, d_gates, _n_d_gates, _w_weight_ih, _ld_weight_ih, true, d_x, _n_d_x);
      }
      if (!(_unwanted_d_weight_ih)) {
        // d_weight_ih[:, 0:_dim_I] = d_gates.T @ x
        if (_g16_d_weight_ih) {   // (16-bit, as its weight)
          sc::mm_tn16<scalar_t>(_n_d_gates, _dim_I, d_gates, _n_d_gates, _steps * _batch, x, _n_x, 0, nullptr, 0, _p16_d_weight_ih, _ld_d_weight_ih);
        } else {
          sc::mm_tn<scalar_t>(_n_d_gates, _dim_I, _steps * _batch, d_gates, _n_d_gates, x, _n_x, false, d_weight_ih, _ld_d_weight_ih);
        }
      }
      if (!(_unwanted_d_weight_hh)) {
        // d_weight_hh[:, 0:_dim_H] = d_gates.T @ h
        if (_g16_d_weight_hh) {   // (16-bit, as its weight)
          sc::mm_tn16<scalar_t>(_n_d_gates, _dim_H, d_gates, _n_d_gates, _batch, _init_h, _n_h, (_steps - 1) * _batch, _seq_h_new, _n_h, _p16_d_weight_hh, _ld_d_weight_hh);
        } else {
          sc::mm_tn<scalar_t>(_n_d_gates, _dim_H, _batch, d_gates, _n_d_gates, _init_h, _n_h, false, d_weight_hh, _ld_d_weight_hh);
          sc::mm_tn<scalar_t>(_n_d_gates, _dim_H, (_steps - 1) * _batch, d_gates + _batch * _n_d_gates, _n_d_gates, _seq_h_new, _n_h, true, d_weight_hh, _ld_d_weight_hh);
        }
      }
    }
  }
  sc::sum_partials(_parts_d_bias_ih, _n_d_bias_ih, d_bias_ih);
  sc::sum_partials(_parts_d_bias_hh, _n_d_bias_hh, d_bias_hh);
  std::vector<at::Tensor> _out;
  _out.push_back(_t_d_x);
  { at::Tensor _f = sc::empty({_batch, _n_d_h_new}, _opt); if (_batch * _n_d_h_new > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last_d_h_new, sizeof(scalar_t) * _batch * _n_d_h_new); _out.push_back(_f); }
  { at::Tensor _f = sc::empty({_batch, _n_d_c_new}, _opt); if (_batch * _n_d_c_new > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last_d_c_new, sizeof(scalar_t) * _batch * _n_d_c_new); _out.push_back(_f); }
  _out.push_back(_t_d_weight_ih);
  _out.push_back(_t_d_weight_hh);
  _out.push_back(_t_d_bias_ih);
  _out.push_back(_t_d_bias_hh);
  return _out;
}

#if SYMCELL_SECOND_UNIT
template std::vector<at::Tensor> backward_impl<SYMCELL_SCALAR>(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::IntArrayRef _dims, const at::Tensor& _lengths, at::IntArrayRef _skip);
#else
extern template std::vector<at::Tensor> backward_impl<SYMCELL_SCALAR>(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, at::IntArrayRef _dims, const at::Tensor& _lengths, at::IntArrayRef _skip);

std::vector<at::Tensor> forward(const sc::Call& _c) {
  return forward_impl<SYMCELL_SCALAR>(_c.lists[0], _c.lists[1], _c.lists[2], _c.dims, _c.save, _c.lengths, _c.skip);
}
std::vector<at::Tensor> backward(const sc::Call& _c) {
  return backward_impl<SYMCELL_SCALAR>(_c.lists[0], _c.lists[1], _c.lists[2], _c.lists[3], _c.lists[4], _c.lists[5], _c.lists[6], _c.dims, _c.lengths, _c.skip);
}
#endif
}  // namespace SYMCELL_NS

#if !SYMCELL_SECOND_UNIT
static const sc::Operators _operators(SC_STRING(SYMCELL_NS), c10::CppTypeToScalarType<SYMCELL_SCALAR>::value, 2, {
  {"forward(Tensor[] _xs, Tensor[] _inits, Tensor[] _params, int[] _dims, bool _save, bool _bf16, Tensor _lengths, int[] _skip) -> Tensor[]", {{"xs", 1}, {"inits", 2}, {"params", 4}}, true, {0, 0}, &SYMCELL_NS::forward},
  {"backward(Tensor[] _d_ys, Tensor[] _d_finals, Tensor[] _xs, Tensor[] _inits, Tensor[] _params, Tensor[] _ys, Tensor[] _res, int[] _dims, bool _bf16, Tensor _lengths, int[] _skip) -> Tensor[]", {{"d_ys", 1}, {"d_finals", 2}, {"xs", 1}, {"inits", 2}, {"params", 4}, {"ys", 1}, {"res", 2}}, false, {2, 0}, &SYMCELL_NS::backward},
}, __FILE__, __LINE__);
#endif
