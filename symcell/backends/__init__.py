"""Backend registry: a backend's build(spec, dims) turns a cell (its schedule and derived backward) into a Kernel.

A Kernel has `source` (printable text) and two callables with one calling convention for every backend:
    forward(xs, inits, params, save)        -> (ys, finals, residuals)
    backward(d_ys, d_finals, xs, inits, params, ys, residuals) -> (d_xs, d_inits, d_params)
xs are (T, B, n) tensors, inits (B, n), ys the (T, B, n) sequences of the output states.
"""
_REGISTRY = {}


def register(name):
    def deco(cls):
        _REGISTRY[name] = cls
        cls.name = name
        return cls
    return deco


def get(name):
    if name not in _REGISTRY:
        raise ValueError(f"backend={name!r} is not available; choose one of {sorted(_REGISTRY) + ['auto']}")
    return _REGISTRY[name]()


def available():
    return sorted(_REGISTRY)


def resolve(name, device):
    """'auto' -> the best registered backend for the device; others are checked."""
    if name == "auto":
        preference = {"cuda": ["triton", "reference"], "cpu": ["cpp", "reference"]}.get(device.type,
                                                                                       ["reference"])
        for b in preference:
            if b in _REGISTRY and _REGISTRY[b].usable(device):
                return b
        return "reference"
    if name not in _REGISTRY:
        raise ValueError(f"backend={name!r} is not available; choose one of {sorted(_REGISTRY) + ['auto']}")
    return name


from . import cpp, reference, triton_backend  # noqa: E402,F401  (each registers itself)
