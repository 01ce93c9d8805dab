"""Compare a symcell LSTM with nn.LSTM and an eager Python-loop LSTM: same weights, same results, timings.

    python examples/compare_lstm.py                       # CPU, B=16 T=50 I=32 H=128
    python examples/compare_lstm.py --batch 32 --seq 100 --input 256 --hidden 256 --cell gru
    python examples/compare_lstm.py --plot compare.png      # also a bar chart (needs matplotlib)

"training memory" is what autograd keeps for backward during one forward (parameters and input excluded).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import symcell
from symcell.cells import GRU, LLTM, LSTM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import eager  # noqa: E402  (the eager loops and the memory measure the benchmarks use)
from eager import saved_bytes  # noqa: E402


def build(args):
    """-> {name: callable(x) -> output sequence}, and the parameter lists for the gradient check."""
    I, H, dev = args.input, args.hidden, torch.device(args.device)
    t0 = time.perf_counter()
    if args.cell == "lltm":
        cell = LLTM(I, H, backend=args.backend, device=dev)
        ref = None
    else:
        cls, ref_cls = (LSTM, nn.LSTM) if args.cell == "lstm" else (GRU, nn.GRU)
        cell = cls(I, H, backend=args.backend, device=dev)
        ref = ref_cls(I, H).to(dev)
        ref.load_state_dict(cell.state_dict())
    x = torch.randn(2, 2, I, device=dev)
    cell(x)[0].sum().backward()   # builds (and caches) the kernels
    cell.zero_grad()
    build_s = time.perf_counter() - t0
    p = [q for _, q in cell.named_parameters()]
    B = args.batch
    zeros = lambda: torch.zeros(B, H, device=dev)  # noqa: E731
    runners = {f"symcell ({symcell.backends.resolve(args.backend, dev)})": lambda x: cell(x)[0]}
    if ref is not None:
        runners[f"nn.{ref_cls.__name__}"] = lambda x: ref(x)[0]
    if args.cell == "lstm":
        runners["eager loop"] = lambda x: eager.lstm(x, zeros(), zeros(), *p)[0]
    elif args.cell == "gru":
        runners["eager loop"] = lambda x: eager.gru(x, zeros(), *p)[0]
    else:
        runners["eager loop"] = lambda x: eager.lltm(x, zeros(), zeros(), *p)[0]
    params = {"symcell": p, "ref": list(ref.parameters()) if ref is not None else p}
    return runners, params, build_s


def positive(text):
    """an argparse type: an int > 0 (argparse's own message otherwise, not a traceback from the model)"""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def device(text):
    try:
        return str(torch.device(text))
    except RuntimeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", type=device)
    ap.add_argument("--batch", type=positive, default=16)
    ap.add_argument("--seq", type=positive, default=50)
    ap.add_argument("--input", type=positive, default=32)
    ap.add_argument("--hidden", type=positive, default=128)
    ap.add_argument("--backend", default="auto", choices=["auto"] + symcell.backends.available())
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "lltm"])
    ap.add_argument("--repeats", type=positive, default=5)
    ap.add_argument("--plot", metavar="FILE.png", help="write a bar chart of the timings (needs matplotlib)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    print(f"building symcell {args.cell} ...", file=sys.stderr, flush=True)
    runners, params, build_s = build(args)
    x = torch.randn(args.seq, args.batch, args.input, device=args.device, requires_grad=True)

    # agreement: outputs and input gradients of every runner against the first
    results = {}
    for name, fn in runners.items():
        x.grad = None
        y = fn(x)
        y.sum().backward()
        results[name] = (y.detach(), x.grad.clone())
    base = next(iter(results))
    for name, (y, g) in list(results.items())[1:]:
        # relative to the largest value where that is over 1: an LLTM's cell has no forget gate, and over 100 steps
        # its input gradients grow to hundreds, where float32 agrees to 1e-6 of them (an absolute 1e-4 called that a
        # mismatch). A NaN anywhere is one (torch's max keeps it, where Python's max of two may drop it).
        err = torch.stack([(a - b).abs().max() / b.abs().max().clamp_min(1.0)
                           for a, b in ((y, results[base][0]), (g, results[base][1]))]).max().item()
        status = "ok" if err < 1e-4 else "MISMATCH"
        print(f"  {name:<24} max |difference| / max(1, |value|) vs {base}: {err:.2e}  {status}")
        if status != "ok":
            sys.exit(1)

    def timed(fn, backward):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if backward:
            fn(x).sum().backward()
        else:
            with torch.no_grad():
                fn(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for fn in runners.values():   # untimed: a first no_grad call (nn.LSTM's especially) sets things up
        timed(fn, False)
    times = {name: {"fwd": [], "fwdbwd": []} for name in runners}
    for _ in range(args.repeats):   # interleaved, so a noisy neighbour hurts every runner alike
        for name, fn in runners.items():
            times[name]["fwd"].append(timed(fn, False))
            times[name]["fwdbwd"].append(timed(fn, True))
    med = {n: {k: statistics.median(v) * 1e3 for k, v in d.items()} for n, d in times.items()}
    mem = {n: saved_bytes(lambda fn=fn: fn(x), [x, *params["symcell"], *params["ref"]]) / 2 ** 20
           for n, fn in runners.items()}
    ref_name = next((n for n in runners if n.startswith("nn.")), "eager loop")
    print(f"\n{args.cell.upper()}  B={args.batch} T={args.seq} I={args.input} H={args.hidden}  "
          f"device={args.device}  (medians of {args.repeats} interleaved runs; build {build_s:.1f} s)")
    print(f"  {'':<24} {'forward ms':>11} {'fwd+bwd ms':>11} {'fwd+bwd vs ' + ref_name:>24} "
          f"{'training memory MiB':>20}")
    for name, m in med.items():
        print(f"  {name:<24} {m['fwd']:>11.2f} {m['fwdbwd']:>11.2f} "
              f"{m['fwdbwd'] / med[ref_name]['fwdbwd']:>23.2f}x {mem[name]:>20.2f}")
    if args.plot:
        plot(args, med)


def plot(args, med):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib (the table above is complete without it)")
    names = list(med)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.38
    for k, (key, label) in enumerate([("fwd", "forward"), ("fwdbwd", "forward + backward")]):
        ax.bar([i + (k - 0.5) * width for i in range(len(names))], [med[n][key] for n in names], width,
               label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms (median)")
    ax.set_title(f"{args.cell.upper()} B={args.batch} T={args.seq} I={args.input} H={args.hidden} "
                 f"on {args.device}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
