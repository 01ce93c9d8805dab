"""symcell's warnings point at the user's line: the first frame outside symcell and torch (a module's forward is
called through torch's Module.__call__, a cache folder is chosen a varying number of calls deep), not a fixed
stacklevel that is right from one call path only."""
import os
import sys
import warnings

import torch

_INSIDE = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (__file__, torch.__file__))


def _internal(frame):
    """the frames warnings.warn does not count either (an import's machinery)"""
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def warn(message, category=UserWarning):
    frame, level = sys._getframe(1), 2   # stacklevel 2 names warn's caller
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(_INSIDE) or _internal(frame)):
        frame = frame.f_back
        level += not _internal(frame)
    warnings.warn(message, category, stacklevel=level)
