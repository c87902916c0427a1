"""PyTorch: nn.RNN/LSTM/GRU modules and state dicts to a Model, and back."""
import numpy as np

from cyrnn.models.convert import _direction
from cyrnn.models.model import Model

# PyTorch's order of the gate blocks in its stacked weights (see convert._direction).
_TORCH_ORDER = {"rnn": "", "lstm": "ifco", "gru": "rzn"}


def from_torch(module_or_state_dict, *, head=None):
    """A Model with the weights of a PyTorch nn.RNN (tanh), nn.LSTM or nn.GRU,
    or of its state dict (tensors or NumPy arrays: no torch needed). Any
    num_layers, bidirectional, with or without biases. Inputs are always
    (n_x, m, T), whatever the module's batch_first. Unsupported: LSTM
    proj_size, ReLU RNNs (ValueError naming them)."""
    obj = module_or_state_dict
    if hasattr(obj, "state_dict") and hasattr(obj, "mode"):
        mode = obj.mode
        if mode == "RNN_RELU":
            raise ValueError("nn.RNN with nonlinearity='relu' is not supported (tanh only)")
        if getattr(obj, "proj_size", 0):
            raise ValueError(f"nn.LSTM with proj_size={obj.proj_size} is not supported")
        state = obj.state_dict()
    else:
        state = obj
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v))
              for k, v in dict(state).items()}
    if any(k.startswith("weight_hr") for k in arrays):
        raise ValueError("an LSTM state dict with weight_hr (proj_size) is not supported")
    if "weight_hh_l0" not in arrays:
        raise KeyError("the state dict has no 'weight_hh_l0': not an nn.RNN/LSTM/GRU's")
    n_a = arrays["weight_hh_l0"].shape[1]
    gates = arrays["weight_hh_l0"].shape[0] // n_a
    cell = {1: "rnn", 4: "lstm", 3: "gru"}.get(gates)
    if cell is None or gates * n_a != arrays["weight_hh_l0"].shape[0]:
        raise ValueError(f"weight_hh_l0 has shape {arrays['weight_hh_l0'].shape}; expected "
                         f"(gates·hidden, hidden) with 1, 3 or 4 gates")
    num_layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in arrays if "_l" in k)
    directions = 2 if "weight_hh_l0_reverse" in arrays else 1
    layers = []
    for l in range(num_layers):
        layer = []
        for d in range(directions):
            sfx = f"l{l}" + ("_reverse" if d == 1 else "")
            W_ih, W_hh = arrays[f"weight_ih_{sfx}"], arrays[f"weight_hh_{sfx}"]
            zeros = np.zeros(W_hh.shape[0], W_hh.dtype)
            b_ih = arrays.get(f"bias_ih_{sfx}", zeros)
            b_hh = arrays.get(f"bias_hh_{sfx}", zeros)
            layer.append(_direction(cell, n_a, W_ih, W_hh, b_ih, b_hh,
                                   _TORCH_ORDER[cell]))
        layers.append(layer)
    return Model(cell, layers, head)


def to_torch_state_dict(model):
    """The weights as a PyTorch nn.RNN/LSTM/GRU state dict of tensors
    (`module.load_state_dict(model.to_torch_state_dict())`); the head is
    not part of it."""
    import torch
    return {k: torch.from_numpy(np.ascontiguousarray(v))
            for k, v in torch_arrays(model).items()}

def torch_arrays(model):
    n_a, out = model.n_a, {}
    for l, layer in enumerate(model.layers):
        for d, p in enumerate(layer):
            sfx = f"l{l}" + ("_reverse" if d == 1 else "")
            if model.cell == "rnn":
                W_ih, W_hh, b_ih = p["Wax"], p["Waa"], p["ba"][:, 0]
                b_hh = np.zeros_like(b_ih)
            elif model.cell == "lstm":
                W = np.concatenate([p["W" + g] for g in "ifco"])
                W_ih, W_hh = W[:, n_a:], W[:, :n_a]
                b_ih = np.concatenate([p["b" + g] for g in "ifco"])[:, 0]
                b_hh = np.zeros_like(b_ih)
            else:
                if "Wc" in p:
                    raise ValueError("PyTorch's GRU is the reset-after variant; this model "
                                     "is reset-before ('Wc'), which PyTorch cannot run")
                W_ih = np.concatenate([p["Wr"][:, n_a:], -p["Wu"][:, n_a:], p["Wcx"]])
                W_hh = np.concatenate([p["Wr"][:, :n_a], -p["Wu"][:, :n_a], p["Wca"]])
                b_ih = np.concatenate([p["br"], -p["bu"], p["bcx"]])[:, 0]
                b_hh = np.concatenate([0 * p["br"], 0 * p["bu"], p["bca"]])[:, 0]
            out.update({f"weight_ih_{sfx}": W_ih, f"weight_hh_{sfx}": W_hh,
                        f"bias_ih_{sfx}": b_ih, f"bias_hh_{sfx}": b_hh})
    return out
