"""Short calls on the cpp backend: matmuls on the weights as stored against copies of them made per call,
transposed and in panels (SYMCELL_DIRECT=1 / 0, read every call), and the default, which chooses by the call's
steps and rows (sc.h's direct and direct_grads). A copy costs a pass over the weights per call and makes every
step's GEMM faster; this finds where that pays. LSTM, forward under no_grad and forward+backward, beside nn.LSTM
with the same weights.

    python benchmarks/bench_direct.py                      # B in 1, 4, 16; H in 64, 256; T in 1, 2, 4, 8
    python benchmarks/bench_direct.py --hidden 512 1024 --batch 1 4 --steps 1 4 16 --rounds 3

Medians of interleaved rounds: each round times every contender once, in turn.
"""
import os
import statistics

import torch
from torch import nn

import symcell
from measure import calls_in, cpu_model, grid_args, per_call_us


def main():
    args = grid_args(__doc__, hidden=[64, 256], steps=[1, 2, 4, 8])
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; LSTM, input size = H; "
          f"medians of {args.rounds} rounds (us a call)")
    print("| B | H | T | mode | copies | as stored | default | nn.LSTM | as stored / copies | default / copies |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for H in args.hidden:
        torch.manual_seed(0)
        ours, ref = symcell.cells.LSTM(H, H, backend="cpp"), nn.LSTM(H, H)
        ref.load_state_dict(ours.state_dict())
        for B in args.batch:
            for T in args.steps:
                x = torch.randn(T, B, H, requires_grad=True)
                torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-4, atol=1e-5)

                def forward(m):
                    with torch.no_grad():
                        m(x)

                def training(m):
                    y, (h, c) = m(x)
                    (y.sum() + c.sum()).backward()
                for mode, call in (("forward", forward), ("fwd+bwd", training)):
                    calls = calls_in(args.budget_ms, lambda: call(ours))
                    times = {k: [] for k in ("0", "1", "default", "nn")}
                    for _ in range(args.rounds):
                        for k in times:
                            if k == "nn":
                                times[k].append(per_call_us(lambda: call(ref), calls))
                                continue
                            if k != "default":
                                os.environ["SYMCELL_DIRECT"] = k
                            try:
                                times[k].append(per_call_us(lambda: call(ours), calls))
                            finally:
                                os.environ.pop("SYMCELL_DIRECT", None)
                    p, s, d, n = (statistics.median(times[k]) for k in ("0", "1", "default", "nn"))
                    print(f"| {B} | {H} | {T} | {mode} | {p:.1f} | {s:.1f} | {d:.1f} | {n:.1f} | {s / p:.2f} | "
                          f"{d / p:.2f} |", flush=True)


if __name__ == "__main__":
    main()
