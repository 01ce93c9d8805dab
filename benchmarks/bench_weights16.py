"""A bfloat16 (--float16: float16) module's calls on the cpp backend: the kernels handed the weight matrices in its
dtype as they are (multiplied as stored in a call of up to 128 rows in all, 32 without AVX-512: sc.h's weight,
mm_stored16 and mm_kn16; a longer call's panels made from them) against
float32 copies of every parameter made by Python at each call (sequence._weights16 off: the way before), beside nn's
module in that dtype with the same weights. LSTM and GRU,
input size = H, under torch.no_grad(); with --train, a training step instead (the call recorded, then
backward() of its outputs' sum into the parameters' .grad), and the MiB each call's graph saves for its backward
(eager.saved_bytes: the parameters and the input not counted, the float32 copies of the parameters counted).

    python benchmarks/bench_weights16.py                   # B in 1, 4, 16; H in 256, 512, 1024; T in 1, 4
    python benchmarks/bench_weights16.py --hidden 512 --batch 4 --steps 1 --rounds 5
    python benchmarks/bench_weights16.py --train --batch 16 64 --steps 2 8
    python benchmarks/bench_weights16.py --float16 --batch 1 4 16 32 --steps 1 4

Medians of interleaved rounds (measure.interleaved_medians: every other round in the other order, each contender
after untimed calls of its own).
"""
import torch
from torch import nn

import symcell
from symcell import sequence
from eager import saved_bytes
from measure import calls_in, cpu_model, grid_args, interleaved_medians


def main():
    args = grid_args(__doc__, hidden=[256, 512, 1024], steps=[1, 4],
                     flags={"--train": "a training step (forward and backward) instead of a call under no_grad",
                            "--float16": "float16 modules, not bfloat16"})
    dtype = torch.float16 if args.float16 else torch.bfloat16
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {str(dtype)[6:]}, "
          f"{'a training step' if args.train else 'no_grad'}, input size = H; medians of {args.rounds} rounds "
          f"(us a call)")
    saved = " saved MiB: as given, copies, nn |" if args.train else ""
    print("| cell | B | H | T | as given | float32 copies | nn | as given / copies | as given / nn | copies / nn |"
          + saved)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if args.train else ""))
    wanted = sequence._weights16
    for name, Ours, Ref in (("LSTM", symcell.cells.LSTM, nn.LSTM), ("GRU", symcell.cells.GRU, nn.GRU)):
        for H in args.hidden:
            torch.manual_seed(0)
            ours, ref = Ours(H, H, backend="cpp").to(dtype), Ref(H, H).to(dtype)
            ref.load_state_dict(ours.state_dict())
            for B in args.batch:
                for T in args.steps:
                    x = torch.randn(T, B, H).to(dtype)

                    def call(m):
                        if args.train:
                            m(x)[0].float().sum().backward()
                            return
                        with torch.no_grad():
                            m(x)
                    with torch.no_grad():   # (the same answers both ways, to the dtype's rounding)
                        given = ours(x)[0].float()
                        sequence._weights16 = lambda *a: False
                        copies = ours(x)[0].float()
                        sequence._weights16 = wanted
                    assert (given - copies).abs().max() <= 2 ** -7 * copies.abs().max()
                    calls = calls_in(args.budget_ms, lambda: call(ours))

                    def contender(k):
                        def run():
                            sequence._weights16 = (lambda *a: False) if k == "copies" else wanted
                            call(ref if k == "nn" else ours)
                        return run
                    t = interleaved_medians({k: contender(k) for k in ("given", "copies", "nn")}, args.rounds, calls)
                    sequence._weights16 = wanted
                    g, c, r = (t[k] for k in ("given", "copies", "nn"))
                    mib = ""
                    if args.train:
                        mib = []
                        for k in ("given", "copies", "nn"):
                            m = ref if k == "nn" else ours
                            sequence._weights16 = (lambda *a: False) if k == "copies" else wanted
                            mib.append(saved_bytes(lambda: m(x)[0].float().sum(), [*m.parameters(), x]) / 2 ** 20)
                        sequence._weights16 = wanted
                        mib = " " + ", ".join(f"{v:.1f}" for v in mib) + " |"
                    print(f"| {name} | {B} | {H} | {T} | {g:.0f} | {c:.0f} | {r:.0f} | {g / c:.2f} | {g / r:.2f} | "
                          f"{c / r:.2f} |{mib}", flush=True)


if __name__ == "__main__":
    main()
