"""torch.compile's time to first result: a symcell LSTM against a Python loop over time (the eager LSTM step, one
torch op per gate, as a user writes a new cell without symcell) and nn.LSTM, compiled with inductor, forward and
backward, at one sequence length and then at longer ones.

    python benchmarks/bench_compile.py                    # B=16 I=32 H=64, T=25 then 50 then 100
    python benchmarks/bench_compile.py --steps 50 100 200

Each contender runs in a fresh process with empty inductor and Triton caches (what a new model's first run
pays), so every number is a cold compile. A symcell scan is one operator at any T: the first call compiles its
graph, the next T recompiles it once with dynamic sizes (torch's automatic dynamic shapes), and then no T
compiles again. A loop is unrolled by dynamo: every new T is a new graph of T steps, forward and backward.
The cpp kernel is built (or loaded from symcell's cache) before the clock starts: that is symcell's build, not
torch.compile's.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import cpu_model

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time
import torch
from torch import nn
sys.path.insert(0, {here!r})
import symcell, eager
kind, steps, B, I, H = {kind!r}, {steps!r}, {B}, {I}, {H}
torch.manual_seed(0)
cell = symcell.cells.LSTM(I, H, backend="cpp")
ref = nn.LSTM(I, H)
ref.load_state_dict(cell.state_dict())
p = list(cell.parameters())
cell(torch.randn(2, 2, I))[0].sum().backward()   # (symcell's build or cache load, outside the clock)
run = {{"symcell": lambda x: cell(x)[0],
        "loop": lambda x: eager.lstm(x, torch.zeros(B, H), torch.zeros(B, H), *p)[0],
        "nn.LSTM": lambda x: ref(x)[0]}}[kind]
compiled = torch.compile(run)
out = []
for T in steps:
    x = torch.randn(T, B, I, requires_grad=True)
    t0 = time.perf_counter()
    compiled(x).sum().backward()
    first = time.perf_counter() - t0
    g, x.grad = x.grad, None
    t0 = time.perf_counter()
    compiled(x).sum().backward()   # (the same T again: run time only)
    again = time.perf_counter() - t0
    x.grad = None
    run(x).sum().backward()   # (eager, for the check)
    err = (g - x.grad).abs().max().item()
    out.append((T, first, again, err))
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--input", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    args = ap.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; B={args.batch} I={args.input} H={args.hidden}, "
          f"inductor, forward+backward; date {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    print("| contender | T | first call (compile + run), s | a second call, s | max abs diff of x.grad vs eager |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("symcell", "nn.LSTM", "loop"):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor"),
                       TRITON_CACHE_DIR=os.path.join(tmp, "triton"), TORCHINDUCTOR_FX_GRAPH_CACHE="0",
                       TORCHINDUCTOR_AUTOGRAD_CACHE="0")
            code = CHILD.format(here=str(HERE), kind=kind, steps=args.steps, B=args.batch, I=args.input,
                                H=args.hidden)
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"| {kind} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode} |")
            continue
        for T, first, again, err in json.loads(r.stdout.strip().splitlines()[-1]):
            print(f"| {kind} | {T} | {first:.2f} | {again:.3f} | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
