"""What every benchmark script shares: the CPU model it prints beside its numbers, one timed call, and the
arguments of a grid of sizes."""
import argparse
import platform
import statistics
import subprocess
import time


def cpu_model():
    """lscpu's model name (the platform's processor string where there is no lscpu)"""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def timed(fn):
    """seconds one call of fn takes"""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def per_call_us(fn, calls):
    """microseconds a call of fn takes, over `calls` calls in a row"""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def calls_in(budget_ms, fn):
    """how many calls of fn fill about budget_ms (at least 5), from 3 calls timed"""
    return max(5, int(budget_ms * 1e3 / max(per_call_us(fn, 3), 1)))


def interleaved_medians(contenders, rounds, calls):
    """{name: median over `rounds` of the microseconds a call of contenders[name] takes over `calls` calls}: each
    round times every contender once, every other round in the other order, each after a fifth as many calls
    untimed (whichever contender ran first after another module's calls was up to 1.4x slower at a small LSTM's
    training step, measured both ways round: bench_initial_grad.py)"""
    names = list(contenders)
    times = {k: [] for k in names}
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            per_call_us(contenders[k], max(2, calls // 5))
            times[k].append(per_call_us(contenders[k], calls))
    return {k: statistics.median(v) for k, v in times.items()}


def grid_args(doc, hidden, steps, batch=(1, 4, 16), flags=None):
    """The arguments of a benchmark over a grid of sizes, parsed: --batch, --hidden and --steps (lists, these
    defaults), timed in --rounds interleaved rounds of --budget-ms per contender; `flags`: {--name: help} of the
    script's own switches. doc: the script's docstring."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for flag, text in (flags or {}).items():
        ap.add_argument(flag, action="store_true", help=text)
    ap.add_argument("--batch", type=int, nargs="+", default=list(batch))
    ap.add_argument("--hidden", type=int, nargs="+", default=list(hidden))
    ap.add_argument("--steps", type=int, nargs="+", default=list(steps))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget-ms", type=float, default=60, help="time per contender per round")
    return ap.parse_args()
