"""The frameworks' stacked gate weights as the notebook's parameter dicts."""
import numpy as np

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}     # gate row blocks in the frameworks' stacks


def _direction(cell, n_a, W_ih, W_hh, b_ih, b_hh, order, reset_after=True):
    """One direction's parameter dict from a framework's stacked weights.

    W_ih: (gates·n_a, n_in), W_hh: (gates·n_a, n_a), b_ih/b_hh: (gates·n_a,),
    gate blocks in `order`: LSTM letters i, f, c (candidate), o; GRU r (reset),
    z (update, the frameworks' h = z·h_prev + (1 - z)·candidate) and n (candidate)."""
    if cell == "rnn":
        return {"Wax": W_ih, "Waa": W_hh, "ba": (b_ih + b_hh)[:, None]}
    rows = {g: slice(q * n_a, (q + 1) * n_a) for q, g in enumerate(order)}
    if cell == "lstm":
        p = {}
        for g in "ifco":
            p["W" + g] = np.hstack([W_hh[rows[g]], W_ih[rows[g]]])
            p["b" + g] = (b_ih[rows[g]] + b_hh[rows[g]])[:, None]
        return p
    r, z, n = rows["r"], rows["z"], rows["n"]
    # docs/contract.md §5: the frameworks' z is 1 - Γu, hence the sign flip
    p = {"Wr": np.hstack([W_hh[r], W_ih[r]]), "br": (b_ih[r] + b_hh[r])[:, None],
         "Wu": -np.hstack([W_hh[z], W_ih[z]]), "bu": -(b_ih[z] + b_hh[z])[:, None]}
    if reset_after:
        p.update({"Wcx": W_ih[n], "bcx": b_ih[n][:, None],
                  "Wca": W_hh[n], "bca": b_hh[n][:, None]})
    else:     # the candidate's two biases both sit outside the reset gate
        p.update({"Wc": np.hstack([W_hh[n], W_ih[n]]), "bc": (b_ih[n] + b_hh[n])[:, None]})
    return p
