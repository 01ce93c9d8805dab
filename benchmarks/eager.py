"""The baselines symcell is measured against (benchmarks, examples): a Python loop over time of a prebuilt
cell's plain torch step (symcell.cells.*_reference), one torch op per gate and step, differentiated by torch
autograd; and what autograd keeps for backward while a function runs."""
import torch

from symcell.cells import gru_reference, lltm_reference, lstm_reference


def loop(step, x, state, params):
    """ys (the first state at every step), final state"""
    out = []
    for t in range(x.shape[0]):
        state = step(x[t], *state, *params)
        out.append(state[0])
    return torch.stack(out), tuple(state)


def lstm(x, h, c, *params):
    return loop(lstm_reference, x, (h, c), params)


def gru(x, h, *params):
    return loop(gru_reference, x, (h,), params)


def lltm(x, h, c, *params):
    return loop(lltm_reference, x, (h, c), params)


def saved_bytes(run, exclude=()):
    """Bytes of the distinct storages autograd saves for backward during run(), the storages of `exclude`
    (parameters, inputs: memory that exists anyway) not counted."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen, total = set(), [0]

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip and st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total[0] += st.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return total[0]
