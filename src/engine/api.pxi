# ------------------------------------------------------------------ public functions
# Each is a thin shell over the engine: the cell's description, the notebook's
# tuple. Compiled, these entry points cost ~0.1 us less per call than Python
# wrappers (about a tenth of a cell function's time at the notebook's sizes).

def rnn_cell_forward(xt, a_prev, parameters):
    """One step of the basic RNN.

    Parameters
    ----------
    xt : array, shape (n_x, m)
        Input at this step.
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1). Other keys are ignored.

    Returns
    -------
    a_next : ndarray, shape (n_a, m)
        ``tanh(Wax @ xt + Waa @ a_prev + ba)``
    yt_pred : ndarray, shape (n_y, m)
        ``softmax(Wya @ a_next + by)``
    cache : tuple
        ``(a_next, a_prev, xt, parameters)``, for `rnn_cell_backward`.
    """
    a_next, _, yt_pred, _ = cell_forward(RNN_INFO, xt, a_prev, None, parameters)
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def rnn_forward(x, a0, parameters, *, lengths=None, cache=True, n_threads=1):
    """The basic RNN over all time steps.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs, time last. Any memory layout; read without copying when it is
        a transposed view of a C-contiguous (n_x, T_x, m) array.
    a0 : array, shape (n_a, m)
        Initial hidden state.
    parameters : dict
        As for `rnn_cell_forward`.
    lengths : array of int, shape (m,), optional, keyword-only
        Variable-length batch (docs/contract.md §6): column j runs steps 0 .. lengths[j]-1
        only; its outputs are 0 after them, and padding in x is never read.
        The time spent follows the steps that run. The caches are then
        ``(steps, x, lengths)``, and backward ignores ``da`` at padding steps.
    cache : bool, keyword-only
        False for inference: no caches are kept (``None`` is returned in their
        place) and nothing is allocated beyond the outputs and a workspace of
        one block of steps per thread (see "Memory" in the README).
    n_threads : int or None, keyword-only
        Run on this many native threads (None: all cores), BLAS on one
        thread each: a wide batch in column chunks, a narrow one each step
        in parts. Results do not depend on it, nor on `cache`.

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
        Hidden states of every step.
    y_pred : ndarray, shape (n_y, m, T_x)
        Predictions of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's ``(a_next, a_prev, xt,
        parameters)``, made on access (see `RNNStepCaches`). None when
        ``cache=False``.
    """
    a, y, _, caches = sequence_forward(RNN_INFO, x, a0, None, parameters, cache, n_threads,
                                       False, lengths)
    return a, y, caches


def rnn_cell_backward(da_next, cache):
    """Backward pass of one RNN step (without the output layer).

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to this step's hidden state.
    cache : tuple
        ``(a_next, a_prev, xt, parameters)`` from `rnn_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    return cell_backward(RNN_INFO, da_next, None, cache)


def rnn_backward(da, caches):
    """Backpropagation through time for the basic RNN.

    Parameters
    ----------
    da : array, shape (n_a, m, T)
        Upstream gradients of the hidden states. T may be smaller than the
        number of forward steps; then steps ``0 .. T-1`` are used.
    caches : tuple
        ``(steps, x)`` from `rnn_forward` (cyrnn's or `cyrnn.reference`'s).
        The weights are read from the parameters the caches hold.

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    return sequence_backward(RNN_INFO, da, caches)


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One LSTM step.

    Parameters
    ----------
    xt : array, shape (n_x, m)
    a_prev, c_prev : array, shape (n_a, m)
        Hidden and cell state of the previous step.
    parameters : dict
        ``Wf, Wi, Wc, Wo`` (n_a, n_a + n_x) acting on ``concat = [a_prev; xt]``,
        ``bf, bi, bc, bo`` (n_a, 1), ``Wy`` (n_y, n_a), ``by`` (n_y, 1).
        Other keys are ignored.

    Returns
    -------
    a_next, c_next : ndarray, shape (n_a, m)
    yt_pred : ndarray, shape (n_y, m)
    cache : tuple
        ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.
    """
    a_next, c_next, yt_pred, (ft, it, cct, ot) = cell_forward(LSTM_INFO, xt, a_prev, c_prev,
                                                              parameters)
    return a_next, c_next, yt_pred, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
                                     parameters)


def lstm_forward(x, a0, parameters, *, c0=None, lengths=None, cache=True, n_threads=1):
    """The LSTM over all time steps.

    Parameters
    ----------
    x, a0, lengths, cache, n_threads
        As for `rnn_forward` (with lengths, c is 0 after a column's end).
    parameters : dict
        As for `lstm_cell_forward`.
    c0 : array, shape (n_a, m), optional, keyword-only
        Initial cell state; zeros (the notebook's choice) when omitted.

    Returns
    -------
    a, y
        As for `rnn_forward`.
    c : ndarray, shape (n_a, m, T_x)
        Cell states of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's 10-tuple as from
        `lstm_cell_forward`, made on access (see `LSTMStepCaches`). None when
        ``cache=False``.
    """
    return sequence_forward(LSTM_INFO, x, a0, c0, parameters, cache, n_threads, False,
                            lengths)


def lstm_cell_backward(da_next, dc_next, cache):
    """Backward pass of one LSTM step (without the output layer).

    Parameters
    ----------
    da_next, dc_next : array, shape (n_a, m)
        Gradients of the loss with respect to this step's hidden and cell state.
    cache : tuple
        The 10-tuple from `lstm_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev``, ``dc_prev`` (n_a, m), ``dWf, dWi, dWc,
        dWo`` (n_a, n_a + n_x), ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    return cell_backward(LSTM_INFO, da_next, dc_next, cache)


def lstm_backward(da, caches):
    """Backpropagation through time for the LSTM: `da` and `caches` as for
    `rnn_backward`, the caches from `lstm_forward` (cyrnn's or
    `cyrnn.reference`'s); the cell states' gradient starts at zero after the
    last step.

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), ``dWf, dWi, dWc, dWo``
        (n_a, n_a + n_x), ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    return sequence_backward(LSTM_INFO, da, caches)


def gru_cell_forward(xt, a_prev, parameters):
    """One GRU step (docs/contract.md §5, the course's notation).

    Parameters
    ----------
    xt : array, shape (n_x, m)
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wr, Wu`` (n_a, n_a + n_x) acting on ``concat = [a_prev; xt]``,
        ``br, bu`` (n_a, 1), ``Wy`` (n_y, n_a), ``by`` (n_y, 1), and the
        candidate's weights, whose keys choose the variant:

        - reset-after (PyTorch, Keras ``reset_after=True``, ONNX
          ``linear_before_reset=1``): ``Wcx`` (n_a, n_x), ``Wca`` (n_a, n_a),
          ``bcx``, ``bca`` (n_a, 1);
          ``cct = tanh(Wcx @ xt + bcx + rt * (Wca @ a_prev + bca))``;
        - reset-before (the course's lecture, Keras ``reset_after=False``,
          ONNX's default): ``Wc`` (n_a, n_a + n_x), ``bc`` (n_a, 1);
          ``cct = tanh(Wc @ [rt * a_prev; xt] + bc)``.

        Both sets at once is a ValueError; other keys are ignored.

    Returns
    -------
    a_next : ndarray, shape (n_a, m)
        ``ut * cct + (1 - ut) * a_prev``, with ``rt = sigmoid(Wr @ concat + br)``
        and ``ut = sigmoid(Wu @ concat + bu)`` (the update gate weights the
        candidate; PyTorch's z is ``1 - ut``).
    yt_pred : ndarray, shape (n_y, m)
        ``softmax(Wy @ a_next + by)``
    cache : tuple
        ``(a_next, a_prev, rt, ut, cct, xt, parameters)``, for `gru_cell_backward`.
    """
    a_next, _, yt_pred, (rt, ut, cct) = cell_forward(gru_info(parameters), xt, a_prev, None,
                                                     parameters)
    return a_next, yt_pred, (a_next, a_prev, rt, ut, cct, xt, parameters)


def gru_forward(x, a0, parameters, *, lengths=None, cache=True, n_threads=1):
    """The GRU over all time steps.

    Parameters
    ----------
    x, a0, lengths, cache, n_threads
        As for `rnn_forward`.
    parameters : dict
        As for `gru_cell_forward` (its keys choose the variant).

    Returns
    -------
    a, y : ndarray, shape (n_a, m, T_x) and (n_y, m, T_x)
        Hidden states and predictions of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's 7-tuple as from
        `gru_cell_forward`, made on access (see `GRUStepCaches`). None when
        ``cache=False``.
    """
    a, y, _, caches = sequence_forward(gru_info(parameters), x, a0, None, parameters, cache,
                                       n_threads, False, lengths)
    return a, y, caches


def gru_cell_backward(da_next, cache):
    """Backward pass of one GRU step (without the output layer): `da_next` as
    for `rnn_cell_backward`, `cache` the 7-tuple from `gru_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dWr, dWu`` (n_a, n_a + n_x),
        ``dbr, dbu`` (n_a, 1), and ``dWcx`` (n_a, n_x), ``dWca`` (n_a, n_a),
        ``dbcx, dbca`` (n_a, 1) (reset-after) or ``dWc`` (n_a, n_a + n_x),
        ``dbc`` (n_a, 1) (reset-before).
    """
    info = GRU_INFO
    if isinstance(cache, tuple) and len(<tuple>cache) == 7:
        info = gru_info((<tuple>cache)[6])
    return cell_backward(info, da_next, None, cache)


def gru_backward(da, caches):
    """Backpropagation through time for the GRU.

    Parameters
    ----------
    da, caches
        As for `rnn_backward`, the caches from `gru_forward` (cyrnn's or
        `cyrnn.reference`'s).

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), and the weight and bias
        gradients of `gru_cell_backward`.
    """
    return sequence_backward(gru_caches_info(caches), da, caches)
