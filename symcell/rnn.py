"""symcell.RNN: any cell stacked in layers, run in both directions, over padded or packed sequences.

The layout is nn.LSTM's, so that the prebuilt LSTM and GRU (symcell/cells/lstm.py) are this module with their
equations: parameters `{name}_l{k}` and `{name}_l{k}_reverse`, states `(num_layers * directions, B, n)`, the
outputs of both directions side by side. Each layer and direction is one fused scan; layer k > 0 is the same
cell with its input dimension bound to the width of the layer below.
"""
import math
import weakref
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import registry
from .dims import dim_symbol
from .errors import StateCountError
from .module import (Binding, Cell, CellSpec, ShapeError, _no_class_spec, as_states, check_dtype, check_loaded,
                     class_or_instance, initial_values, public_signature, refuse_script, start_at, state_to_save,
                     whole_under_fx)
from .sequence import check_lengths, row_order, run
from .warn import warn


def _spec_of(cell):
    if isinstance(cell, CellSpec):
        return cell
    if isinstance(cell, type) and issubclass(cell, Cell) and cell.spec is not None:
        return cell.spec
    if isinstance(cell, Cell):
        return cell._spec
    if isinstance(cell, type) and issubclass(cell, Cell):
        raise TypeError(f"symcell.RNN: {_no_class_spec(cell)}")
    raise TypeError(f"symcell.RNN: cell must be a cell made with symcell.define, got {cell!r}")


class RNN(nn.Module):
    """Stack a cell in layers and directions, as nn.LSTM stacks its cell:

        rnn = symcell.RNN(MyCell, num_layers=2, bidirectional=True, dropout=0.1, I=32, H=64)
        out, state = rnn(x, state=None, lengths=None)

    x: (T, B, I), (B, T, I) with batch_first, (T, I) for one unbatched sequence, or a PackedSequence. A cell of
    several inputs takes a tuple (x, *others) of padded sequences: x is the one stacked (layer k > 0 gets the
    output of the layer below in its place), the others go to every layer as they are (a T-LSTM's time deltas).
    out: (T, B, D * n): the output of the last layer, both directions side by side (D = 2 when
    bidirectional), zero past each sequence's length; a PackedSequence when x is one.
    state: one tensor per state of the cell, each (num_layers * D, B, n_s) with row k * D + d for layer k and
    direction d (a tensor for a one-state cell, else a tuple), the final state of each sequence at its own
    last step. `lengths` (B ints) gives each padded sequence its length, as packing does.
    dropout: applied to the outputs of every layer but the last, in training mode only.
    Layer k > 0 binds the cell's (first) input dimension to D * n; the cell needs one output (a state or not), and
    its first input's size a dimension of its own, used by nothing else that layers share.
    cell: a class made with symcell.define, or an instance, whose sizes, batch_first, backend, device and dtype
    are those of the stack where not passed (not its parameters: each layer has its own). Else batch_first is
    False, backend "auto", device and dtype torch's defaults.
    """

    autocast_devices = Cell.autocast_devices   # (sequence._autocast)
    packed_autocast_devices = None   # for a PackedSequence input, where not autocast_devices (LSTM: as nn.LSTM's)

    def __init__(self, cell, num_layers=1, bidirectional=False, dropout=0.0, batch_first=None, *,
                 backend=None, device=None, dtype=None, _init_size=None, **dims):
        super().__init__()
        spec = _spec_of(cell)
        ir, name = spec.ir, spec.ir.name
        if isinstance(cell, Cell):
            # an instance: its sizes, and the options not passed here (its parameters are not taken: each layer has
            # its own, started as the cell starts its own)
            clash = {d: v for d, v in dims.items() if d in cell.dims and v != cell.dims[d]}
            if clash:
                raise ValueError(f"symcell.RNN: the cell given has {cell.dims}; the dimension(s) passed differ: "
                                 f"{clash}")
            dims = {**cell.dims, **dims}
            params = list(cell.parameters())   # (its dtype: a 16-bit one's, as a 16-bit cell may hold float32 ones)
            first = next((p for p in params if p.dtype in (torch.bfloat16, torch.float16)), next(iter(params), None))
            batch_first = cell.batch_first if batch_first is None else batch_first
            backend = cell.backend if backend is None else backend
            device = first.device if device is None and first is not None else device
            dtype = first.dtype if dtype is None and first is not None else dtype
            _init_size = _init_size or cell._init_size()
        batch_first = False if batch_first is None else batch_first
        backend = "auto" if backend is None else backend
        check_dtype(name, dtype)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"{name}: batch_first should be of type bool, got: {type(batch_first).__name__}")
        if dropout > 0 and num_layers == 1:
            warn(f"{name}: dropout={dropout} acts between layers, so it does nothing with num_layers=1")
        if not ir.inputs or len(ir.outputs) != 1:
            raise ValueError(f"symcell.RNN: {name} has {len(ir.inputs)} input(s) and {len(ir.outputs)} output(s); "
                             "stacking needs one output and an input (the first input is the one stacked; any others "
                             "go to every layer as they are)")
        self._spec = spec
        self.num_layers, self.bidirectional, self.dropout = num_layers, bool(bidirectional), float(dropout)
        self.batch_first = batch_first
        self._dirs = 2 if bidirectional else 1
        first = Binding(spec, dims, backend)
        self.dims = dict(first.dims)   # (a copy: the binding's, changed in place, would change its kernels' sizes)
        self._bindings = [first]
        out_size = first.output_sizes[ir.outputs[0]]
        if num_layers > 1:
            size = ir.inputs[0][1]
            dim = next((d for d in ir.dims if size == dim_symbol(d)), None)
            if dim is None:
                raise ValueError(f"symcell.RNN: the input of {name} has size {size}; stacking rebinds the input "
                                 "size of layers above the first, so it must be a dimension of its own, e.g. 'I'")
            width = self._dirs * out_size
            try:
                upper = Binding(spec, {**dims, dim: width}, backend)
            except ValueError as e:
                raise ValueError(f"symcell.RNN: {name}'s layers above the first bind its input dimension {dim} to "
                                 f"the width of the layer below, {width}, where the sizes do not fit ({e})") from e
            others = [n for n, _ in ir.inputs[1:]]
            changed = {what: (a, b) for what, a, b in (("state sizes", first.state_sizes, upper.state_sizes),
                                                        ("output size", out_size, upper.output_sizes[ir.outputs[0]]),
                                                        ("other inputs' sizes",
                                                         {n: first.input_sizes[n] for n in others},
                                                         {n: upper.input_sizes[n] for n in others}))
                       if a != b}
            if changed:
                raise ValueError(f"symcell.RNN: in {name}, binding the input dimension {dim} to the width of the "
                                 f"layer below ({width}) changes the "
                                 + " and the ".join(f"{what} ({a} -> {b})" for what, (a, b) in changed.items())
                                 + "; the input dimension must be used by the first input (and weights) only")
            self._bindings += [upper] * (num_layers - 1)
        self.state_sizes = dict(first.state_sizes)
        self.output_size = out_size
        self._names = [[self._param_names(k, d) for d in range(self._dirs)] for k in range(num_layers)]
        for k in range(num_layers):
            for d in range(self._dirs):
                for (p, shape), full in zip(self._bindings[k].param_shapes.items(), self._names[k][d]):
                    self.register_parameter(full, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self._init_size = _init_size or next(iter(self.state_sizes.values()))
        self.reset_parameters()
        self._read_weights()

    @property
    def backend(self):
        return self._bindings[0].backend

    @backend.setter
    def backend(self, name):   # (a model saved with backend="cpp", loaded where no compiler is: "auto")
        again = {id(b): b.with_backend(name) for b in self._bindings}   # (the layers above the first share one)
        self._bindings = [again[id(b)] for b in self._bindings]

    def __setstate__(self, state):
        # unpickled: the parameters by the names of its cell as the code declares it now (CellSpec), in that order
        # (the pickled order of a cell whose declaration was reordered since passed W in U's place)
        saved = state.pop("_declared_when_saved", None)
        super().__setstate__(state)
        self._names = [[self._param_names(k, d) for d in range(self._dirs)] for k in range(self.num_layers)]
        check_loaded(self, [n for layer in self._names for names in layer for n in names], saved)
        self._read_weights()

    def __getstate__(self):
        state = state_to_save(self, [n for layer in self._names for names in layer for n in names])
        # (weak references, and a list a copy or a loaded module would not run: nn's, loaded, runs its weights from
        # its next call, as it finds the assigned tensors are not its weights)
        state.pop("_weights_when_read", None)
        state.pop("_assigned_flat_weights", None)
        return state

    def _param_names(self, layer, direction):
        return [f"{p}_l{layer}{'_reverse' if direction else ''}" for p, _ in self._spec.ir.user_params]

    def reset_parameters(self):
        """uniform(-k, k), k = 1/sqrt(hidden size), as nn.LSTM; a parameter the cell's spec gives a constant to
        start at (`spec.initial`: LayerNormLSTM's gains 1 and shift 0) that constant."""
        k = 1.0 / math.sqrt(self._init_size)
        user = [p for p, _ in self._spec.ir.user_params]
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-k, k)
        initial = initial_values(self._spec)
        for names in (names for layer in self._names for names in layer):
            for p, full in zip(user, names):
                if p in initial:
                    start_at(self, full, initial[p])

    def flatten_parameters(self):
        """A no-op, for code written against cuDNN RNNs."""

    @property
    def all_weights(self):
        """The parameters of each layer and direction, in nn.LSTM's order (layer-major, forward first)."""
        return [[getattr(self, n) for n in names] for layer in self._names for names in layer]

    # (nn.RNNBase's internals, read by code written for nn's RNNs: weight-dropping wrappers, exporters)
    @property
    def _all_weights(self):
        """the parameters' names of each layer and direction, in nn's order"""
        return [list(names) for layer in self._names for names in layer]

    @property
    def _flat_weights_names(self):
        return [n for names in self._all_weights for n in names]

    _assigned_flat_weights = None   # (the list _flat_weights holds, in the instance's __dict__ once there is one)

    @property
    def _flat_weights(self):
        """the tensors the layers run with, in _flat_weights_names' order: the parameters, or what code written for
        nn's RNNs assigned here or into this list (weight-dropping wrappers assign the dropped weights), as
        nn.RNNBase's list (read, it is the list the next forward runs: an item set in it runs)"""
        given = self._assigned_flat_weights   # (as held: the next forward checks it, as nn's)
        if given is None:
            self._read_weights()
            given = self.__dict__["_assigned_flat_weights"] = [getattr(self, n, None) for n in self._flat_weights_names]
        return given

    @_flat_weights.setter
    def _flat_weights(self, weights):
        weights, names = list(weights), self._flat_weights_names
        if len(weights) != len(names):
            raise ValueError(f"{self._spec.ir.name}: _flat_weights must hold {len(names)} tensors, one for each of "
                             f"_flat_weights_names, got {len(weights)}")
        self.__dict__["_assigned_flat_weights"] = weights

    # nn's forward runs its list until a weight is no longer the tensor it was when nn last read them (at
    # construction, after a move, or in a forward that found one changed: assigned by name, functional_call); then
    # it reads them all again. So does this one. (A weight may be missing or None: a wrapper that deletes it and
    # sets it in its forward; nn's list holds None there.)
    def _read_weights(self):
        self.__dict__.pop("_assigned_flat_weights", None)
        self.__dict__["_weights_when_read"] = [None if w is None else weakref.ref(w) for w in
                                               (getattr(self, n, None) for n in self._flat_weights_names)]

    def _assigned_weights(self):
        """the list _flat_weights holds where it still holds (above), else None. (Read as an attribute, whose class
        default is None: torch.compile guards what it reads so, and compiles again once a list is held; read from
        __dict__, a list held later was not seen, and a compiled forward ran the parameters.)"""
        given = self._assigned_flat_weights
        if given is None:
            return None
        read = self.__dict__.get("_weights_when_read")
        if read is None or any((r() if r is not None else None) is not getattr(self, n, None)
                               for r, n in zip(read, self._flat_weights_names)):
            self._read_weights()
            return None
        return given

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        given = replica.__dict__.get("_assigned_flat_weights")
        if given is not None:   # (its own list, as nn's replica: the replica's weights set into it are its own)
            replica.__dict__["_assigned_flat_weights"] = list(given)
        return replica

    def __setattr__(self, name, value):
        given = self.__dict__.get("_assigned_flat_weights")
        if given is not None and name in self._flat_weights_names:   # (nn.RNNBase.__setattr__)
            given[self._flat_weights_names.index(name)] = value
        super().__setattr__(name, value)

    def _apply(self, fn, *args, **kwargs):
        # (no weak references while it runs, as nn's: torch.utils.swap_tensors refuses a tensor that has one, and
        # .to() swaps the parameters under torch.__future__.set_swap_module_params_on_conversion and for subclasses)
        self.__dict__.pop("_weights_when_read", None)
        out = super()._apply(fn, *args, **kwargs)
        self._read_weights()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        # (the same for load_state_dict, which swaps them under that flag too: nn's fails there.) The references
        # are taken again to the same tensors, held meanwhile (a strong reference does not stop a swap): a weight
        # replaced since they were taken (register_parameter) or by the load (assign=True) is still found
        read = self.__dict__.pop("_weights_when_read", None)
        held = None if read is None else [None if r is None else r() for r in read]
        del read   # (the weak references themselves gone)
        try:
            return super()._load_from_state_dict(*args, **kwargs)
        finally:
            if held is not None:
                self.__dict__["_weights_when_read"] = [None if w is None else weakref.ref(w) for w in held]

    # --- introspection ------------------------------------------------------------------------------------
    @class_or_instance
    def gradients(self_or_cls):
        """The derived forward and backward equations of one step of the cell, as text."""
        spec = self_or_cls._spec if isinstance(self_or_cls, RNN) else getattr(self_or_cls, "spec", None)
        if spec is None:   # (symcell.RNN itself: it stacks the cell it is given)
            raise TypeError(f"{self_or_cls.__name__} stacks the cell it is given: call gradients() on an instance, "
                            "or on the cell")
        return spec.explain()

    def source(self, device=None):
        """The generated code of the first layer's kernel for tensors on `device` (default: the parameters', or
        the CPU for a cell without parameters)."""
        first = next(self.parameters(), None)
        device = torch.device(device) if device is not None else first.device if first is not None else \
            torch.device("cpu")
        return registry.kernel_for(self._bindings[0].kernel_key(device)).source

    def extra_repr(self):
        dims = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        return (f"{self._spec.ir.name}, {dims}, num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}, backend={self.backend!r}")

    def __prepare_scriptable__(self):
        refuse_script(type(self).__name__)

    # --- calling ------------------------------------------------------------------------------------------
    @whole_under_fx   # (torch.fx: one call, as nn's RNN modules are)
    def forward(self, input, state=None, lengths=None):
        name = self._spec.ir.name
        input, others = self._inputs(input)
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError(f"{name}: a PackedSequence carries its lengths; do not pass lengths= as well")
            # (T, B, I) in the packed order (longest first)
            x, lengths = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes))
            packed_lengths = lengths   # (on the CPU, as pack_padded_sequence takes them: x's device may be meta)
        elif not isinstance(input, torch.Tensor):
            raise TypeError(f"{name}: input must be a tensor or a PackedSequence, got {type(input).__name__}")
        else:
            x = input
        unbatched = not packed and x.dim() == 2
        if unbatched:   # one sequence (T, I), as nn.LSTM accepts it; batch_first does not apply
            x = x.unsqueeze(1)
        elif x.dim() != 3:
            raise ShapeError(f"{name}: input must be (T, B, features), (B, T, features) with batch_first, or "
                             f"(T, features) unbatched; got shape {tuple(x.shape)}")
        elif self.batch_first and not packed:
            x = x.transpose(0, 1)
        others = tuple(t.unsqueeze(1) if unbatched else t.transpose(0, 1) if self.batch_first else t for t in others)
        states = self._initial(state, x.shape[1], unbatched)
        if packed and input.sorted_indices is not None and states is not None:
            states = [t.index_select(1, input.sorted_indices) for t in states]
        order = None
        if lengths is not None:   # the row order scan prefers, once for all layers and directions
            lengths = check_lengths(name, lengths, x.shape[0], x.shape[1], x.device)
            order = row_order(self._bindings, lengths, x.dtype)
            if order is not None:
                unsort = torch.argsort(order)
                x, lengths = x.index_select(1, order), lengths[order]
                others = tuple(t.index_select(1, order) for t in others)
                states = None if states is None else [t.index_select(1, order) for t in states]
        D, finals = self._dirs, [[] for _ in self.state_sizes]
        assigned, flat = self._assigned_weights(), self._flat_weights_names   # (_flat_weights)
        layer_in = x
        # the layers' outputs joined as they come, outside autocast: under an autocast of another 16-bit dtype than
        # theirs, torch.cat and torch.stack fail ("Unexpected floating ScalarType in at::autocast::prioritize").
        # (Entered only under autocast: torch.export records the context as a node its loader refuses.)
        kind = x.device.type
        casts = (self.packed_autocast_devices or self.autocast_devices) if packed else self.autocast_devices
        autocast = kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind)
        plain = torch.autocast(kind, enabled=False) if autocast else nullcontext()
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                params = [assigned[flat.index(n)] for n in self._names[k][d]] if assigned is not None else \
                    [getattr(self, n) for n in self._names[k][d]]
                init = None if states is None else tuple(s[k * D + d] for s in states)
                ys, fin = run(self._bindings[k], params, (layer_in, *others), init, d == 1, lengths, False,
                              casts, self._names[k][d], ordered=lengths is not None)
                outs.append(ys)
                for j, f in enumerate(fin):
                    finals[j].append(f)
            with plain:
                layer_in = outs[0] if D == 1 else torch.cat(outs, -1)
            if self.dropout > 0 and self.training and k < self.num_layers - 1:
                # drawn in the caller's row order: the backend's order (its threads', its sort by length) made each
                # row another's mask, so seeded results changed with the backend and the thread count
                if order is None:
                    layer_in = F.dropout(layer_in, self.dropout, training=True)
                else:
                    layer_in = F.dropout(layer_in.index_select(1, unsort), self.dropout, training=True)
                    layer_in = layer_in.index_select(1, order)
        with plain:
            finals = tuple(torch.stack(f) for f in finals)
        out = layer_in
        if order is not None:
            out, finals = out.index_select(1, unsort), tuple(f.index_select(1, unsort) for f in finals)
        if packed:
            out = PackedSequence(pack_padded_sequence(out, packed_lengths).data, input.batch_sizes,
                                 input.sorted_indices, input.unsorted_indices)
            if input.unsorted_indices is not None:     # final states in the caller's order, as nn.LSTM returns them
                finals = tuple(f.index_select(1, input.unsorted_indices) for f in finals)
        elif unbatched:
            out, finals = out.squeeze(1), tuple(f.squeeze(1) for f in finals)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (finals[0] if len(finals) == 1 else finals)

    def _inputs(self, input):
        """-> (the input stacked, the cell's other inputs): a cell of several inputs takes a tuple of as many
        tensors, of the first's dimensions; one of one input, its input as nn.LSTM does (or a 1-tuple)"""
        name, inputs = self._spec.ir.name, self._spec.ir.inputs
        if not isinstance(input, (tuple, list)) or isinstance(input, PackedSequence):   # (a namedtuple)
            if len(inputs) > 1:
                raise TypeError(f"{name}: input must be a tuple of {len(inputs)} sequences "
                                f"({', '.join(n for n, _ in inputs)}), got {type(input).__name__}")
            return input, ()
        if len(input) != len(inputs):
            bad = next(((k, t) for k, t in enumerate(input) if not isinstance(t, (torch.Tensor, PackedSequence))), None)
            if bad is not None:   # (a nested list, as tolist() gives, said "expected 1 input(s), got 3")
                names = ", ".join(n for n, _ in inputs)
                want = f"a tensor ({names})" if len(inputs) == 1 else f"a tuple of {len(inputs)} tensors ({names})"
                raise TypeError(f"{name}: the input must be {want}, got a {type(input).__name__} whose item {bad[0]} "
                                f"is of type {type(bad[1]).__name__}")
            raise ShapeError(f"{name}: expected {len(inputs)} input(s) ({', '.join(n for n, _ in inputs)}), got "
                             f"{len(input)}")
        if len(inputs) == 1:
            return input[0], ()
        for (n, _), t in zip(inputs, input):
            if isinstance(t, PackedSequence):
                raise TypeError(f"{name}: a cell of several inputs takes padded sequences with lengths=, not "
                                f"PackedSequences (input {n!r})")
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: input {n!r} must be a tensor, got {type(t).__name__}")
            if t.dim() != input[0].dim():
                raise ShapeError(f"{name}: input {n!r} has shape {tuple(t.shape)} but input {inputs[0][0]!r} has "
                                 f"{tuple(input[0].shape)}: the inputs share their layout (one unbatched sequence: "
                                 "(T, features) each)")
        return input[0], tuple(input[1:])

    def _initial(self, state, B, unbatched):
        """The caller's states, (num_layers * D, B, n) each, checked; None for zeros."""
        if state is None:
            return None
        name, names = self._spec.ir.name, list(self.state_sizes)
        state = as_states(name, state, names, "hx")
        if len(state) != len(names):
            raise StateCountError(f"{name}: state must be {len(names)} tensor(s) ({', '.join(names)}), got "
                                  f"{len(state)}")
        LD = self.num_layers * self._dirs
        out = []
        for s, t in zip(names, state):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: state {s!r} must be a tensor, got {type(t).__name__}")
            want = (LD, self.state_sizes[s]) if unbatched else (LD, B, self.state_sizes[s])
            if tuple(t.shape) != want:
                raise ShapeError(f"{name}: state {s!r} must have shape (num_layers * directions, "
                                 f"{'' if unbatched else 'B, '}{self.state_sizes[s]}) = {want}, got {tuple(t.shape)}")
            out.append(t.unsqueeze(1) if unbatched else t)
        return out


public_signature(RNN, "_init_size")   # (LSTM's and GRU's argument)
