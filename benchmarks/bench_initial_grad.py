"""A training step whose initial state needs no gradient (hx omitted: zeros) against the same step given an initial
state that needs one, symcell's LSTM and GRU on the cpp backend beside nn's with the same weights: the backward's
last step multiplies the gates' gradient by W_hh only for an initial state's gradient, which autograd leaves out
where nobody wants it (skips.LAST), a T=1 call's only recurrent product of its backward. The ratio to read is each
module's "h0 without / with a gradient".

    python benchmarks/bench_initial_grad.py                              # float32, B in 1, 4, 16; H in 256, 1024
    python benchmarks/bench_initial_grad.py --bfloat16 --batch 64 --hidden 1024 --steps 1 --rounds 7
    python benchmarks/bench_initial_grad.py --compile --steps 1 16   # symcell's module under torch.compile

With --compile symcell's module runs under torch.compile (backend "aot_eager": the operators a compiled graph calls,
symcell::scan and symcell::scan_backward, without inductor's code around them), whose backward is told which
gradients are wanted as the eager call's is: x needs none here, so both leave out d_x's GEMM.

Medians of interleaved rounds (measure.interleaved_medians: every other round in the other order, each contender
after untimed calls of its own); a call, then backward() of its outputs' sum into the parameters' .grad.
"""
import torch
from torch import nn

import symcell
from measure import calls_in, cpu_model, grid_args, interleaved_medians


def main():
    args = grid_args(__doc__, hidden=[256, 1024], steps=[1, 4],
                     flags={"--bfloat16": "the modules and inputs in bfloat16",
                            "--compile": "symcell's module under torch.compile(backend='aot_eager')"})
    dtype = torch.bfloat16 if args.bfloat16 else torch.float32
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {dtype}, a training "
          f"step, input size = H{', symcell compiled (aot_eager)' if args.compile else ''}; medians of {args.rounds} "
          f"rounds (us a call)")
    print("| cell | B | H | T | symcell h0 without | with | without / with | nn without | with | without / with | "
          "symcell / nn, without |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, Ours, Ref in (("LSTM", symcell.cells.LSTM, nn.LSTM), ("GRU", symcell.cells.GRU, nn.GRU)):
        for H in args.hidden:
            torch.manual_seed(0)
            ours, ref = Ours(H, H, backend="cpp").to(dtype), Ref(H, H).to(dtype)
            ref.load_state_dict(ours.state_dict())
            if args.compile:
                ours = torch.compile(ours, backend="aot_eager", dynamic=False)
            for B in args.batch:
                for T in args.steps:
                    x = torch.randn(T, B, H, dtype=dtype)
                    h0 = torch.zeros(1, B, H, dtype=dtype, requires_grad=True)
                    hx = (h0, torch.zeros(1, B, H, dtype=dtype, requires_grad=True)) if name == "LSTM" else h0

                    def call(m, with_grad):
                        (m(x, hx) if with_grad else m(x))[0].float().sum().backward()
                    calls = calls_in(args.budget_ms, lambda: call(ours, True))
                    t = interleaved_medians({(m, g): (lambda m=m, g=g: call(ours if m == "ours" else ref, g))
                                             for m in ("ours", "nn") for g in (False, True)}, args.rounds, calls)
                    print(f"| {name} | {B} | {H} | {T} | {t['ours', False]:.0f} | {t['ours', True]:.0f} | "
                          f"{t['ours', False] / t['ours', True]:.2f} | {t['nn', False]:.0f} | {t['nn', True]:.0f} | "
                          f"{t['nn', False] / t['nn', True]:.2f} | {t['ours', False] / t['nn', False]:.2f} |",
                          flush=True)


if __name__ == "__main__":
    main()
