"""The reference backend: the scans as plain torch code, the loop over time in Python.

It is the oracle the compiled backends are tested against, so it favours being obviously right over being fast:
one eager torch op per statement, the derived gradient expressions printed as they are. The rendered source is
what `cell.source()` shows; it is registered with linecache, so a traceback into it shows its lines.
"""
import itertools
import linecache
import weakref

from ..printing import Writer
from .base import Backend
from .torch_code import SCOPE, PythonLoop

_counter = itertools.count()


class ReferenceBackend(Backend):
    name, devices, priority = "reference", None, 0     # any device
    symbolic = False     # the torch code has the sizes in it

    def usable(self, device):
        return True

    def render(self, program, scans):
        w = Writer()
        w(f"# symcell reference backend: {program.name}")
        for scan in scans:
            PythonLoop(program, scan, w).function()
            w()
        return w.text()

    def build(self, program, scans, source, dims):
        filename = f"<symcell-reference-{program.name}-{next(_counter)}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        scope = dict(SCOPE)
        exec(compile(source, filename, "exec"), scope)  # noqa: S102 - our own generated code
        entries = {s.name: scope[s.name] for s in scans}
        # (the lines go with the code: a kernel the registry lets go took its lines out of linecache only never)
        weakref.finalize(next(iter(entries.values())), linecache.cache.pop, filename, None)
        return entries
