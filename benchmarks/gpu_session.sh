#!/usr/bin/env bash
# What a session with a GPU runs, in one device call (at most 10 minutes): the CUDA tests of the triton
# backend, benchmarks/bench_gpu.py and benchmarks/probe_backward.py. Logs go to $OUT (the device tool's folder
# that comes back), else ./gpu-logs. Run from the repository root:
#
#     bash benchmarks/gpu_session.sh            # tests, issue 15's benchmark, the probes, tests, the benchmark
#     bash benchmarks/gpu_session.sh --quick    # tests, then bench_gpu.py --quick (a smoke test)
#
# symcell is used from the checkout (PYTHONPATH): the device machine has torch, triton, sympy and hypothesis,
# and no network to install anything.
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    lscpu | grep "Model name"
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$out/machine.txt"
# what to run first when the device time may run out: the split kernel's own GPU tests, then the benchmark (its
# tables print as they finish), then the other CUDA tests. A test that hangs (a grid barrier that never opens) is
# stopped by pytest-timeout, which ends that pytest run with the hung test's stack.
tests() {   # log, seconds, test files...
    local log=$1 limit=$2; shift 2
    timeout "$limit" python3 -m pytest -q -p no:cacheprovider --timeout 90 --timeout-method thread "$@" \
        -m "triton or gpu" 2>&1 | tee "$out/$log"
    echo "tests exit: ${PIPESTATUS[0]}" | tee -a "$out/$log"
}
# the split, the barriers, the precisions, one compile whatever T and B (the resident path's tests, which compile
# two variants of seven cells, come after the benchmark)
resident="on_chip or second_derivatives or loaded_ahead or split_dot or split_by_its_writer or two_batch or across_phases or more_than_16"
tests tests-split.log 100 tests/test_triton_kernels.py -k "not ($resident)"
# issue 15's case: LSTM (beside it the same module with each setting off), GRU and LLTM in bfloat16 against cuDNN,
# and their time per FLOP
timeout 150 python3 benchmarks/bench_gpu.py --issue --rounds 3 2>&1 | tee "$out/bench-issue.log"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$out/bench-issue.log"
# where the backward step's time goes (the generated LSTM backward, one thing edited out at a time; about 20 s;
# benchmarks/probe_step.py does the same for a stand-alone forward step)
timeout 80 python3 benchmarks/probe_backward.py 2>&1 | tee "$out/probe.log"
# the forward step's fixed costs (the barrier, the gates' round trip through memory: BENCHMARKS.md's model)
timeout 50 python3 benchmarks/probe_backward.py --forward 2>&1 | tee "$out/probe-forward.log"
# the resident path (weight slices on chip, bfloat16 tensor-core products) against the streamed kernels
tests tests-resident.log 150 tests/test_triton_kernels.py -k "$resident"
# every zoo cell against the reference backend (values, gradients, lengths); 16-bit modules; nn.LSTM/nn.GRU
# parity (cuDNN's TF32 off there)
tests tests.log 170 tests/test_backends.py tests/test_low_precision.py tests/test_nn_parity.py
# the other sizes and dtypes (float32, float16, B=64 T=512 H=256), as long as the call has time
timeout 100 python3 benchmarks/bench_gpu.py --rounds 3 "$@" 2>&1 | tee "$out/bench.log"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$out/bench.log"
