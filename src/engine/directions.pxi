# ------------------------------------------------------------------ model entries
# One direction of a layer (cyrnn/models/), and its backward.

def _run_direction(cell, x, a0, parameters, *, c0=None, lengths=None, reverse=False,
                   cache=False, n_threads=1, out=None, packing=None, packed_cache=None):
    """A layer's direction: (a, y, c, caches) with the steps run from T-1 down to
    0 when `reverse` (its step caches then follow the reverse order: see
    _backward_direction); with lengths, reversed, column j runs from its step
    lengths[j]-1 down to 0 (PyTorch's bidirectional packed sequences). Engine
    entry for stacked and bidirectional models.

    out: where the hidden states go, an (n_a, m, T) array of the compute dtype
    (no head: Wy with 0 rows), returned as `a`: C-contiguous (the user's
    layout: e.g. one direction's rows of a layer's output), or, without lengths
    and caches, a transposed view of a C-contiguous (n_a, T, m) array, which the
    steps write directly (the time-major layout the next layer reads in place;
    `c` then views the cell states likewise; run in RUN_STATE_BUFFERS: no
    gates are kept).

    packing: instead of lengths, their packed layout (cyrnn/_packing.py, of
    lengths checked by the caller), built once for every layer and direction
    of a model's call.

    packed_cache: a PackedCache the direction's packed weights are kept in
    between calls (the packed plan's), reused while `parameters` holds the
    same array objects — whose contents the caller must keep unchanged."""
    info = gru_info(parameters) if cell == "gru" else CELLS[cell]
    if packing is not None and type(packing) is not _packing.Packing:
        raise TypeError(f"packing must be a cyrnn._packing.Packing; got {type(packing).__name__}")
    if packed_cache is not None and type(packed_cache) is not PackedCache:
        raise TypeError(f"packed_cache must be a cyrnn._engine.PackedCache; got "
                        f"{type(packed_cache).__name__}")
    return sequence_forward(info, x, a0, c0, parameters, cache, n_threads, reverse, lengths,
                            out, packing, packed_cache)


cdef object _checked_out(object out, int tn, Py_ssize_t n_a, Py_ssize_t m, Py_ssize_t T,
                         bint time_major_ok):
    """out if it fits _run_direction's rules, else ValueError naming them."""
    if out is None:
        return None
    if type(out) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>out) != tn or \
            cnp.PyArray_NDIM(<cnp.ndarray>out) != 3 or \
            cnp.PyArray_DIMS(<cnp.ndarray>out)[0] != n_a or \
            cnp.PyArray_DIMS(<cnp.ndarray>out)[1] != m or \
            cnp.PyArray_DIMS(<cnp.ndarray>out)[2] != T or \
            not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
        raise ValueError(f"out must be a writable {np.dtype(np.float32 if tn == cnp.NPY_FLOAT else np.float64)} "
                         f"array of shape {(n_a, m, T)}; got {type(out).__name__} "
                         f"{getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}")
    if cnp.PyArray_ISCARRAY(<cnp.ndarray>out):
        return out
    if time_major_ok and is_time_major_view(<cnp.ndarray>out) and \
            cnp.PyArray_ISALIGNED(<cnp.ndarray>out):
        return out
    raise ValueError("out must be C-contiguous, or (without lengths and caches) a transposed "
                     "view of a C-contiguous (n_a, T, m) array")


def _backward_direction(cell, da, caches, *, reverse=False):
    """Gradients of a `_run_direction` call with caches, all steps (T_da = T)."""
    cdef StepCaches steps = caches[0]
    cdef CellInfo info = steps.info()
    cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>steps.A)
    n_a, m = steps.a0.shape
    T = steps.T
    da = _validation.contiguous(_validation.as_array("da", da), steps.A.dtype)
    _validation.check_shape("da", da, ("n_a", "m", "T_x"), (n_a, m, T))
    p, _ = _validation.check_parameters(info.cell, steps.parameters, steps.X.shape[0], n_a,
                                        keys=info.cell.backward_keys)
    params = validated_parameters(info, {k: _validation.contiguous(v, steps.A.dtype)
                                         for k, v in p.items()})
    return run_backward(info, tn, False, da, steps.G, steps.A, steps.C, steps.a0, steps.c0,
                        steps.X, params, None, T, reverse, False, None, steps.packing)
