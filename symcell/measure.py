"""What a training step keeps for backward: the distinct storages autograd saves while running a function."""
import torch


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
