#!/usr/bin/env bash
# What a session with a GPU runs, in one device call (about 8 minutes on an H200): the CUDA tests of the triton
# backend, then benchmarks/bench_gpu.py. Logs go to $OUT (the device tool's folder that comes back), else
# ./gpu-logs. Run from the repository root:
#
#     bash benchmarks/gpu_session.sh            # tests, then the benchmark
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
# the split, the barriers, the precisions, one compile whatever T and B; every zoo cell against the reference
# backend (values, gradients, lengths); 16-bit modules; nn.LSTM/nn.GRU parity (cuDNN's TF32 off there)
timeout 330 python3 -m pytest -q -x -p no:cacheprovider \
    tests/test_triton_kernels.py tests/test_backends.py tests/test_low_precision.py tests/test_nn_parity.py \
    -m "triton or gpu" 2>&1 | tee "$out/tests.log"
echo "tests exit: ${PIPESTATUS[0]}" | tee -a "$out/tests.log"
timeout 240 python3 benchmarks/bench_gpu.py --rounds 3 "$@" 2>&1 | tee "$out/bench.log"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$out/bench.log"
