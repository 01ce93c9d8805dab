"""What every backend is, and what it hands back.

A backend turns a kernel program (kernel.py: the forward and backward scans as data) into source text, and the
source into a Kernel. It never asks for anything else: pipeline.py gives it the program.

    class MyBackend(Backend):
        name, devices, priority = "mine", ("cpu",), 1      # backend="auto" picks by device, then priority
        symbolic = True                                    # renders sizes as run-time values (one build per cell)
        def usable(self, device): ...
        def render(self, program): -> str                  # printable: cell.source()
        def build(self, program, source, dims): -> Kernel

A Kernel has one calling convention for every backend (xs are (T, B, n) tensors, inits (B, n), ys the
sequences of the output states, lengths None or an int64 tensor of B lengths):
    forward(xs, inits, params, save, lengths=None)                -> (ys, finals, residuals)
    backward(d_ys, d_finals, xs, inits, params, ys, residuals, lengths=None) -> (d_xs, d_inits, d_params)
Each entry point the backend built returns a flat list of tensors in the order of its scan's result groups;
Kernel groups them. An entry point never writes into its arguments (the operators declare no mutation).
"""


class Backend:
    name = None
    devices = ()          # device types backend="auto" may pick this backend for
    priority = 0          # among usable backends for a device, "auto" takes the highest
    symbolic = False      # True: sizes are run-time arguments (the program keeps them symbolic)

    def usable(self, device):
        raise NotImplementedError

    def render(self, program):
        raise NotImplementedError

    def build(self, program, source, dims):
        raise NotImplementedError

    def row_order(self, lengths):
        """An order of the rows that suits this backend for a batch of mixed lengths (None: keep theirs)."""
        return None


class Kernel:
    """A built cell: its source, its program, and its two entry points (see the module docstring)."""

    def __init__(self, program, source, forward, backward):
        self.program, self.source = program, source
        self._entry = {"forward": forward, "backward": backward}

    def _grouped(self, scan, flat, save=False):
        out, k = [], 0
        for r in scan.returns:
            if r.save and not save:
                out.append(())
                continue
            out.append(tuple(flat[k:k + len(r.buffers)]))
            k += len(r.buffers)
        return tuple(out)

    def forward(self, xs, inits, params, save, lengths=None):
        flat = self._entry["forward"](list(xs), list(inits), list(params), save, lengths)
        return self._grouped(self.program.forward, flat, save)

    def backward(self, d_ys, d_finals, xs, inits, params, ys, residuals, lengths=None):
        flat = self._entry["backward"](list(d_ys), list(d_finals), list(xs), list(inits), list(params), list(ys),
                                       list(residuals), lengths)
        return self._grouped(self.program.backward, flat)


class Renderer:
    """Statements are rendered by `render_<Statement>` methods, in the manner of sympy's `_print_<Node>`."""

    def render(self, st):
        method = getattr(self, f"render_{type(st).__name__}", None)
        if method is None:
            raise NotImplementedError(f"{type(self).__name__} cannot render {type(st).__name__}")
        return method(st)

    def render_all(self, stmts):
        for st in stmts:
            self.render(st)
