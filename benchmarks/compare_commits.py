"""Two versions of symcell side by side: the LSTM benchmark of bench_cpu.py (symcell-cpp / nn.LSTM, forward and
forward+backward; with --wide also a GRU and bfloat16) run by each version in turn, interleaved, on one machine.

    python benchmarks/compare_commits.py 189e2a5              # that commit against the working tree
    python benchmarks/compare_commits.py 189e2a5 HEAD --rounds 8
    python benchmarks/compare_commits.py 620d3d8 --wide     # also small and large batches, H=1024, a GRU, bfloat16
    python benchmarks/compare_commits.py 76735e0 --lengths  # rows of lengths in [T/2, T]: symcell's lengths=,
                                                            # nn's a PackedSequence (enforce_sorted=False)

Each round runs one fresh process per version (in alternating order), and each process measures its symcell
against nn.LSTM with the same weights, interleaved repeats, medians: the ratio symcell / nn.LSTM is what a
process reports, so a noisy neighbour slows both sides of a ratio alike. The table gives each version's median
ratio over the rounds, and new / old. The versions are checked out with `git worktree` into a temporary folder,
each with a build cache of its own (the first round builds; its times are not counted).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from measure import cpu_model

ROOT = Path(__file__).resolve().parents[1]
# (cell, B, T, I, H, dtype)
SIZES = [("LSTM", 32, 100, 256, 256, "float32"), ("LSTM", 16, 50, 32, 128, "float32")]
WIDE = [("LSTM", 1, 100, 256, 256, "float32"), ("LSTM", 4, 100, 256, 256, "float32"), *SIZES,
        ("LSTM", 8, 30, 1024, 1024, "float32"), ("GRU", 16, 100, 256, 256, "float32"),
        ("LSTM", 32, 100, 256, 256, "bfloat16")]

WORKER = textwrap.dedent("""
    import json, statistics, sys, time, torch
    from torch import nn
    import symcell
    from symcell import cells
    assert symcell.__file__.startswith(sys.argv[1]), symcell.__file__
    repeats, out, with_lengths = int(sys.argv[2]), {}, sys.argv[4] == "1"
    for kind, B, T, I, H, dtype in json.loads(sys.argv[3]):
        torch.manual_seed(0)
        cell, ref = getattr(cells, kind)(I, H, backend="cpp"), getattr(nn, kind)(I, H)
        ref.load_state_dict(cell.state_dict())
        dtype = getattr(torch, dtype)
        cell.to(dtype), ref.to(dtype)
        x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
        lengths = torch.randint(T // 2, T + 1, (B,)) if with_lengths else None
        if lengths is not None:
            lengths[0] = T
        def call(m):
            if lengths is None:
                return m(x)
            if m is cell:
                return m(x, lengths=lengths)
            o, s = m(nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False))
            return o.data, s
        def fwd(m):
            with torch.no_grad():
                call(m)
        def fwdbwd(m):
            o, s = call(m)
            sum(t.float().sum() for t in (o, *(s if isinstance(s, tuple) else (s,)))).backward()
        times = {(n, k): [] for n in ("symcell", "nn") for k in ("f", "fb")}
        for r in range(repeats + 2):
            for n, m in (("symcell", cell), ("nn", ref)):
                for k, f in (("f", fwd), ("fb", fwdbwd)):
                    t0 = time.perf_counter()
                    f(m)
                    if r >= 2:   # two warm-up rounds
                        times[n, k].append(time.perf_counter() - t0)
        med = {key: statistics.median(v) for key, v in times.items()}
        out[f"{kind} B={B} T={T} I={I} H={H} {str(dtype)[6:]}"] = {"forward": med["symcell", "f"] / med["nn", "f"],
                                            "fwd+bwd": med["symcell", "fb"] / med["nn", "fb"],
                                            "symcell fwd+bwd ms": med["symcell", "fb"] * 1e3}
    print(json.dumps(out))
""")


def checkout(rev, where):
    if rev is None:
        return ROOT
    path = Path(where) / rev
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)
    return path


def run(tree, cache, repeats, sizes, lengths=False):
    env = dict(os.environ, PYTHONPATH=str(tree), SYMCELL_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, "-c", WORKER, str(tree), str(repeats), json.dumps(sizes), str(int(lengths))],
                       env=env,
                       capture_output=True, text=True, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise RuntimeError(f"the benchmark of {tree} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="a git revision")
    ap.add_argument("new", nargs="?", help="a git revision (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--wide", action="store_true", help="more cases (WIDE): B=1-32, H=1024, a GRU, bfloat16")
    ap.add_argument("--lengths", action="store_true", help="rows of lengths in [T/2, T] (nn: a PackedSequence)")
    args = ap.parse_args()
    sizes = WIDE if args.wide else SIZES
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        try:
            for label, rev in (("old", args.old), ("new", args.new)):
                trees[label] = (checkout(rev, tmp), Path(tmp) / f"cache-{label}", rev or "working tree")
            for label, (tree, cache, _) in trees.items():   # builds, and a first measurement not counted
                print(f"... building {label}", file=sys.stderr, flush=True)
                run(tree, cache, 1, sizes, args.lengths)
            results = {label: [] for label in trees}
            for r in range(args.rounds):
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for label in order:
                    tree, cache, _ = trees[label]
                    results[label].append(run(tree, cache, args.repeats, sizes, args.lengths))
                print(f"... round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        finally:
            for label, (tree, _, rev) in trees.items():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                                   capture_output=True)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"date {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"old: {trees['old'][2]}; new: {trees['new'][2]}; {args.rounds} rounds x {args.repeats} repeats"
          f"{'; lengths in [T/2, T] (nn: packed)' if args.lengths else ''}; "
          "ratios are symcell-cpp / nn's, medians over the rounds (each round: its own fresh processes)")
    print("| size | pass | old | new | new / old | old, per round | new, per round |")
    print("|---|---|---:|---:|---:|---|---|")
    for size in results["old"][0]:
        for what in ("forward", "fwd+bwd"):
            o = [res[size][what] for res in results["old"]]
            n = [res[size][what] for res in results["new"]]
            mo, mn = statistics.median(o), statistics.median(n)
            print(f"| {size} | {what} | {mo:.3f} | {mn:.3f} | {mn / mo:.3f} | {' '.join(f'{v:.2f}' for v in o)} | "
                  f"{' '.join(f'{v:.2f}' for v in n)} |")


if __name__ == "__main__":
    main()
