"""Plain NumPy implementation of the notebook's RNN/LSTM functions and the GRU.

This is the baseline cyrnn is tested and benchmarked against. It follows
``docs/contract.md`` exactly: the notebook's equations, shapes, caches and gradient
dicts, the corrected LSTM backward equations, and a softmax that is stable per
column (the course helper subtracts the global max, which yields NaN when one
column sits far below another).
"""
import numpy as np

__all__ = [
    "softmax", "sigmoid",
    "rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward",
    "lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
    "gru_cell_forward", "gru_forward", "gru_cell_backward", "gru_backward",
]


def _lengths(lengths, m, T):
    """docs/contract.md §6 lengths as an int array (None: every column runs all T steps)."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu" or lengths.shape != (m,):
        raise ValueError(f"lengths must be integers of shape ({m},)")
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must be in 0 .. {T}")
    return lengths.astype(np.int64)


def _split(caches):
    """(steps, x, lengths) of forward caches: (steps, x) or (steps, x, lengths)."""
    return (caches[0], caches[1], caches[2] if len(caches) == 3 else None)


def _masked(value, on):
    """value where the column runs (on), 0 elsewhere; value itself without lengths."""
    return value if on is None else np.where(on, value, 0)


def _held(new, old, on):
    """The state after a step: new where the column runs, old (held) elsewhere."""
    return new if on is None else np.where(on, new, old)


def softmax(x):
    """Softmax over axis 0, stable per column."""
    e_x = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e_x / e_x.sum(axis=0, keepdims=True)


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x))."""
    return 1 / (1 + np.exp(-x))


def rnn_cell_forward(xt, a_prev, parameters):
    Wax = parameters["Wax"]
    Waa = parameters["Waa"]
    Wya = parameters["Wya"]
    ba = parameters["ba"]
    by = parameters["by"]
    a_next = np.tanh(np.dot(Waa, a_prev) + np.dot(Wax, xt) + ba)
    yt_pred = softmax(np.dot(Wya, a_next) + by)
    cache = (a_next, a_prev, xt, parameters)
    return a_next, yt_pred, cache


# With lengths (docs/contract.md §6) a column runs steps 0 .. lengths[j] - 1: after them its
# outputs are 0, its state is held and its inputs are not read (the steps run on
# zeros there, so padding never reaches a result); backward masks the gradients
# arriving at those steps, which makes their contributions exactly 0. Caches are
# then (steps, x, lengths).

def rnn_forward(x, a0, parameters, *, lengths=None):
    caches = []
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wya"].shape
    lengths = _lengths(lengths, m, T_x)
    a = np.zeros((n_a, m, T_x))
    y_pred = np.zeros((n_y, m, T_x))
    a_next = a0
    for t in range(T_x):
        on = None if lengths is None else lengths > t
        a_new, yt_pred, cache = rnn_cell_forward(_masked(x[:, :, t], on), a_next, parameters)
        a_next = _held(a_new, a_next, on)
        a[:, :, t] = _masked(a_new, on)
        y_pred[:, :, t] = _masked(yt_pred, on)
        caches.append(cache)
    return a, y_pred, (caches, x) if lengths is None else (caches, x, lengths)


def rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, parameters = cache
    Wax = parameters["Wax"]
    Waa = parameters["Waa"]
    dtanh = (1 - a_next ** 2) * da_next
    dxt = np.dot(Wax.T, dtanh)
    dWax = np.dot(dtanh, xt.T)
    da_prev = np.dot(Waa.T, dtanh)
    dWaa = np.dot(dtanh, a_prev.T)
    dba = np.sum(dtanh, axis=1, keepdims=True)
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def rnn_backward(da, caches):
    caches, x, lengths = _split(caches)
    a1, a0, x1, parameters = caches[0]
    n_a, m, T_x = da.shape
    n_x, m = x1.shape
    dx = np.zeros((n_x, m, T_x))
    dWax = np.zeros((n_a, n_x))
    dWaa = np.zeros((n_a, n_a))
    dba = np.zeros((n_a, 1))
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        on = None if lengths is None else lengths > t
        gradients = rnn_cell_backward(_masked(da[:, :, t] + da_prevt, on), caches[t])
        da_prevt = gradients["da_prev"]
        dx[:, :, t] = gradients["dxt"]
        dWax += gradients["dWax"]
        dWaa += gradients["dWaa"]
        dba += gradients["dba"]
    return {"dx": dx, "da0": da_prevt, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    Wf, bf = parameters["Wf"], parameters["bf"]
    Wi, bi = parameters["Wi"], parameters["bi"]
    Wc, bc = parameters["Wc"], parameters["bc"]
    Wo, bo = parameters["Wo"], parameters["bo"]
    Wy, by = parameters["Wy"], parameters["by"]
    concat = np.concatenate((a_prev, xt), axis=0)
    ft = sigmoid(np.dot(Wf, concat) + bf)
    it = sigmoid(np.dot(Wi, concat) + bi)
    cct = np.tanh(np.dot(Wc, concat) + bc)
    c_next = ft * c_prev + it * cct
    ot = sigmoid(np.dot(Wo, concat) + bo)
    a_next = ot * np.tanh(c_next)
    yt_pred = softmax(np.dot(Wy, a_next) + by)
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def lstm_forward(x, a0, parameters, *, lengths=None):
    caches = []
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wy"].shape
    lengths = _lengths(lengths, m, T_x)
    a = np.zeros((n_a, m, T_x))
    c = np.zeros((n_a, m, T_x))
    y = np.zeros((n_y, m, T_x))
    a_next = a0
    c_next = np.zeros((n_a, m))
    for t in range(T_x):
        on = None if lengths is None else lengths > t
        a_new, c_new, yt, cache = lstm_cell_forward(_masked(x[:, :, t], on), a_next, c_next,
                                                    parameters)
        a_next, c_next = _held(a_new, a_next, on), _held(c_new, c_next, on)
        a[:, :, t] = _masked(a_new, on)
        y[:, :, t] = _masked(yt, on)
        c[:, :, t] = _masked(c_new, on)
        caches.append(cache)
    return a, y, c, (caches, x) if lengths is None else (caches, x, lengths)


def lstm_cell_backward(da_next, dc_next, cache):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_next.shape[0]
    tanh_c = np.tanh(c_next)
    # Gradient reaching c_next: from the cell state itself and through a_next.
    dc = dc_next + da_next * ot * (1 - tanh_c ** 2)
    dot = da_next * tanh_c * ot * (1 - ot)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct * it * (1 - it)
    dft = dc * c_prev * ft * (1 - ft)
    concat = np.concatenate((a_prev, xt), axis=0)
    gradients = {}
    dconcat = 0
    for name, dgate in (("f", dft), ("i", dit), ("c", dcct), ("o", dot)):
        W = parameters["W" + name]
        gradients["dW" + name] = np.dot(dgate, concat.T)
        gradients["db" + name] = np.sum(dgate, axis=1, keepdims=True)
        dconcat = dconcat + np.dot(W.T, dgate)
    gradients["da_prev"] = dconcat[:n_a]
    gradients["dc_prev"] = dc * ft
    gradients["dxt"] = dconcat[n_a:]
    return {key: gradients[key] for key in (
        "dxt", "da_prev", "dc_prev", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")}


def lstm_backward(da, caches):
    caches, x, lengths = _split(caches)
    a1, c1, a0, c0, f1, i1, cc1, o1, x1, parameters = caches[0]
    n_a, m, T_x = da.shape
    n_x, m = x1.shape
    dx = np.zeros((n_x, m, T_x))
    grads = {"dW" + g: np.zeros((n_a, n_a + n_x)) for g in "fico"}
    grads.update({"db" + g: np.zeros((n_a, 1)) for g in "fico"})
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        on = None if lengths is None else lengths > t
        step = lstm_cell_backward(_masked(da[:, :, t] + da_prevt, on), _masked(dc_prevt, on),
                                  caches[t])
        da_prevt = step["da_prev"]
        dc_prevt = step["dc_prev"]
        dx[:, :, t] = step["dxt"]
        for key in grads:
            grads[key] += step[key]
    result = {"dx": dx, "da0": da_prevt}
    for g in "fico":
        result["dW" + g] = grads["dW" + g]
        result["db" + g] = grads["db" + g]
    return result


# GRU (docs/contract.md §5). The update gate ut weights the candidate; the keys choose
# the variant: "Wc" (reset-before) or "Wcx", "Wca", "bcx", "bca" (reset-after).

def _gru_reset_before(parameters):
    has_after = any(k in parameters for k in ("Wcx", "Wca", "bcx", "bca"))
    if "Wc" in parameters and has_after:
        raise ValueError("parameters has both 'Wc' (reset-before GRU) and reset-after keys")
    return "Wc" in parameters


def gru_cell_forward(xt, a_prev, parameters):
    Wr, br = parameters["Wr"], parameters["br"]
    Wu, bu = parameters["Wu"], parameters["bu"]
    Wy, by = parameters["Wy"], parameters["by"]
    concat = np.concatenate((a_prev, xt), axis=0)
    rt = sigmoid(np.dot(Wr, concat) + br)
    ut = sigmoid(np.dot(Wu, concat) + bu)
    if _gru_reset_before(parameters):
        cct = np.tanh(np.dot(parameters["Wc"], np.concatenate((rt * a_prev, xt), axis=0))
                      + parameters["bc"])
    else:
        hct = np.dot(parameters["Wca"], a_prev) + parameters["bca"]
        cct = np.tanh(np.dot(parameters["Wcx"], xt) + parameters["bcx"] + rt * hct)
    a_next = ut * cct + (1 - ut) * a_prev
    yt_pred = softmax(np.dot(Wy, a_next) + by)
    cache = (a_next, a_prev, rt, ut, cct, xt, parameters)
    return a_next, yt_pred, cache


def gru_forward(x, a0, parameters, *, lengths=None):
    caches = []
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wy"].shape
    lengths = _lengths(lengths, m, T_x)
    a = np.zeros((n_a, m, T_x))
    y = np.zeros((n_y, m, T_x))
    a_next = a0
    for t in range(T_x):
        on = None if lengths is None else lengths > t
        a_new, yt, cache = gru_cell_forward(_masked(x[:, :, t], on), a_next, parameters)
        a_next = _held(a_new, a_next, on)
        a[:, :, t] = _masked(a_new, on)
        y[:, :, t] = _masked(yt, on)
        caches.append(cache)
    return a, y, (caches, x) if lengths is None else (caches, x, lengths)


def gru_cell_backward(da_next, cache):
    a_next, a_prev, rt, ut, cct, xt, parameters = cache
    n_a = a_next.shape[0]
    dcct = da_next * ut * (1 - cct ** 2)          # at the candidate's pre-activation
    dut = da_next * (cct - a_prev) * ut * (1 - ut)
    da_prev = da_next * (1 - ut)
    concat = np.concatenate((a_prev, xt), axis=0)
    gradients = {}
    if _gru_reset_before(parameters):
        Wc = parameters["Wc"]
        dcat_c = np.dot(Wc.T, dcct)                # gradient of [rt * a_prev; xt]
        drt = dcat_c[:n_a] * a_prev * rt * (1 - rt)
        da_prev = da_prev + dcat_c[:n_a] * rt
        dxt = dcat_c[n_a:]
        gradients["dWc"] = np.dot(dcct, np.concatenate((rt * a_prev, xt), axis=0).T)
        gradients["dbc"] = np.sum(dcct, axis=1, keepdims=True)
        candidate = ("dWc", "dbc")
    else:
        Wcx, Wca = parameters["Wcx"], parameters["Wca"]
        hct = np.dot(Wca, a_prev) + parameters["bca"]
        dhct = dcct * rt
        drt = dcct * hct * rt * (1 - rt)
        da_prev = da_prev + np.dot(Wca.T, dhct)
        dxt = np.dot(Wcx.T, dcct)
        gradients["dWcx"] = np.dot(dcct, xt.T)
        gradients["dbcx"] = np.sum(dcct, axis=1, keepdims=True)
        gradients["dWca"] = np.dot(dhct, a_prev.T)
        gradients["dbca"] = np.sum(dhct, axis=1, keepdims=True)
        candidate = ("dWca", "dWcx", "dbca", "dbcx")
    dconcat = 0
    for name, dgate in (("r", drt), ("u", dut)):
        gradients["dW" + name] = np.dot(dgate, concat.T)
        gradients["db" + name] = np.sum(dgate, axis=1, keepdims=True)
        dconcat = dconcat + np.dot(parameters["W" + name].T, dgate)
    gradients["da_prev"] = da_prev + dconcat[:n_a]
    gradients["dxt"] = dxt + dconcat[n_a:]
    return {key: gradients[key] for key in ("dxt", "da_prev", "dWr", "dbr", "dWu", "dbu")
            + candidate}


def gru_backward(da, caches):
    caches, x, lengths = _split(caches)
    n_a, m, T_x = da.shape
    n_x = caches[0][5].shape[0]
    dx = np.zeros((n_x, m, T_x))
    grads = None
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        on = None if lengths is None else lengths > t
        step = gru_cell_backward(_masked(da[:, :, t] + da_prevt, on), caches[t])
        da_prevt = step.pop("da_prev")
        dx[:, :, t] = step.pop("dxt")
        if grads is None:
            grads = {key: np.zeros_like(value) for key, value in step.items()}
        for key in grads:
            grads[key] += step[key]
    if grads is None:   # no steps: zero gradients of the variant's shapes
        parameters = caches[0][6]
        keys = ["Wr", "br", "Wu", "bu"] + (["Wc", "bc"] if _gru_reset_before(parameters)
                                           else ["Wca", "Wcx", "bca", "bcx"])
        grads = {"d" + key: np.zeros(np.shape(parameters[key])) for key in keys}
    result = {"dx": dx, "da0": da_prevt}
    result.update(grads)
    return result
