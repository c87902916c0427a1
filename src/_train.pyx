"""Training kernels: the character-level RNN step of the course's Dinosaurus
assignment (forward, backward, clipping and the SGD update in one call, which
checks its own inputs), and in-place optimiser updates (SGD, Adam) and
clipping of flat float arrays (cyrnn/train.py checks those).
"""
cimport numpy as cnp
from libc.math cimport exp, log, pow
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

import numpy as np

from _blas cimport gemm, gemv

cdef extern from "cyrnn_train.h" nogil:
    void tanh_bias_d(double*, const double*, Py_ssize_t)
    void clip_and_step_d(double*, double*, Py_ssize_t, double, double)
    void clip_values_d(double*, Py_ssize_t, double)
    void clip_values_f(float*, Py_ssize_t, float)
    void sgd_step_d(double*, const double*, Py_ssize_t, double)
    void sgd_step_f(float*, const float*, Py_ssize_t, float)
    void adam_step_d(double*, const double*, double*, double*, Py_ssize_t, double, double,
                     double, double, double, double)
    void adam_step_f(float*, const float*, float*, float*, Py_ssize_t, float, float, float,
                     float, float, float)
    double sum_squares_d(const double*, Py_ssize_t)
    double sum_squares_f(const float*, Py_ssize_t)
    void scale_values_d(double*, Py_ssize_t, double)
    void scale_values_f(float*, Py_ssize_t, float)

cnp.import_array()


cdef object _float64_matrix(object parameters, str key, Py_ssize_t rows, Py_ssize_t cols):
    """parameters[key] if it is a writable, C-contiguous float64 (rows, cols)
    ndarray (-1: any size), else None."""
    value = parameters.get(key)
    if type(value) is not cnp.ndarray:
        return None
    cdef cnp.ndarray a = <cnp.ndarray>value
    if (cnp.PyArray_TYPE(a) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(a) != 2
            or not cnp.PyArray_ISCARRAY(a)
            or (rows >= 0 and cnp.PyArray_DIMS(a)[0] != rows)
            or (cols >= 0 and cnp.PyArray_DIMS(a)[1] != cols)
            or cnp.PyArray_DIMS(a)[0] == 0):
        return None
    return a


cdef bint _indices(object values, Py_ssize_t T, Py_ssize_t size, bint none_ok,
                   Py_ssize_t* out) except -1:
    """values[:T] as indices into out (None -> -1 where allowed); False unless
    every one is an int in [0, size) (or None)."""
    cdef Py_ssize_t t, v
    for t in range(T):
        item = values[t]
        if item is None and none_ok:
            out[t] = -1
            continue
        if type(item) is not int and not isinstance(item, np.integer):
            return False
        v = item
        if v < 0 or v >= size:
            return False
        out[t] = v
    return True


def char_rnn_optimize(X, Y, a_prev, dict parameters, double learning_rate,
                      double max_value):
    """One step of the Dinosaurus assignment's `optimize` if its inputs are the
    kind the compiled step takes (float64 C-contiguous writable weights of
    consistent shapes, not overlapping; X, Y lists of valid indices, X[t] None
    for the zero input), else None (the caller runs the NumPy version).

    Returns (loss, gradients clipped to ±max_value, a_last); the parameters
    are updated in place (p += -learning_rate·g). The course's per-step
    products become whole-sequence GEMMs where the recurrence allows: the
    output layer and its gradients for all steps at once, dWaa = Σ_t
    daraw_t·a_{t-1}ᵀ as one GEMM; only Waa·a and Waaᵀ·daraw run per step."""
    Waa = _float64_matrix(parameters, "Waa", -1, -1)
    if Waa is None:
        return None
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>Waa)[0]
    Wax = _float64_matrix(parameters, "Wax", n_a, -1)
    Wya = _float64_matrix(parameters, "Wya", -1, n_a)
    b = _float64_matrix(parameters, "b", n_a, 1)
    if Wax is None or Wya is None or b is None or cnp.PyArray_DIMS(<cnp.ndarray>Waa)[1] != n_a:
        return None
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(<cnp.ndarray>Wax)[1]
    cdef Py_ssize_t n_y = cnp.PyArray_DIMS(<cnp.ndarray>Wya)[0]
    by = _float64_matrix(parameters, "by", n_y, 1)
    if by is None or n_x == 0:
        return None
    weights = (Wax, Waa, Wya, b, by)
    cdef Py_ssize_t q, r
    cdef char* lo
    cdef char* hi
    for q in range(5):     # in-place updates need five distinct buffers
        for r in range(q + 1, 5):
            lo = <char*>cnp.PyArray_DATA(<cnp.ndarray>weights[q])
            hi = <char*>cnp.PyArray_DATA(<cnp.ndarray>weights[r])
            if (lo < hi + cnp.PyArray_NBYTES(<cnp.ndarray>weights[r]) and
                    hi < lo + cnp.PyArray_NBYTES(<cnp.ndarray>weights[q])):
                return None
    if type(X) is not list or type(Y) is not list:
        return None
    cdef Py_ssize_t T = len(X)
    if T == 0 or len(Y) < T or np.shape(a_prev) != (n_a, 1):
        return None
    a0 = np.ascontiguousarray(a_prev, np.float64)
    index = np.empty(2 * T, np.intp)
    cdef Py_ssize_t* ix = <Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>index)
    if not _indices(X, T, n_x, True, ix) or not _indices(Y, T, n_y, False, ix + T):
        return None
    gradients = {"dWaa": np.empty((n_a, n_a)), "dWax": np.empty((n_a, n_x)),
                 "dWya": np.empty((n_y, n_a)), "db": np.empty((n_a, 1)),
                 "dby": np.empty((n_y, 1))}
    a_last = np.empty((n_a, 1))
    cdef double* work = <double*>malloc(((T + 1) * n_a + T * n_y + T * n_a + n_a)
                                        * sizeof(double))
    if work == NULL:
        raise MemoryError()
    cdef double* p[12]
    for q, array in enumerate((a0, Wax, Waa, Wya, b, by, gradients["dWax"], gradients["dWaa"],
                               gradients["dWya"], gradients["db"], gradients["dby"], a_last)):
        p[q] = <double*>cnp.PyArray_DATA(<cnp.ndarray>array)
    cdef double loss
    with nogil:
        loss = char_rnn_step(T, n_x, n_a, n_y, ix, ix + T, p[0], p[1], p[2], p[3], p[4], p[5],
                             learning_rate, max_value, p[6], p[7], p[8], p[9], p[10], p[11],
                             work)
    free(work)
    return np.float64(loss), gradients, a_last


cdef double char_rnn_step(Py_ssize_t T, Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y,
                          const Py_ssize_t* X, const Py_ssize_t* Y, const double* a_prev,
                          double* Wax, double* Waa, double* Wya, double* b, double* by,
                          double learning_rate, double c, double* dWax, double* dWaa,
                          double* dWya, double* db, double* dby, double* a_last,
                          double* work) noexcept nogil:
    cdef Py_ssize_t t, i, k
    cdef double loss = 0, top, total, v, lr = -learning_rate
    # A: (T+1, n_a) states (row 0: a_prev); P: (T, n_y) softmax, then dy;
    # DA: (T, n_a) Wyaᵀ·dy, then daraw; da_next: (n_a,)
    cdef double* A = work
    cdef double* P = A + (T + 1) * n_a
    cdef double* DA = P + T * n_y
    cdef double* da_next = DA + T * n_a
    cdef double* row
    memcpy(A, a_prev, n_a * sizeof(double))
    # forward: a_t = tanh(Wax·x_t + Waa·a_{t-1} + b), x_t one-hot (or zero)
    for t in range(T):
        row = A + (t + 1) * n_a
        gemv(False, n_a, n_a, 1.0, Waa, n_a, A + t * n_a, 1, 0.0, row, 1)
        if X[t] >= 0:      # (Wax·x + Waa·a) + b, the course's order
            for i in range(n_a):
                row[i] = Wax[i * n_x + X[t]] + row[i]
        tanh_bias_d(row, b, n_a)
    # outputs of all steps: P = A[1:]·Wyaᵀ + by, softmax per step, loss
    gemm(False, True, T, n_y, n_a, 1.0, A + n_a, n_a, Wya, n_a, 0.0, P, n_y)
    for t in range(T):
        row = P + t * n_y
        for k in range(n_y):
            row[k] = row[k] + by[k]
        top = row[0]
        for k in range(n_y):
            top = row[k] if row[k] > top else top
        total = 0
        for k in range(n_y):
            row[k] = exp(row[k] - top)
            total = total + row[k]
        for k in range(n_y):
            row[k] = row[k] / total
        loss = loss - log(row[Y[t]])
        row[Y[t]] = row[Y[t]] - 1          # dy
    # the output layer's gradients, and Wyaᵀ·dy for every step
    gemm(True, False, n_y, n_a, T, 1.0, P, n_y, A + n_a, n_a, 0.0, dWya, n_a)
    for k in range(n_y):
        dby[k] = 0
    for t in range(T - 1, -1, -1):
        for k in range(n_y):
            dby[k] = dby[k] + P[t * n_y + k]
    gemm(False, False, T, n_a, n_y, 1.0, P, n_y, Wya, n_a, 0.0, DA, n_a)
    # backward through time: daraw_t = (1 - a_t²)·(Wyaᵀ·dy_t + da_next)
    memset(da_next, 0, n_a * sizeof(double))
    memset(db, 0, n_a * sizeof(double))
    memset(dWax, 0, n_a * n_x * sizeof(double))
    for t in range(T - 1, -1, -1):
        row = DA + t * n_a
        for i in range(n_a):
            v = A[(t + 1) * n_a + i]
            row[i] = (1 - v * v) * (row[i] + da_next[i])
            db[i] = db[i] + row[i]
        if X[t] >= 0:
            for i in range(n_a):
                dWax[i * n_x + X[t]] = dWax[i * n_x + X[t]] + row[i]
        if t > 0:
            gemv(True, n_a, n_a, 1.0, Waa, n_a, row, 1, 0.0, da_next, 1)
    gemm(True, False, n_a, n_a, T, 1.0, DA, n_a, A, n_a, 0.0, dWaa, n_a)
    memcpy(a_last, A + T * n_a, n_a * sizeof(double))
    clip_and_step_d(Wax, dWax, n_a * n_x, c, lr)
    clip_and_step_d(Waa, dWaa, n_a * n_a, c, lr)
    clip_and_step_d(Wya, dWya, n_y * n_a, c, lr)
    clip_and_step_d(b, db, n_a, c, lr)
    clip_and_step_d(by, dby, n_y, c, lr)
    return loss


# ------------------------------------------------------------ flat arrays
# Each takes C-contiguous float32/float64 arrays of one dtype and equal sizes
# (cyrnn/train.py checks them) and runs without the GIL.

cdef inline bint single(cnp.ndarray a):
    return cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT


cdef inline void* ptr(cnp.ndarray a) noexcept:
    return cnp.PyArray_DATA(a)


def clip_values(cnp.ndarray g, double max_value):
    """g clipped to ±max_value in place (NaN stays NaN)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef void* p = ptr(g)
    cdef bint f32 = single(g)
    with nogil:
        if f32:
            clip_values_f(<float*>p, n, <float>max_value)
        else:
            clip_values_d(<double*>p, n, max_value)


def sum_squares(cnp.ndarray g):
    """Σ g², accumulated in double."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef void* p = ptr(g)
    cdef double total
    cdef bint f32 = single(g)
    with nogil:
        total = sum_squares_f(<float*>p, n) if f32 else sum_squares_d(<double*>p, n)
    return total


def scale_values(cnp.ndarray g, double factor):
    """g *= factor in place."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef void* p = ptr(g)
    cdef bint f32 = single(g)
    with nogil:
        if f32:
            scale_values_f(<float*>p, n, <float>factor)
        else:
            scale_values_d(<double*>p, n, factor)


def sgd_step(cnp.ndarray p, cnp.ndarray g, double learning_rate):
    """p += -learning_rate·g in place (the course's update_parameters)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef void* pp = ptr(p)
    cdef void* pg = ptr(g)
    cdef bint f32 = single(p)
    with nogil:
        if f32:
            sgd_step_f(<float*>pp, <float*>pg, n, <float>(-learning_rate))
        else:
            sgd_step_d(<double*>pp, <double*>pg, n, -learning_rate)


def adam_step(cnp.ndarray p, cnp.ndarray g, cnp.ndarray v, cnp.ndarray s, Py_ssize_t t,
              double learning_rate, double beta1, double beta2, double epsilon):
    """One Adam step in place, in the course's order (update_parameters_with_adam):
    v = β1·v + (1-β1)·g; s = β2·s + (1-β2)·g²; p -= lr·v̂/(√ŝ + ε) with
    v̂ = v/(1-β1ᵗ), ŝ = s/(1-β2ᵗ)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef double c1 = 1 - pow(beta1, <double>t), c2 = 1 - pow(beta2, <double>t)
    cdef void* pp = ptr(p)
    cdef void* pg = ptr(g)
    cdef void* pv = ptr(v)
    cdef void* ps = ptr(s)
    cdef bint f32 = single(p)
    with nogil:
        if f32:
            adam_step_f(<float*>pp, <float*>pg, <float*>pv, <float*>ps, n, <float>beta1,
                        <float>beta2, <float>c1, <float>c2, <float>learning_rate,
                        <float>epsilon)
        else:
            adam_step_d(<double*>pp, <double*>pg, <double*>pv, <double*>ps, n, beta1, beta2,
                        c1, c2, learning_rate, epsilon)
