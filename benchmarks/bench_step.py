"""One step of a cell, as a decoder or a sampler calls it (x of shape (B, I)): symcell's LSTMCell and GRUCell on
the cpp backend against nn.LSTMCell and nn.GRUCell with the same weights, with autograd recording, under no_grad,
and a training step's forward and backward (of the outputs' sum, into the parameters' .grad); and a short
sequence (T=4) through a stacked bidirectional LSTM (2 layers: four scans a call) against nn.LSTM. At these sizes
a call is mostly Python around the kernels, so this measures symcell's per-call overhead.

    python benchmarks/bench_step.py                      # B=4, I=32, H=64
    python benchmarks/bench_step.py --batch 1 --hidden 256 --rounds 7
    python benchmarks/bench_step.py --dtype bfloat16 --input 256 --hidden 512 --calls 300   # a bfloat16 model's

Medians of interleaved rounds: each round times every contender once, in turn, over --calls calls.
"""
import argparse
import statistics

import torch
from torch import nn

import symcell
from measure import cpu_model, per_call_us


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--input", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the modules' parameters and the tensors passed (nn's and symcell's alike)")
    args = ap.parse_args()
    torch.manual_seed(0)
    B, I, H, dtype = args.batch, args.input, args.hidden, getattr(torch, args.dtype)
    # (bfloat16: both round their results to it, from float32 sums in other orders)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    x = torch.randn(B, I, dtype=dtype)
    h, c = torch.zeros(B, H, dtype=dtype), torch.zeros(B, H, dtype=dtype)
    contenders = {}
    for name, ours, theirs, state in (("LSTMCell", symcell.cells.LSTMCell, nn.LSTMCell, (h, c)),
                                      ("GRUCell", symcell.cells.GRUCell, nn.GRUCell, h)):
        cell, ref = ours(I, H, backend="cpp", dtype=dtype), theirs(I, H, dtype=dtype)
        ref.load_state_dict(cell.state_dict())
        torch.testing.assert_close(cell(x, state), ref(x, state), **tol)
        contenders[f"symcell {name}"] = (lambda m=cell, s=state: m(x, s))
        contenders[f"nn.{name}"] = (lambda m=ref, s=state: m(x, s))
    lstm, ref = (m(I, H, num_layers=2, bidirectional=True, dtype=dtype) for m in (symcell.cells.LSTM, nn.LSTM))
    ref.load_state_dict(lstm.state_dict())
    xs = torch.randn(4, B, I, dtype=dtype)
    torch.testing.assert_close(lstm(xs), ref(xs), **tol)
    contenders["symcell LSTM 2 layers bidir. T=4"] = lambda: lstm(xs)
    contenders["nn.LSTM 2 layers bidir. T=4"] = lambda: ref(xs)
    modes = {"grad": lambda fn: fn, "no_grad": lambda fn: fn, "train": lambda fn: lambda: _total(fn()).backward()}
    times = {(mode, k): [] for mode in modes for k in contenders}
    for _ in range(args.rounds):
        for mode, call in modes.items():
            with torch.set_grad_enabled(mode != "no_grad"):
                for k, fn in contenders.items():
                    per_call_us(call(fn), 50)   # (warm)
                    times[mode, k].append(per_call_us(call(fn), args.calls))
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; B={B} I={I} H={H} "
          f"{args.dtype}, medians of {args.rounds} rounds of {args.calls} calls")
    print(f"| one call | {'with autograd (us)':>18} | {'no_grad (us)':>12} | {'forward+backward (us)':>21} |")
    print("|---|---:|---:|---:|")
    for k in contenders:
        med = {mode: statistics.median(times[mode, k]) for mode in modes}
        print(f"| {k} | {med['grad']:18.1f} | {med['no_grad']:12.1f} | {med['train']:21.1f} |")


def _total(out):
    """the sum of every tensor in a module's output (nested tuples), in float32: a training step's loss"""
    if isinstance(out, torch.Tensor):
        return out.float().sum()
    return sum(_total(o) for o in out)


if __name__ == "__main__":
    main()
