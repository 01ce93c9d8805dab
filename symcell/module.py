"""symcell.define, the Binding of a cell's dimensions, and the Cell module."""
import copy
import functools
import importlib
import inspect
import keyword
import math
import numbers
import pickle
import sys
import weakref

import torch
from torch import nn

from . import backends, registry, replay
from . import dims as D
from .backends.cpp.render import RESERVED as CPP_RESERVED
from .cache import BuildError
from .errors import DeviceError, DtypeError, ShapeError, StateCountError, too_deep  # noqa: F401 (symcell's, rnn's)
from .explain import explain
from .frontend import Blocks, Matrix, Sym, trace
from .ir import CellIR
from .schedule import bind_ir
from .sequence import LOW_PRECISION, quiet_in_a_trace, refresh_weights, run, run_plan, scan_module
from .warn import warn

_RESERVED = ("torch", "inf", "nan")   # (the last two: constants as gradients() prints them)


_CELL_KEYWORDS = ("self", "spec", "batch_first", "backend", "device", "dtype",   # (a cell's; then symcell.RNN's)
                  "cell", "num_layers", "bidirectional", "dropout")
_fallback_warned = set()
_unbuildable = set()   # kernel keys whose build failed in this process: backend="auto" uses the reference backend


class CellSpec:
    """What define() produced: the traced IR, registered (its hash names its kernels), and the docstring.

    Pickled (a module saved whole, deepcopy), a spec is its recipe where an import finds it again: the step
    function's module and name and define()'s arguments, so a load runs the equations of the code it imports, as a
    saved nn.Module runs its class's forward of the day (a fix to a cell reaches a saved model). A cell no import
    finds (defined in __main__, in a function or a loop) is pickled as its equations."""

    def __init__(self, ir: CellIR, doc=None, recipe=None):
        self.ir, self.doc = ir, doc
        self.hash = registry.register(ir)
        # parameter name -> the constant it starts at, where uniform(-k, k) is wrong for it (a LayerNorm's gain 1,
        # shift 0): what a prebuilt cell's reset_parameters sets, and symcell.RNN stacking its spec too
        self.initial = {}
        self.recipe = recipe   # a Recipe, or None: see __reduce_ex__
        if recipe is not None:
            _live[recipe.module, recipe.qualname, self.hash] = self

    def __reduce_ex__(self, protocol):
        where = _importable(self)
        if where is not None:
            return _spec_again, (*where, self.hash)
        if protocol < 2:   # (sympy's objects, in the equations, need protocol 2)
            raise pickle.PicklingError(
                f"symcell: the cell {self.ir.name} is defined where no import finds it (in __main__ or a function), "
                f"so it is pickled as its equations, which needs pickle protocol 2 or higher; got {protocol}")
        return super().__reduce_ex__(protocol)

    def __getstate__(self):
        return {**self.__dict__, "recipe": None}   # (pickled as its equations: the recipe is no use elsewhere)

    def __setstate__(self, state):
        # unpickled as its equations (a saved module, in a fresh process): registered again, as define() does
        self.__dict__.update(state)
        registry.register(self.ir)

    def __deepcopy__(self, memo):
        return self   # (nothing in a spec changes after define: a copied module shares it)

    def explain(self):
        """gradients(): the pipeline's symbolic products as text"""
        lowered = registry.lowered(self.hash)
        return explain(lowered.schedule, lowered.backward)


def _check_names(ir):
    for n in [n for n, _ in ir.inputs + ir.states + ir.user_params]:
        if n in CPP_RESERVED:
            raise ValueError(f"{ir.name}: {n!r} is a C++ keyword or macro, or a name the cpp backend's generated "
                             "code uses itself, so it cannot name a variable there; choose another name")
        if n.startswith("_") or n.startswith("d_") or keyword.iskeyword(n) or n in _RESERVED:
            raise ValueError(f"{ir.name}: the name {n!r} is reserved for generated code (names may not start "
                             f"with '_' or 'd_', nor be {list(_RESERVED)} or a Python keyword)")
    for n, _ in ir.user_params:   # (a parameter is an attribute of the module: cell.W)
        if hasattr(Cell, n) or n in vars(nn.Module()) or n == "batch_first":
            raise ValueError(f"{ir.name}: a parameter may not be named {n!r}: it becomes the module's attribute "
                             f"cell.{n}, which symcell.Cell or torch.nn.Module already has")
    for d in ir.dims:   # (the dimensions are keyword arguments of the cell, beside these)
        if d in _CELL_KEYWORDS:
            raise ValueError(f"{ir.name}: a dimension may not be named {d!r}: a cell or symcell.RNN takes {d}= for "
                             f"itself ({', '.join(_CELL_KEYWORDS)})")


def define(inputs, state=None, params=None, outputs=None, name=None):
    """Define a recurrent cell from its step function.

        @symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                        params={"W": ("3*H", "H+I"), "b": ("3*H",)})
        def LLTM(x, h, c, W, b):
            ...
            return h, c

    Returns a subclass of `symcell.Cell`; instantiate it with the dimensions bound by keyword: LLTM(I=32, H=128).
    `outputs` names the states that form ys (default: the first), or declares per-step outputs that are not
    states with their sizes, outputs={"y": "O"} (the step returns its new states, then these, in order; a state
    may be listed as {"h": None}); `name` overrides the function's name.
    """
    if callable(inputs) and not isinstance(inputs, dict):   # (@symcell.define above a step, without arguments)
        raise TypeError("symcell.define takes the cell's declarations and returns the decorator: write "
                        "@symcell.define(inputs={...}, state={...}, params={...}) above the step function")
    if state is None:
        raise TypeError("define() missing the argument 'state': the cell's states, a dict of name -> size "
                        "({'h': 'H'})")

    def deco(fn):
        with too_deep(name or getattr(fn, "__name__", "the cell")):
            ir = trace(fn, inputs, state, params, outputs, name)
        _check_names(ir)
        recipe = Recipe(fn, _copied(dict(inputs=inputs, state=state, params=params, outputs=outputs, name=name)))
        spec = CellSpec(ir, fn.__doc__, recipe)
        try:
            _made.setdefault(fn, {})[repr(recipe.args)] = spec
        except TypeError:   # (a callable no weak reference can hold: no recipe found by it)
            pass
        # (a function exec'd with globals that have no __name__ has __module__ None, which torch.compile and
        # jit.trace fail on; Python names a class made there "builtins")
        return type(ir.name, (Cell,), {"spec": spec, "__doc__": _class_doc(ir, fn.__doc__),
                                       "__signature__": _class_signature(ir),
                                       "__module__": getattr(fn, "__module__", None) or "builtins", "_defined": True})
    return deco


class _OwnSignature:
    """A class's __signature__ for inspect (help() shows it) that its subclasses do not inherit (one with its own
    __init__ takes other arguments) nor its instances (whose call is forward)."""

    def __init__(self, signature):
        self.signature = signature

    def __get__(self, obj, cls):
        return self.signature if obj is None and cls.__dict__.get("__signature__") is self else None


def public_signature(cls, *private):
    """cls's signature for help(): its __init__'s without `private` (symcell's own callers' arguments)"""
    sig = inspect.signature(cls.__init__)
    cls.__signature__ = _OwnSignature(sig.replace(parameters=[p for n, p in sig.parameters.items()
                                                              if n != "self" and n not in private]))


def _class_signature(ir):
    """what help() shows for a class define made: its dimensions by keyword, then a cell's options"""
    key = inspect.Parameter.KEYWORD_ONLY
    return _OwnSignature(inspect.Signature([inspect.Parameter(d, key) for d in ir.dims] + [
        inspect.Parameter(n, key, default=v) for n, v in (("batch_first", False), ("backend", "auto"),
                                                          ("device", None), ("dtype", None))]))


def _class_doc(ir, doc):
    """the step's docstring, then what the class is: how to make one, and its values' sizes"""
    def sizes(pairs):
        return ", ".join(f"{n} ({', '.join(D.fmt(s) for s in (shape if isinstance(shape, tuple) else (shape,)))})"
                         for n, shape in pairs) or "none"
    made = (f"A recurrent cell made by symcell.define: {ir.name}({', '.join(f'{d}=...' for d in ir.dims)}) is a "
            f"torch.nn.Module (symcell.Cell).\nInputs: {sizes(ir.inputs)}. States: {sizes(ir.states)}. Outputs (ys): "
            f"{', '.join(ir.outputs)}. Parameters: {sizes(ir.user_params)}.")
    return f"{inspect.cleandoc(doc)}\n\n{made}" if doc else made


def _copied(args):
    try:
        return copy.deepcopy(args)   # (a declaration's dicts a caller changes later are not the recipe's)
    except Exception:   # noqa: BLE001 (what cannot be copied is kept as given)
        return args


# The recipes of pickled specs. Their functions are pickled by name (symcell.module._spec_again and
# _binding_again in every saved module): never rename or move them.

# step function -> {repr(define's arguments): the spec define made of them} in this process (weakly: a cell
# defined in a loop goes with its function; a module reloaded makes its functions anew)
_made = weakref.WeakKeyDictionary()
# (step's module, qualified name, equations' hash) -> the spec define made of them, while it lives
_live = weakref.WeakValueDictionary()


class Recipe:
    """How define made a spec: where its step function is (module, qualified name), the function itself held
    weakly (a spec kept by the registry must not keep a factory's closure alive), and define's arguments."""

    def __init__(self, fn, args):
        self.module, self.qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        try:
            self.fn = weakref.ref(fn)
        except TypeError:
            self.fn = lambda: None
        self.args = args


# the names of a program's main script: a process multiprocessing spawns (a DDP or mp.spawn worker, a DataLoader's)
# runs it as __mp_main__, whose cells were saved by that name, which no other process finds
MAIN = ("__main__", "__mp_main__")


def _importable(spec):
    """(module, qualified name, define's arguments) by which a fresh process finds `spec`'s cell again: its step
    function, or the class define made of it (a decorated step's name is the class), as the module holds them
    now; None where no import would (a cell of __main__, or of a function)"""
    recipe = getattr(spec, "recipe", None)   # (None: a spec unpickled from a file saved before recipes)
    if recipe is None or recipe.module in (None, *MAIN) or "<" in recipe.qualname:   # (<locals>, <lambda>)
        return None
    where = recipe.module, recipe.qualname, recipe.args
    found = _lookup(recipe.module, recipe.qualname, imported=False)
    if isinstance(found, type) and issubclass(found, Cell) and found.spec is spec:
        return where
    # (the function's spec of these arguments is this one: a sweep that defines one step anew with another value
    # of a global it reads made another since, which the recipe would give back)
    if found is not None and found is recipe.fn() and _made.get(found, {}).get(repr(recipe.args)) is spec:
        return where
    return None


def _lookup(module, qualname, imported=True):
    found = importlib.import_module(module) if imported else sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _spec_again(module, qualname, args, saved=None):
    """a pickled spec, from the code of the day: the class's spec; else, of the step function, the spec define
    made of the same arguments, or the one spec the code made of it (its declaration changed with it, as `B =
    define(...)(step)` edited), or define(**args) of it. saved: the hash of the equations it was saved with
    (None in a file from before it was kept): the spec of those equations where this process still has it (a
    sweep defined the step again since, with another value of a global it reads), else other equations today are
    said"""
    spec = _live.get((module, qualname, saved)) or _spec_of_the_day(module, qualname, args)
    if saved is not None and spec.hash != saved:
        warn(f"symcell: the saved cell {spec.ir.name} ({module}.{qualname}) had other equations when it was saved; "
             "it runs today's code (the code changed, or a global number its step reads has another value than when "
             "it was defined)")
    return spec


def _spec_of_the_day(module, qualname, args):
    try:
        found = _lookup(module, qualname)
    except ImportError as e:
        raise pickle.UnpicklingError(f"symcell: a saved cell is defined in the module {module!r}, which cannot be "
                                     f"imported here ({e})") from e
    if isinstance(found, type) and issubclass(found, Cell) and found.spec is not None:
        return found.spec
    if not callable(found) or isinstance(found, type):
        raise pickle.UnpicklingError(f"symcell: a saved cell's step function {module}.{qualname} is not there to "
                                     f"load it with (found {found!r}): define it here first (import its module, or "
                                     "run its define), or build the model anew and load the saved state_dict")
    made = _made.get(found, {})
    if repr(args) in made or len(made) == 1:
        return made.get(repr(args)) or next(iter(made.values()))
    try:
        return define(**args)(found).spec
    except (TypeError, ValueError) as e:
        raise pickle.UnpicklingError(
            f"symcell: a saved cell's step function {module}.{qualname}, as the code defines it now, does not fit "
            f"the declaration saved with it ({e}); build the module with today's code and load the saved one's "
            "state_dict") from e


class class_or_instance:
    """A method that receives the instance when called on one, else the class."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj, cls):
        return self.fn.__get__(obj if obj is not None else cls)


class Binding:
    """A cell's equations with its dimensions bound: the sizes, the kernel keys and the checks of a call's
    arguments. A Cell holds one; a stacked symcell.RNN one per layer and direction (their parameters live on
    the module that holds them, and are passed in on each call)."""

    def __init__(self, spec, dims, backend="auto", name=None):
        ir = spec.ir
        missing = [d for d in ir.dims if d not in dims]
        unknown = [d for d in dims if d not in ir.dims]
        if unknown:
            raise TypeError(f"{ir.name}() got unexpected argument(s) {unknown}; its dimensions are {list(ir.dims)}")
        if missing:
            raise TypeError(f"{ir.name}() is missing the dimension(s) {missing}; e.g. {ir.name}("
                            + ", ".join(f"{d}=..." for d in ir.dims) + ")")
        for d, v in dims.items():   # (nn's errors: a TypeError for a float or a string, a ValueError for 0)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{ir.name}(): dimension {d} must be a positive int, got {v!r} "
                                f"({type(v).__name__})")
            if v <= 0:
                raise ValueError(f"{ir.name}(): dimension {d} must be a positive int, got {v!r}")
        dims = {d: int(v) for d, v in dims.items()}   # (np.int64(3) as 3)
        if not isinstance(backend, str) or backend != "auto":
            backends.get(backend)  # reject unknown names now, not at the first call (the device comes later)
        # name: what errors call the cell (a module's class: LSTMCell, whose equations are LSTM's)
        self.spec, self.name, self.dims, self.backend = spec, name or ir.name, dict(dims), backend
        with too_deep(ir.name):
            bound = bind_ir(ir, self.dims)  # a bad binding fails here, before any data
        # the operators name their kernel by key (see registry.py)
        self.keys = {b: registry.key(spec.hash, self.dims, b) for b in backends.available()}
        self.input_sizes = {n: int(s) for n, s in bound.inputs}
        sizes = {n: int(s) for n, s in bound.states}
        # the states a caller passes and gets back; the outputs declared with `outputs=` ride along as states the
        # step never reads (frontend.trace), zeros in, dropped on the way out
        self.state_sizes = {n: v for n, v in sizes.items() if n not in ir.hidden}
        self.hidden_sizes = {n: sizes[n] for n in ir.hidden}
        self.output_sizes = {n: sizes[n] for n in ir.outputs}
        self.param_shapes = {n: tuple(int(s) for s in shape) for n, shape in bound.user_params}
        # the elements of the kernels' weight matrices (how the cpp backend's loop splits across threads counts them)
        self.weight_elements = sum(int(shape[0]) * int(shape[1]) for _, shape in bound.params if len(shape) == 2)
        # the kernels' parameters from the module's: each a parameter, or a block of rows of one (split(W, k), a
        # 3-d parameter's blocks) as a view of it, so autograd sums the blocks' gradients into the parameter
        # (and a scalar parameter, shape (), as a vector of size 1)
        index = {n: k for k, n in enumerate(self.param_shapes)}
        views = {n: (index[p], int(r0), int(r1)) for n, p, r0, r1 in bound.views}
        self._kernel_params = [views.get(n, (index.get(n), None, None)) for n, _ in bound.params]
        # (as they are only where the kernels take every parameter whole, in order: a 3-d parameter the step never
        # uses has no blocks among the kernels', and was passed all the same, one parameter too many)
        self._reshaped = bool(bound.views) or any(s == () for s in self.param_shapes.values()) or \
            [k for k, _, _ in self._kernel_params] != list(range(len(self.param_shapes)))
        self.plans = replay.Plans()   # (what calls found, for the calls like them: replay.py)

    def __reduce__(self):
        # made again from its spec when unpickled: the sizes and kernel keys of the equations a load runs (see
        # CellSpec), not those pickled
        return _binding_again, (self.spec, self.dims, self.backend, self.name)

    def with_backend(self, backend):
        return Binding(self.spec, self.dims, backend, self.name)

    def kernel_params(self, params):
        """the module's parameters (in declaration order) -> the kernels' (see __init__)"""
        if not self._reshaped:
            return params
        return [params[k].reshape(-1) if r0 is None and params[k].dim() == 0 else
                params[k] if r0 is None else params[k].flatten(0, -2)[r0:r1] for k, r0, r1 in self._kernel_params]

    def kernel_key(self, device, dtype=None):
        """The key of the kernel for tensors on `device`, building it now for `dtype` (None: render only) unless
        torch.compile is tracing."""
        if device.type == "meta":   # (no values, only shapes, which every backend gives alike: as nn's on meta)
            return self.keys["reference"]
        name = backends.resolve(self.backend, device)
        if self.backend == "auto" and self.keys[name] in _unbuildable:
            name = "reference"
        if torch.compiler.is_compiling():
            return self.keys[name]
        try:
            kernel = registry.kernel_for(self.keys[name])
            if dtype is not None:
                kernel.ready(dtype)
        except BuildError as e:
            if self.backend != "auto" or name == "reference":
                raise
            # (remembered: every later call built it again, 25 s each, before falling back)
            if e.lasting:
                _unbuildable.add(self.keys[name])
            if name not in _fallback_warned:
                _fallback_warned.add(name)
                warn(f"symcell: the {name} backend could not be built ({e}); backend='auto' uses the "
                     "reference backend instead" + (" for this cell in this process" if e.lasting else ""))
            name = "reference"
        return self.keys[name]

    def settled(self, key, device):
        """Whether a later call on `device` gets `key` from kernel_key too: it is not a fallback from a build that
        a later call tries again (a full disk: BuildError.lasting)"""
        if device.type == "meta":
            return True
        wanted = self.keys[backends.resolve(self.backend, device)]
        return key == wanted or wanted in _unbuildable

    def check_params(self, params, ref, names=None):
        """the parameters a call runs with (a module's, or torch.func.functional_call's) have the shapes the
        dimensions give them, and one floating dtype (a 16-bit module may hold float32 ones) and device. names:
        what the caller calls them (symcell.RNN: weight_hh_l1_reverse), else the cell's names"""
        dtype, device = ref.dtype, ref.device
        if dtype.is_floating_point:   # (what the checks below pass, at a step's cost of Python: ~1 us a cell)
            for shape, p in zip(self.param_shapes.values(), params):
                if not (isinstance(p, torch.Tensor) and p.shape == shape and p.dtype == dtype and p.device == device
                        and p.layout == torch.strided):
                    break
            else:
                return
        name, names = self.name, list(names or self.param_shapes)
        first = next((n for n, p in zip(names, params) if p is ref), None)
        whose = "the cell's dimensions" if names == list(self.param_shapes) else "its layer's dimensions"
        for (n, shape), p in zip(zip(names, self.param_shapes.values()), params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{name}: parameter {n!r} must be a tensor, got {type(p).__name__}")
            if tuple(p.shape) != shape:
                raise ShapeError(f"{name}: parameter {n!r} has shape {tuple(p.shape)}, but {whose} "
                                 f"({', '.join(f'{d}={v}' for d, v in self.dims.items())}) make it {shape}")
            if p.layout != torch.strided:
                raise TypeError(f"{name}: parameter {n!r} has layout {p.layout}: the kernels take dense tensors "
                                "(torch.strided; to_dense() makes one)")
            if not p.is_floating_point():
                raise DtypeError(f"{name}: parameter {n!r} has dtype {p.dtype}; a floating dtype is needed")
            if p.dtype != ref.dtype and not (ref.dtype in LOW_PRECISION and p.dtype == torch.float32):
                raise DtypeError(f"{name}: parameter {n!r} has dtype {p.dtype} but parameter {first!r} has "
                                 f"{ref.dtype}: a cell's parameters share one dtype (a 16-bit cell may hold float32 "
                                 "ones)")
            if p.device != ref.device:
                if p.is_meta or ref.is_meta:   # (the one on meta is the one to fix: a partial load onto meta)
                    empty, other = (n, first) if p.is_meta else (first, n)
                    raise DeviceError(f"{name}: parameter {empty!r} is on the meta device, which holds no values, "
                                      f"but parameter {other!r} is on {(ref if p.is_meta else p).device}: load "
                                      f"{empty!r}, or call to_empty() and reset_parameters()")
                raise DeviceError(f"{name}: parameter {n!r} is on {p.device} but parameter {first!r} is on "
                                  f"{ref.device}")

    def check(self, xs, state, params, batch_first, param_names=None):
        """-> (input sequences as (T, B, n), initial states, a reference tensor for dtype and device: a 16-bit
        parameter if there is one, as a 16-bit cell may hold float32 parameters wherever they are)."""
        ir, name = self.spec.ir, self.name
        if isinstance(xs, torch.Tensor):
            xs = (xs,)
        # (a numpy array or a nested list, iterated, said "expected 1 input(s), got 5")
        plain = not isinstance(xs, (tuple, list))
        if plain or (len(xs) != len(ir.inputs) and not all(isinstance(t, torch.Tensor) for t in xs)):
            at, bad = (None, xs) if plain else next((k, t) for k, t in enumerate(xs) if not isinstance(t, torch.Tensor))
            got = (type(bad).__name__ if plain else
                   f"a {type(xs).__name__} whose item {at} is of type {type(bad).__name__}")
            n, names = len(ir.inputs), ", ".join(k for k, _ in ir.inputs)
            want = f"a tensor ({names})" if n == 1 else f"a tuple of {n} tensors ({names})"
            hint = " (torch.from_numpy makes one)" if type(bad).__module__ == "numpy" else ""
            raise TypeError(f"{name}: the input must be {want}, got {got}{hint}")
        xs = tuple(xs)
        if len(xs) != len(ir.inputs):
            raise ShapeError(f"{name}: expected {len(ir.inputs)} input(s) ({', '.join(n for n, _ in ir.inputs)}), "
                             f"got {len(xs)}")
        low = (p for p in params if isinstance(p, torch.Tensor) and p.dtype in LOW_PRECISION)
        ref = next(low, params[0]) if params else xs[0]

        def ref_name():   # (for a message) the parameter that is ref, None for an input
            return list(param_names or self.param_shapes)[[p is ref for p in params].index(True)] if params else None
        if type(ref).__name__ == "DTensor":   # (the reference backend ran on them and failed in its bookkeeping)
            n = ref_name()
            raise TypeError(f"{name}: {f'parameter {n!r}' if n else 'input'} is a DTensor (torch.distributed.tensor); "
                            "the kernels take local tensors: shard the module with FSDP's fully_shard, which gathers "
                            "its parameters for each forward as for nn.LSTM's (for step, after "
                            "register_fsdp_forward_method(cell, 'step')), or pass full_tensor()s")
        self.check_params(params, ref, param_names)

        def whose():   # (for a message) a 16-bit parameter among float32 ones makes the cell 16-bit: which one
            if all(p.dtype == ref.dtype for p in params):
                return f"the parameters have dtype {ref.dtype}"
            return (f"parameter {ref_name()!r} has dtype {ref.dtype}, which makes the cell's dtype {ref.dtype} (its "
                    f"other parameters may be float32)")
        layout = "(B, T, features)" if batch_first else "(T, B, features)"
        for (n, _), x in zip(ir.inputs, xs):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name}: input {n!r} must be a tensor, got {type(x).__name__}")
            if x.dim() != 3:
                raise ShapeError(f"{name}: input {n!r} must be 3-d {layout} (a sequence; a cell's one step takes "
                                 f"(B, features) or (features,)), got shape {tuple(x.shape)}")
            if x.shape[-1] != self.input_sizes[n]:
                raise ShapeError(f"{name}: input {n!r} has {x.shape[-1]} features (shape {tuple(x.shape)}) but the "
                                 f"cell expects {self.input_sizes[n]}")
        seq = [x.transpose(0, 1) if batch_first else x for x in xs]
        T, B = seq[0].shape[0], seq[0].shape[1]
        for (n, _), x in zip(ir.inputs, seq):
            if x.shape[0] != T or x.shape[1] != B:
                raise ShapeError(f"{name}: input {n!r} has (T, B) = {tuple(x.shape[:2])} but input "
                                 f"{ir.inputs[0][0]!r} has {(T, B)}")
        for (n, _), x in zip(ir.inputs, xs):
            _same_kind(name, "input", n, x, ref, whose)
        names = list(self.state_sizes)
        if state is None:
            state = tuple(ref.new_zeros(B, self.state_sizes[s]) for s in names)
        else:
            state = as_states(name, state, names)
            if len(state) != len(names):
                raise StateCountError(f"{name}: state must be a tuple of {len(names)} tensor(s) "
                                      f"({', '.join(names)}), got {len(state)}")
            for s, t in zip(names, state):
                if not isinstance(t, torch.Tensor):
                    raise TypeError(f"{name}: state {s!r} must be a tensor, got {type(t).__name__}")
                if t.shape != (B, self.state_sizes[s]):
                    raise ShapeError(f"{name}: state {s!r} has shape {tuple(t.shape)} but expected "
                                     f"(B, {self.state_sizes[s]}) = {(B, self.state_sizes[s])} for a batch of {B}")
                _same_kind(name, "state", s, t, ref, whose)
        state += tuple(ref.new_zeros(B, n) for n in self.hidden_sizes.values())
        return seq, state, ref


def _no_class_spec(cls, instead=None):
    """the error of a prebuilt class whose equations its constructor's arguments choose (SLSTM's num_heads)"""
    return (f"{cls.__name__}'s equations depend on its constructor's arguments: "
            + (f"call {instead}, or " if instead else "") + "use the cell made with symcell.define"
            + (f", {cls.spec_for}" if getattr(cls, "spec_for", None) else ""))


def _name_for_pickle(cls):
    """whether pickle finds the class by its name in another process (one of __main__ it would not); for a cell
    class, its qualified name made the one its module holds it by: define names the class as the cell, where a
    cell renamed by name= is bound to its step's name (@define(name="B") def step), a step's name to the cell's
    (B = define(...)(step)), a cell made in a class to Outer.Inner"""
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ in MAIN or "<" in cls.__qualname__:   # (no other process finds these)
        return False
    if _lookup(cls.__module__, cls.__qualname__, imported=False) is cls:
        return True
    recipe = getattr(cls.spec, "recipe", None)
    for name in [recipe and recipe.qualname] + [k for k, v in vars(module).items() if v is cls]:
        if name and "<" not in name and _lookup(cls.__module__, name, imported=False) is cls:
            cls.__qualname__ = name
            return True
    return False


# id(spec) -> the class _defined_again made of it, while that class lives (it holds its spec: a key it held
# itself would never go)
_defined_classes = weakref.WeakValueDictionary()


def _defined_again(spec, name, doc, module=None, qualname=None):
    """an unpickled instance of a class define made that another process may not find: the class of that name
    where this process has it with these equations (a script's own, loaded in it: isinstance holds), else a
    class made of the spec (one a spec)"""
    found = _lookup(module, qualname, imported=False) if module and qualname and "<" not in qualname else None
    if isinstance(found, type) and issubclass(found, Cell) and getattr(found.spec, "hash", None) == spec.hash:
        return found.__new__(found)
    cls = _defined_classes.get(id(spec))
    if cls is None or cls.spec is not spec:
        cls = type(name, (Cell,), {"spec": spec, "__doc__": doc, "__signature__": _class_signature(spec.ir),
                                   "_defined": True})
        _defined_classes[id(spec)] = cls
    return cls.__new__(cls)


# the names under which pruning (weight_orig) and the old weight_norm (weight_g, weight_v) keep what a parameter
# `weight` is computed from, in a forward pre-hook
KEPT_AS = ("_orig", "_g", "_v")


def stored_parameters(module, names):
    """declared name -> the parameters of `module` that hold it: itself, or what a parametrization (weight_norm's
    original0 and original1), pruning (weight_orig) or the old weight_norm (weight_g, weight_v) keeps, of which
    getattr(module, name) is computed afresh (so initialising that would change nothing)"""
    own = dict(module.named_parameters())
    out = {}
    for n in names:
        prefix = f"parametrizations.{n}."
        out[n] = ([own[n]] if n in own else [p for k, p in own.items() if k.startswith(prefix)]
                  or [own[n + suffix] for suffix in KEPT_AS if n + suffix in own])
    return out


def start_at(module, name, value):
    """set module's parameter `name` to the constant `value` as the module computes it (spec.initial): a
    parametrization through its right_inverse, as assigning to it does; the old weight_norm's direction v to ones
    and its norm g so that g * v / |v| is the value (both the value made a 0 NaN: 0 / |0|); pruning's original,
    which its mask keeps zero where it prunes"""
    own = dict(module.named_parameters())
    with torch.no_grad():
        if name in own:
            own[name].fill_(value)
        elif torch.nn.utils.parametrize.is_parametrized(module, name):
            try:
                setattr(module, name, torch.full_like(getattr(module, name), value))
            except NotImplementedError:   # (a parametrization without right_inverse: what it is computed from)
                for p in stored_parameters(module, [name])[name]:
                    p.fill_(value)
        elif f"{name}_g" in own and f"{name}_v" in own:
            dim = next(h.dim for h in module._forward_pre_hooks.values() if getattr(h, "name", None) == name)
            own[f"{name}_v"].fill_(1.0)
            own[f"{name}_g"].copy_(value * torch.norm_except_dim(own[f"{name}_v"], 2, dim))
        elif f"{name}_orig" in own:
            own[f"{name}_orig"].fill_(value)


def initial_values(spec):
    """spec.initial, checked: parameter names of the cell and numbers (a misspelt name was a bare KeyError in a
    cell and ignored by symcell.RNN)"""
    declared = [n for n, _ in spec.ir.user_params]
    for name, value in spec.initial.items():
        if name not in declared:
            raise ValueError(f"{spec.ir.name}.spec.initial names {name!r}, which is not a parameter of the cell "
                             f"({declared})")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{spec.ir.name}.spec.initial[{name!r}] must be a number, got {value!r}")
    return spec.initial


def check_loaded(module, names, saved=None):
    """an unpickled module has the parameters its cell declares in the code it loads with (a parameter added to
    the cell since it was saved was an AttributeError, or a count mismatch, at its first call); one the cell
    declared when it was saved (`saved`: those names, None in a file from before they were kept) and no longer
    declares is kept, unused, with a warning (a subclass's own parameter is none of these). One missing that the
    cell declared when it was saved was missing then (a weight-dropping wrapper deletes the weight and sets it in
    its forward): as it was, as nn's modules are copied and loaded."""
    missing = [n for n in names if not hasattr(module, n) and (saved is None or n not in saved)]
    if missing:
        raise pickle.UnpicklingError(
            f"symcell: the saved {type(module).__name__} has no parameter(s) {missing}, which its cell "
            f"{module._spec.ir.name} declares in the code it loads with: build the module with today's code and "
            "load the saved one's state_dict (strict=False)")
    def held(names):
        return {n + suffix for n in names for suffix in ("", *KEPT_AS)}
    kept, was = held(names), None if saved is None else held(saved)
    unused = [n for n, p in module._parameters.items() if p is not None and n not in kept and (was is None or n in was)]
    if unused:
        warn(f"symcell: the saved {type(module).__name__} holds parameter(s) {unused}, which its cell "
             f"{module._spec.ir.name} no longer declares in the code it loads with: kept, unused")


def state_to_save(module, names):
    """a module's pickled state: nn.Module's (its attributes but a compiled call) and the parameter names its cell
    declares (check_loaded)"""
    return {**nn.Module.__getstate__(module), "_declared_when_saved": list(names)}


def _binding_again(spec, dims, backend, name):
    try:
        return Binding(spec, dims, backend, name)
    except (TypeError, ValueError) as e:   # (a dimension renamed or added since it was saved)
        raise pickle.UnpicklingError(
            f"symcell: the saved {name} has dimensions {dims}, which its cell {spec.ir.name} as the code defines it "
            f"now does not take ({e}): build the module with today's code and load the saved one's state_dict") from e


def whole_under_fx(forward):
    """A symcell module's forward, which under torch.fx's symbolic tracing (fx.symbolic_trace, FX quantization,
    fusion) records the module as one call_module node with the arguments it was called with, as nn's RNN modules
    are recorded (fx's default tracer takes the modules of torch.nn as leaves), rather than being traced into: its
    checks read sizes, which a Proxy has not ("Proxy object cannot be iterated"). A subclass whose own forward
    calls it is refused, saying how to trace it (its forward may change what it passes on: recorded as called,
    the graph would skip that)."""
    @functools.wraps(forward)
    def traced(self, *args, **kwargs):
        if _fx_tracing() and (_has_proxy(args) or (kwargs and _has_proxy(kwargs.values()))):
            return _fx_call(self, traced, args, kwargs)
        return forward(self, *args, **kwargs)
    return traced


# whether torch.fx's symbolic tracer is tracing (no Proxy exists otherwise), asked before looking for one among a
# call's arguments: ~4 us of an LSTMCell's step; a torch without the question looks every time
_fx_tracing = getattr(torch.fx._symbolic_trace, "is_fx_symbolic_tracing", lambda: True)


def _proxies(args):
    """the Proxies torch.fx's tracer passes among these (or in a tuple of them: a state, several inputs)"""
    return (t for a in args for t in (a if isinstance(a, (tuple, list)) else (a,)) if isinstance(t, torch.fx.Proxy))


def _has_proxy(args):
    return next(_proxies(args), None) is not None


def _fx_call(module, forward, args, kwargs):
    name = type(module).__name__
    if type(module).forward is not forward:
        raise TypeError(f"torch.fx cannot trace into {name}, whose forward overrides symcell's: trace it as one call "
                        f"with a Tracer whose is_leaf_module is True for it (isinstance(m, {name}))")
    tracer = next(_proxies((*args, *kwargs.values()))).tracer
    path = tracer.path_of_module(module)
    if not path:
        raise TypeError(f"torch.fx cannot trace {name} itself (its forward reads sizes a Proxy has not); trace a "
                        "module that holds it, where it is one call_module node")
    return tracer.create_proxy("call_module", path, tuple(args), dict(kwargs))


class Cell(nn.Module):
    """A recurrent cell defined with symcell.define: a torch.nn.Module scanning the cell over a sequence.

        ys, state = cell(xs, state=None, lengths=None)   xs: (T, B, I), or (B, T, I) with batch_first
        state = cell(x, state)                           one step, x: (B, I) or (I,), as nn's cells
        state = cell.step(x, state)                      the same
    """

    spec: CellSpec = None
    # the devices whose torch.autocast casts the scan to autocast's dtype (sequence._autocast): both, as nn.LSTM's
    autocast_devices = ("cpu", "cuda")

    def __init__(self, *args, spec=None, batch_first=False, backend="auto", device=None, dtype=None, **dims):
        super().__init__()
        name, own = type(self).__name__, type(self).spec
        if own is None and spec is None:
            raise TypeError("symcell.Cell is a base class; make cells with symcell.define")
        if any(isinstance(a, (Sym, Matrix, Blocks)) for a in (*args, *dims.values())):   # (inside another step)
            raise TypeError(f"{name} is a cell, the torch.nn.Module class symcell.define made of a step function, "
                            "called here on the symbolic values of another step: to use its equations inside "
                            f"another step, call its step function (keep it: {name} = symcell.define(...)(step), "
                            "then step(x, h, ...) in the other)")
        if args:
            raise TypeError(f"{name} takes its dimensions by name: {name}("
                            f"{', '.join(f'{d}=...' for d in (spec or own).ir.dims)}), got {len(args)} by position")
        if spec is not None and own is not None and type(self).__dict__.get("_defined") and spec is not own:
            raise TypeError(f"{name}: spec= is for a Cell subclass that chooses its equations; {name}'s are its own")
        spec = spec or own
        self._spec = spec
        if not isinstance(batch_first, bool):
            raise TypeError(f"{type(self).__name__}: batch_first should be of type bool, got: "
                            f"{type(batch_first).__name__}")
        self._binding = Binding(spec, dims, backend, type(self).__name__)
        check_dtype(type(self).__name__, dtype)
        self.batch_first = batch_first
        for name, shape in self._binding.param_shapes.items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    # (copies: the binding's own, changed in place, made the repr and the kernels disagree with the parameters)
    @property
    def dims(self):
        """the dimensions this cell was made with, {name: size}"""
        return dict(self._binding.dims)

    @property
    def backend(self):
        """the backend's name ("auto", "cpp", "reference", "triton"); setting it rebinds the cell"""
        return self._binding.backend

    @backend.setter
    def backend(self, name):   # (a model saved with backend="cpp", loaded where no compiler is: "auto")
        self._binding = self._binding.with_backend(name)

    @property
    def input_sizes(self):
        """{input name: features}"""
        return dict(self._binding.input_sizes)

    @property
    def state_sizes(self):
        """{state name: features}, in the order the cell's state tuple holds them"""
        return dict(self._binding.state_sizes)

    # --- parameters ------------------------------------------------------------------------------------
    def reset_parameters(self):
        """uniform(-k, k) with k = 1/sqrt(size of the first state), as nn.LSTM, but the constants of
        `spec.initial` (as symcell.RNN stacking the cell starts them too); override to change."""
        self._uniform(1.0 / math.sqrt(self._init_size()))
        for name, value in initial_values(self._spec).items():
            start_at(self, name, value)

    def _init_size(self):
        """the size n of k = 1/sqrt(n) in reset_parameters (symcell.RNN stacking this instance starts its layers
        with it too): the first state's"""
        return self._binding.state_sizes[next(iter(self._binding.state_sizes))]

    def _uniform(self, k):
        with torch.no_grad():
            for stored in self._stored().values():
                for p in stored:
                    p.uniform_(-k, k)

    def _stored(self):
        return stored_parameters(self, [n for n, _ in self._spec.ir.user_params])

    def __reduce_ex__(self, protocol):
        reduced = super().__reduce_ex__(protocol)
        cls = type(self)
        if _name_for_pickle(cls) or not cls.__dict__.get("_defined"):
            return reduced
        # a class define made that no import finds (made in a function, a loop, from a functools.partial):
        # the instance is made again from its spec, as a stack of it is
        return (_defined_again, (cls.spec, cls.__name__, cls.__doc__, cls.__module__, cls.__qualname__),
                *reduced[2:])

    def __getstate__(self):
        return state_to_save(self, [n for n, _ in self._spec.ir.user_params])

    def __setstate__(self, state):   # (unpickled: its cell is the code's of the day, CellSpec)
        saved = state.pop("_declared_when_saved", None)
        super().__setstate__(state)
        check_loaded(self, [n for n, _ in self._spec.ir.user_params], saved)

    def _param_list(self):
        """the parameters as getattr finds them: a registered one from _parameters, as nn.Module.__getattr__ finds
        it (~0.3 us faster each: a step's Python); anything else by getattr (pruning's and the old weight_norm's
        computed weights, a parametrization's property, an attribute set over a parameter by object.__setattr__)"""
        params, own = self._parameters, self.__dict__
        return [params[n] if n in params and n not in own else getattr(self, n) for n, _ in self._spec.ir.user_params]

    # --- introspection ---------------------------------------------------------------------------------
    @class_or_instance
    def gradients(self_or_cls):
        """The derived forward and backward equations of one step, as text (on the class or an instance)."""
        spec = self_or_cls._spec if isinstance(self_or_cls, Cell) else self_or_cls.spec
        if spec is None:
            raise TypeError(_no_class_spec(self_or_cls, "gradients() on an instance"))
        return spec.explain()

    def source(self, device=None):
        """The generated code of the backend this cell uses for tensors on `device` (default: its parameters')."""
        device = torch.device(device) if device is not None else self._device()
        return self._kernel(device).source

    def _device(self):
        ps = self._param_list()
        return ps[0].device if ps else torch.device("cpu")

    def _kernel(self, device):
        return registry.kernel_for(self._kernel_key(device))

    def _kernel_key(self, device):
        return self._binding.kernel_key(device)

    def extra_repr(self):
        dims = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        return f"{dims}, batch_first={self.batch_first}, backend={self.backend!r}"

    def __prepare_scriptable__(self):
        refuse_script(type(self).__name__)

    # --- calling ---------------------------------------------------------------------------------------
    @whole_under_fx
    def forward(self, xs, state=None, lengths=None):
        """xs with 3 dims: the scan, -> (ys, final state). With 1 or 2 dims: one step, as nn's cells are called
        (see step), -> the new state."""
        if isinstance(xs, nn.utils.rnn.PackedSequence):
            raise TypeError(f"{self._binding.name}: a cell takes padded sequences (T, B, features) with lengths=, "
                            "not a PackedSequence (symcell.RNN and symcell.cells.LSTM/GRU take those)")
        if one_step(xs):
            if lengths is not None:
                raise ValueError(f"{self._binding.name}: lengths= applies to sequences (3-d input); one step "
                                 f"(input of shape {tuple(_first(xs).shape)}) takes none")
            return self._step(xs, state)
        return scan_module(self, xs, state, lengths=lengths)

    def step(self, x, state=None):
        """One step, as nn.LSTMCell is called: x (B, I), or (I,) for one unbatched row (a tuple for several
        inputs); state a tuple of (B, n) tensors, or (n,) unbatched (None: zeros). Returns the new state tuple,
        batched as x is. batch_first does not apply. Weights that pruning or the old weight_norm compute are
        computed as a call does (sequence.refresh_weights)."""
        refresh_weights(self)
        return self._step(x, state)

    def _step(self, x, state):
        binding, params = self._binding, self._param_list()
        # a step like an earlier one runs that step's plan (replay.py): a decoder's loop, Python's cost halved
        sig = replay.signature("step", x, state, params) if replay.plain() else None
        plan = binding.plans.get(sig)
        if plan is not None:
            xs = (x,) if isinstance(x, torch.Tensor) else x
            return run_plan(binding, plan, params, tuple(t.unsqueeze(0) for t in xs), state)[1]
        name = binding.name
        xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        for t in xs:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: a step's input must be a tensor, got {type(t).__name__}")
            if t.dim() not in (1, 2):
                raise ShapeError(f"{name}: a step's input must be 2-d (B, features) or 1-d (features,) unbatched, "
                                 f"got shape {tuple(t.shape)}")
        sizes = self._binding.input_sizes   # (the property copies: a step reads the binding's)
        with quiet_in_a_trace():
            for (n, _), t in zip(self._spec.ir.inputs, xs):
                if t.shape[-1] != sizes[n]:
                    rows = (f"; a 1-d input is one unbatched row: B rows are ({t.shape[0]}, {sizes[n]})"
                            if t.dim() == 1 else "")
                    raise ShapeError(f"{name}: input {n!r} has {t.shape[-1]} features (shape {tuple(t.shape)}) but "
                                     f"the cell expects {sizes[n]}{rows}")
        if any(t.dim() != xs[0].dim() for t in xs):
            raise ShapeError(f"{name}: a step's inputs must all be batched (2-d) or all unbatched (1-d), got shapes "
                             f"{[tuple(t.shape) for t in xs]}")
        unbatched = xs[0].dim() == 1
        if unbatched:   # one row, as nn's cells take it: the state is 1-d as well
            xs = tuple(t.unsqueeze(0) for t in xs)
            if state is not None:
                states = self._binding.state_sizes   # (the property copies: a step reads the binding's)
                state = as_states(name, state, list(states))
                for s, t in zip(states, state):
                    if isinstance(t, torch.Tensor) and tuple(t.shape) != (states[s],):
                        raise ShapeError(f"{name}: with an unbatched 1-d input the state {s!r} must have shape "
                                         f"({states[s]},), got {tuple(t.shape)}")
                state = tuple(t.unsqueeze(0) if isinstance(t, torch.Tensor) else t for t in state)
        _, final = run(binding, params, tuple(t.unsqueeze(0) for t in xs), state, False, None, False,
                       self.autocast_devices, plan_as=None if unbatched else sig)
        return tuple(f.squeeze(0) for f in final) if unbatched else final


def check_dtype(name, dtype):
    """a constructor's dtype= (None: torch's default), named in the error: torch said only that integer tensors
    cannot require gradients, or that a string is not a dtype"""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise DtypeError(f"{name}(): dtype must be a floating torch.dtype (torch.float32, torch.float64, "
                         f"torch.bfloat16, torch.float16), got {dtype!r}")


def _first(xs):
    return xs[0] if isinstance(xs, (tuple, list)) and xs else xs


def as_states(name, state, names, what="state"):
    """a caller's state as a tuple: a tensor (one state) or a tuple or list of tensors; else a TypeError saying what
    it must be (tuple(3.0) said "'float' object is not iterable", tuple("abc") three states)"""
    if isinstance(state, torch.Tensor):
        return (state,)
    if not isinstance(state, (tuple, list)):
        raise TypeError(f"{name}: {what} must be a tensor or a tuple of {len(names)} tensor(s) ({', '.join(names)}), "
                        f"got {type(state).__name__}")
    return tuple(state)


def one_step(xs):
    """Whether a cell's call is one step (its input has 1 or 2 dimensions, as nn's cells take it), not a scan."""
    x = _first(xs)
    return isinstance(x, torch.Tensor) and x.dim() in (1, 2)


def refuse_script(name):
    """torch.jit.script calls a module's __prepare_scriptable__ before compiling it: a clear error there, instead
    of TorchScript's about a line of symcell it cannot compile."""
    raise RuntimeError(f"symcell: torch.jit.script cannot compile {name}: its forward runs in Python (symcell "
                       "picks and builds the kernel for the tensors' device and dtype). Use torch.jit.trace or "
                       "torch.export instead: the trace records each fused scan as one operator and runs at any "
                       "sequence length; symcell.deploy saves such a model with its C++ kernels, to run without "
                       "Python (README, \"Deploying without Python\")")


def _same_kind(cell, kind, n, t, ref, whose=None):
    """t (input or state n) has the layout, dtype and device the parameters give; whose(): the parameters' dtype
    as a message says it"""
    if t.dtype == ref.dtype and t.device == ref.device and t.layout == torch.strided and t.is_floating_point():
        return
    what = f"{kind} {n!r}"
    if t.layout != torch.strided:
        raise TypeError(f"{cell}: {what} has layout {t.layout}: the kernels take dense tensors (torch.strided; "
                        "to_dense() makes one)")
    if not t.is_floating_point():
        raise DtypeError(f"{cell}: {what} has dtype {t.dtype}; a floating dtype is needed")
    if t.dtype != ref.dtype:
        raise DtypeError(f"{cell}: {what} has dtype {t.dtype} but "
                         + (whose() if whose else f"the parameters have dtype {ref.dtype}"))
    if t.device != ref.device:
        raise DeviceError(f"{cell}: {what} is on {t.device} but the parameters are on {ref.device}")
