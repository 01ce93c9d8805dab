"""How long defining and making a cell takes as its step deepens: a highway network (Zilly et al. 2017) of L layers
a time step, each t = sigmoid(B @ h); h = tanh(A @ h) * t + h * (1 - t), the reference backend (no build).

    python benchmarks/bench_define.py                  # L = 4 8 16 32 64
    python benchmarks/bench_define.py --depths 6 8 10

Each depth once, in a fresh process's first definition of it (no derivation is kept on disk for the trace; the
instance binds the sizes). Stops at a depth that took over --give-up seconds.
"""
import argparse
import time

import torch

import symcell
from measure import cpu_model
from symcell import sigmoid, tanh


def highway(depth):
    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"A": ("H", "H"), "B": ("H", "H")},
                    name=f"Highway{depth}")
    def step(x, h, A, B):
        h = h + x
        for _ in range(depth):
            t = sigmoid(B @ h)
            h = tanh(A @ h) * t + h * (1 - t)
        return h
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--give-up", type=float, default=60.0)
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; torch {torch.__version__}")
    print("| layers a step | define (s) | make an instance (s) |")
    print("|---:|---:|---:|")
    for depth in args.depths:
        t0 = time.perf_counter()
        cls = highway(depth)
        t1 = time.perf_counter()
        cls(H=3, backend="reference")
        t2 = time.perf_counter()
        print(f"| {depth} | {t1 - t0:.2f} | {t2 - t1:.2f} |", flush=True)
        if t2 - t0 > args.give_up:
            break


if __name__ == "__main__":
    main()
