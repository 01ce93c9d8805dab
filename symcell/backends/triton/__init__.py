"""The Triton backend: render.py prints a kernel program as Triton kernels with torch host code.

On CPU tensors it runs under Triton's interpreter (TRITON_INTERPRET=1), which is how CI tests it: the spellings
of functions.py use only what the interpreter has (no libdevice).
"""
import contextlib
import functools
import itertools
import linecache
import os

import torch

from ... import cache
from ...errors import DtypeError
from ...printing import Writer
from ..base import COMPUTING_FOR, Backend
from ..torch_code import SCOPE
# (the module, not its function: symcell.backends.triton.render.DOT_SUMS and the other settings the README lists
# are its attributes, which `from .render import render` hid behind the function)
from . import render as renderer
from .render import dot_constants

_counter = itertools.count()


def _device_of(tensor):
    """the CUDA device of `tensor` as the current one while a kernel launches (a model on cuda:1)"""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


# How the kernels' float32 matmuls (tl.dot) multiply: "ieee" true float32 on CUDA cores (the default: results
# match the reference backend to float32 rounding); "tf32x3" on tensor cores, three TF32 products a product (about
# float32's accuracy, several times the speed); "tf32" one (10-bit mantissas, as cuDNN's default for float32
# RNNs). The GEMMs outside the kernels are torch's and follow torch.backends.cuda.matmul (but see BFLOAT16_GEMMS).
FLOAT32_DOT = "ieee"
DOTS = ("ieee", "tf32x3", "tf32")
# How they multiply for a bfloat16 or float16 module (which scans in float32, sequence.py): "tf32", whose 10-bit
# mantissa holds a 16-bit weight or input exactly and rounds the float32 state less than the module's own dtype
# does (cuDNN's 16-bit RNNs multiply in that dtype); on an H200 the LSTM's step ran 3.5x faster than with "ieee"
# (BENCHMARKS.md). None: FLOAT32_DOT, as for float32 modules.
LOW_PRECISION_DOT = "tf32"
# The GEMMs outside the kernels (over all T*B rows, cuBLAS: x @ W_ih^T before the loop, d_x, d_W after it) of a
# bfloat16 module take bfloat16 operands with float32 products and sums (_mm): tensor cores, where its upcast
# float32 tensors ran on CUDA cores by torch's default (on an H200 1.5 ms each, four of them in the LSTM's 30.5
# ms forward+backward, BENCHMARKS.md). Its inputs and weights are exact in bfloat16 (an LSTM's forward GEMM is the
# same but for the order of its sums); what the scan computed (the backward's gradients and states, a value made
# from the inputs before the loop) is rounded to bfloat16's 8 bits, as cuDNN's bfloat16 RNNs and the results' own
# rounding do. Not for float16: a gradient rounded to float16 underflows below 6e-8. False: float32 GEMMs, as
# torch's settings say.
BFLOAT16_GEMMS = True
# A 16-bit module's weights that only the kernels' matmuls read go to them in its dtype (_low): exact, so the
# products are the same; half the bytes each step streams from L2 for them (a step reads its slice of W_hh).
# False: as float32, as the scan holds them.
LOW_PRECISION_WEIGHTS = True
# Each program keeps its slices of a bfloat16 module's recurrent weights on chip (shared memory) for the whole
# sequence where it does one tile of each block of units (P = H / 16 at B <= 16 * SMs / (H / 16)) and they fit
# (render.py resident_slices; an LSTM at H=768: 96 KiB a program, forward and backward alike); else, and for
# float32 and float16 modules, the kernels stream them from global memory (L2) every step. False: always stream.
RESIDENT_WEIGHTS = True
# shared memory allowed for what the kernels take besides the resident slices (the dots' operand tiles): 4 KiB
# in the LSTM's, GRU's and LLTM's kernels at H=768 compiled for sm_80 and sm_90 (tests/test_triton_aot.py)
RESIDENT_SCRATCH = 32 * 1024
INTERPRETER_PROGRAMS = 4   # P at most under the interpreter: enough to test the split
PROGRAMS_AT_MOST = None    # a cap on P (benchmarks/bench_gpu.py times the kernel at 1: no split, no barrier)
# launch parameters that replace the rendered ones ("_BK", "_BKG" the matmuls' reduction tiles, "num_warps",
# "num_stages"):
# benchmarks/tune_gpu.py sweeps them; each value is a compile of its own, the kernel code is the same
LAUNCH = {}


def _programs(like, most, batch_tiles, tiles=None):
    """P, the programs that split a batch tile's features: as many as have work (`most`) while the whole grid
    fits on the GPU at once (the programs wait for each other: a cooperative launch, one program an SM). With
    `tiles` (a kernel whose reductions are shared out, split.SplitReduction: `most` is tiles x shares), P above
    `tiles` is whole sets of them, and `tiles` under torch.use_deterministic_algorithms (no atomic adds of
    shares, whose order varies)."""
    if tiles is not None and torch.are_deterministic_algorithms_enabled():
        most = tiles
    if PROGRAMS_AT_MOST is not None:
        most = min(most, _positive("PROGRAMS_AT_MOST", PROGRAMS_AT_MOST))
    if interpreted():   # (CPU tensors, or CUDA ones under TRITON_INTERPRET=1: the SMs do not matter there)
        P = min(most, _positive("INTERPRETER_PROGRAMS", INTERPRETER_PROGRAMS))
    else:
        sms = torch.cuda.get_device_properties(like.device).multi_processor_count
        P = max(1, min(most, sms // batch_tiles))
    return P // tiles * tiles if tiles is not None and P > tiles else P


def _positive(name, value, power_of_two=False):
    """a setting's value, a positive int (a power of two where a tile's size), else a ValueError naming it: P = 0
    launched no program, and the results were whatever memory held"""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (power_of_two and value & (value - 1)):
        kind = "a power of two" if power_of_two else "a positive int"
        raise ValueError(f"symcell.backends.triton.{name} must be {kind}, got {value!r}")
    return value


# (key: a power of two; Triton's own launch options beside symcell's reduction tiles)
_LAUNCH_KEYS = {"_BK": True, "_BKG": True, "num_warps": True, "num_stages": False, "num_ctas": False,
                "maxnreg": False}


def _launch_settings():
    for key, value in LAUNCH.items():
        if key not in _LAUNCH_KEYS:
            raise ValueError(f"symcell.backends.triton.LAUNCH: unknown key {key!r}; the keys are {list(_LAUNCH_KEYS)}")
        _positive(f"LAUNCH[{key!r}]", value, _LAUNCH_KEYS[key])   # (tl.arange's sizes are powers of two)
    return LAUNCH


def _launch(kernel, grid, T, B, like, *args, _phases, _first_barrier, **meta):
    """The step kernel over steps 0..T-1 on a grid of (batch tiles, P), `_phases` phases a step with a grid
    barrier between two and, with `_first_barrier`, one before the first. When P > 1 its programs meet at those
    barriers: on a GPU in one cooperative launch (all programs resident, or the launch fails: never a hang; a
    compile option to Triton, so a cell's kernels compile once for P = 1 and once for P > 1). The interpreter
    runs programs one after another, where a barrier would wait forever for the programs after it: there each
    stretch from one barrier to the next is a launch of its own, the same kernel code with the barriers left
    out."""
    meta.update(dot_constants(dot_precision()))
    meta["_BF16_DOT"] = not interpreted()   # (render.SPLIT_DOT: the interpreter's bfloat16 tl.dot is not exact)
    meta.update(_launch_settings())
    P = grid[1]
    with _device_of(like):
        if P > 1 and interpreted():
            for (i0, k0), (i1, k1) in _stretches(T, _phases, _first_barrier):
                kernel[grid](T, B, i0, i1 + 1, k0, k1, P, *args, _PHASED=True, **meta)
        else:
            cooperative = {"launch_cooperative_grid": True} if P > 1 else {}
            kernel[grid](T, B, 0, T, 0, _phases - 1, P, *args, _PHASED=False, **cooperative, **meta)


def _resident_slices(P, tiles, nbytes, *weights):
    """whether this launch keeps the kernel's weight slices on chip (_RESIDENT): each of its P programs does one tile
    of each block of units (P >= `tiles`), the weights are bfloat16 (a bfloat16 module's, LOW_PRECISION_WEIGHTS),
    and their `nbytes` a program fit in the GPU's shared memory beside RESIDENT_SCRATCH"""
    if not RESIDENT_WEIGHTS or P < tiles or any(w.dtype != torch.bfloat16 for w in weights):
        return False
    if interpreted():
        return True
    from triton.runtime import driver
    device = weights[0].device.index if weights[0].device.index is not None else torch.cuda.current_device()
    return nbytes + RESIDENT_SCRATCH <= driver.active.utils.get_device_properties(device)["max_shared_mem"]


def dot_precision():
    """the input_precision of the kernels' tl.dot for the entry point running now: LOW_PRECISION_DOT when its
    scan computes for a 16-bit dtype (Kernel.for_dtype), else FLOAT32_DOT"""
    low = COMPUTING_FOR.get() is not None and LOW_PRECISION_DOT is not None
    name, dot = ("LOW_PRECISION_DOT", LOW_PRECISION_DOT) if low else ("FLOAT32_DOT", FLOAT32_DOT)
    if dot not in DOTS:
        choices = DOTS + ((None,) if name == "LOW_PRECISION_DOT" else ())   # (None: FLOAT32_DOT's)
        raise ValueError(f"symcell.backends.triton.{name} must be one of {choices}, got {dot!r}")
    return dot


def _mm(a, b):
    """torch.mm for the host code's GEMMs; for a bfloat16 module's scan (COMPUTING_FOR, BFLOAT16_GEMMS) on its
    operands rounded to bfloat16, the products and their sums in float32"""
    if not BFLOAT16_GEMMS or COMPUTING_FOR.get() is not torch.bfloat16:
        return torch.mm(a, b)
    a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)
    if not a.is_cuda:   # (the interpreter's CPU tensors) the same: products of bfloat16 values are exact in float32
        return torch.mm(a.float(), b.float())
    if hasattr(torch.ops.aten.mm, "dtype"):   # cuBLAS on tensor cores, a float32 result (torch >= 2.8)
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a, b).float()   # (older torch: the result rounded to bfloat16 once more)


def _low(weight):
    """a weight for the kernels' matmuls: in the 16-bit dtype of the module whose scan runs (COMPUTING_FOR; its
    float32 copy was made from that dtype, so exactly), else as it is"""
    low = COMPUTING_FOR.get()
    return weight.to(low) if low is not None and LOW_PRECISION_WEIGHTS else weight


def _parts(x):
    """a carry's two slots of bfloat16 parts (render.StepKernel.split_at_write), slot 0 holding x's: its nearest
    bfloat16 value and the nearest to what that leaves (x - hi, exact in float32), as the kernel splits"""
    out = x.new_empty((2, 2, *x.shape), dtype=torch.bfloat16)
    out[0, 0] = x
    out[0, 1] = x - out[0, 0].float()
    return out


def _stretches(T, phases, first_barrier):
    """[((first step, its first phase), (last step, its last phase))] between barriers, in order"""
    out, start = [], (0, 0)
    for i in range(T):
        for k in range(phases):
            if (i, k) != (0, 0) and (k > 0 or first_barrier):   # a barrier before phase k of step i
                out.append((start, (i, k - 1) if k > 0 else (i - 1, phases - 1)))
                start = (i, k)
    return out + [(start, (T - 1, phases - 1))] if T else out


WIDE_AT = 2 ** 31   # a buffer of this many elements or more gets the kernel variant with 64-bit step offsets


def _wide(*args):
    return any(isinstance(a, torch.Tensor) and a.numel() >= WIDE_AT for a in args)


def interpreted():
    """whether Triton runs its interpreter: its own reading of TRITON_INTERPRET (1, true, on, yes, ...), where its
    version has one (symcell took only "1", and said the interpreter was off under TRITON_INTERPRET=true)"""
    knobs = _knobs()
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _knobs():
    """triton.knobs, or None (no Triton, or one before knobs, which read only "1"): looked for once, as every
    launch asks"""
    try:
        from triton import knobs
        knobs.runtime.interpret   # noqa: B018 (a Triton whose knobs lack it raises here)
        return knobs
    except (ImportError, AttributeError):
        return None


def _interpreter_imported():
    """whether triton was imported under its interpreter (it decides then, for its own library: tl.sigmoid)"""
    import triton.language as tl
    return type(tl.sigmoid).__name__ == "InterpretedFunction"


def _float32_only(entry):
    """the kernels accumulate in float32: other dtypes would lose precision silently. (The entry takes `skip=`
    flags, base.py's: the host code leaves out the GEMMs after the loop that they say nobody needs.)"""
    def checked(*args, skip=()):
        dtype = next(t.dtype for group in args if isinstance(group, list) for t in group)
        if dtype != torch.float32:
            raise DtypeError(f"backend='triton' computes in float32; got {dtype} (the input, the states and the "
                             "parameters: one dtype). Use .float(), or the cpp or reference backend for float64")
        return entry(*args, _skip=skip)
    checked.skips = True
    return checked


def load(name, source):
    """A rendered source run: its namespace (the kernels, the host functions). benchmarks/probe_backward.py loads
    edited copies this way."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        raise RuntimeError("symcell: backend='triton' needs the triton package (pip install triton)") from None
    # triton.jit reads a kernel's source from its file: the source goes into the cache folder, and runs from there
    path = cache.source_file("triton", name, source)
    linecache.checkcache(str(path))
    scope = {**SCOPE, "triton": triton, "tl": tl, "_device_of": _device_of, "_wide": _wide,
             "_programs": _programs, "_launch": _launch, "_resident_slices": _resident_slices, "_mm": _mm,
             "_low": _low, "_parts": _parts, "__file__": str(path), "__name__": f"symcell_triton_{next(_counter)}"}
    exec(compile(source, str(path), "exec"), scope)  # noqa: S102 - our own generated code
    return scope


class TritonBackend(Backend):
    name, devices, priority = "triton", ("cuda",), 2
    symbolic = False   # feature sizes are compile-time constants of the kernels (tile shapes)
    param_sums_after_loop = True   # (per step: cross-warp sums and read-modify-writes, a sixth of a step)

    def usable(self, device):
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return device.type == "cuda" or (device.type == "cpu" and interpreted())

    def refuses(self, device):
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (pip install triton; it needs a CUDA GPU, or its interpreter)"
        if device.type == "cpu" and interpreted() and not _interpreter_imported():
            return ("TRITON_INTERPRET=1 was set after triton was imported (import symcell imports it, through "
                    "torch.utils.flop_counter; so does torch.compile), so Triton compiled its library for a GPU: "
                    "set it before any import, in the environment")
        if device.type == "cuda" or (device.type == "cpu" and interpreted()):
            return None
        if device.type != "cpu":
            return (f"it runs on CUDA tensors (and CPU tensors under Triton's interpreter), not {device.type} "
                    "tensors: use backend='auto' or 'reference'")
        return ("it runs on CUDA tensors, and Triton's interpreter (for CPU tensors, slow, for testing) is off: move "
                "the module and its inputs to a GPU with .cuda(), use backend='auto', or set TRITON_INTERPRET=1 "
                "before importing triton")

    def render(self, program, scans):
        w = Writer()
        w(f"# symcell triton backend: {program.name}")
        return renderer.render(program, scans, w)

    def build(self, program, scans, source, dims):
        scope = load(program.name, source)
        entries = {s.name: _float32_only(scope[s.name]) for s in scans}
        for s in scans:   # the @triton.jit kernel behind each entry (its compiled variants: tests, profiling)
            entries[s.name].jit = scope[f"_{s.name}_kernel"]
        return entries
