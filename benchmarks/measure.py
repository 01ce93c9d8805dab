"""What every benchmark script shares: the CPU model it prints beside its numbers, and one timed call."""
import platform
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
