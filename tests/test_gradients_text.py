"""gradients() shows the schedule and the derived backward equations a reader can check by hand."""
import symcell
from symcell import cat, elu, sigmoid, split, tanh


@symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                params={"W": ("3*H", "H+I"), "b": ("3*H",)})
def LLTM(x, h, c, W, b):
    i, o, z = split(W @ cat(h, x) + b, 3)
    c = c + sigmoid(i) * elu(z)
    h = tanh(c) * sigmoid(o)
    return h, c


def test_lltm_gradients_text():
    text = LLTM.gradients()
    lines = [line.strip() for line in text.splitlines()]
    # forward: the input half of W @ cat(h, x) is hoisted, the state half stays in the loop
    assert "W_x = x @ W[:, H:H+I].T" in lines
    assert "W_h = h @ W[:, 0:H].T" in lines
    assert "c_new = c + elu(W_h_2 + W_x_2 + b_2)*sigmoid(W_h_0 + W_x_0 + b_0)" in lines
    # backward: the transposed matmuls, the weight gradient deferred to one GEMM, the bias summed over the batch
    assert "d_h += d_W_h @ W[:, 0:H]" in lines
    assert "d_W[:, 0:H] += d_W_h.T @ h      (summed over all steps in one GEMM after the loop)" in lines
    assert "d_W[:, H:H+I] += d_W_x.T @ x      (over all T*B rows)" in lines
    assert any(line.startswith("d_b[0:H] += ") and line.endswith("(summed over the batch)") for line in lines)
    # sigmoid' is written through sigmoid itself (s*(1-s)) and elu' through its own rule
    assert any("sigmoid(W_h_0 + W_x_0 + b_0)" in line for line in lines if line.startswith("_c"))
    assert "elu_grad(" in text
    assert "exp(-" not in text


def test_gradients_on_the_class_and_on_an_instance_agree():
    assert LLTM.gradients() == LLTM(I=2, H=3).gradients()
