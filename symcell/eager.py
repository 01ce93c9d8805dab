"""Plain eager Python loops of the prebuilt cells: the baseline symcell is measured against (examples,
benchmarks). One torch op per step and gate; torch autograd differentiates them."""
import torch
import torch.nn.functional as F


def lstm(x, h, c, w_ih, w_hh, b_ih, b_hh):
    out = []
    for t in range(x.shape[0]):
        i, f, g, o = (x[t] @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.stack(out), (h, c)


def gru(x, h, w_ih, w_hh, b_ih, b_hh):
    out = []
    for t in range(x.shape[0]):
        ir, iz, in_ = (x[t] @ w_ih.t() + b_ih).chunk(3, 1)
        hr, hz, hn = (h @ w_hh.t() + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        h = (1 - z) * torch.tanh(in_ + r * hn) + z * h
        out.append(h)
    return torch.stack(out), (h,)


def lltm(x, h, c, weights, bias):
    """The C++ extension tutorial's LLTM, one step at a time."""
    out = []
    for t in range(x.shape[0]):
        i, o, z = (torch.cat([h, x[t]], 1) @ weights.t() + bias).chunk(3, 1)
        c = c + torch.sigmoid(i) * F.elu(z)
        h = torch.tanh(c) * torch.sigmoid(o)
        out.append(h)
    return torch.stack(out), (h, c)
