"""The sequence engine: one driver runs every cell forward and backward.

A cell is described once (cyrnn/_cells.py for its parameters and caches,
src/_cells.pxd for its step); the driver runs any of them over a range of
batch columns and all steps, without the GIL:

    forward, per block of steps:  G = Wx @ X          (input projection)
                                  per step: states = step(G[t], a_prev)
                                  (the step: G[t] += Wa @ a_prev under the
                                  run's plan, src/_product.pxd; the cell's kernels)
    then the output head          y = softmax(Wy @ a + by)     (optional)
    backward, per step (reversed): dG[t], da_next = step'(...)
                                  (the kernels, da_next = Wa.T @ dG[t])
    then                          dx = Wx.T @ dG; dWx = dG @ X.T; dWa = dG @ A_prev.T

This module is its pieces, in src/engine/ (src/README.md maps them and follows
one call through them); they are included here, into one extension module,
because the drivers call each other per block and per step, as C functions
generic over float and double.
"""
cimport numpy as cnp
from cpython.dict cimport PyDict_GetItemWithError
from cpython.ref cimport PyObject, Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from _blas cimport gemm, gemm_abt, abt_work, gemm_atb, atb_work, transpose_weights_once
from _arrays cimport (new_array, new_zeros, block_view, typenum_of, elem_stride,
                      is_time_major_view, ready, float_typenum, use_pool, freeze,
                      holds_gil_worth_releasing)
from _product cimport (GateWeights, Product, product_of, plan_row_block, gates_product,
                       gates_product_t, recurrent_product, recurrent_rows, project_rows,
                       PLAN_DIRECT, PLAN_TRANSPOSED, PLAN_GEMV, PLAN_ROWS_256, PLAN_ROWS_128,
                       PLAN_ROWS_64, PLAN_PACKED, PackedPass, PackedWeights, packed_units, packed_size,
                       pack_pass, packed_scratch, packed_pass_of, cyrnn_packed_isa,
                       cyrnn_packed_use_level)
from _cells cimport (CellSpec, cell_spec, step_forward, step_backward, step_passes, pass_gates,
                     packed_pass,
                     pass_on_reset_state, prepare_rows, step_kernel, CELL_RNN, CELL_LSTM,
                     CELL_GRU, CELL_GRU_RESET_BEFORE)
from _elementwise cimport (cyrnn_ftz_begin, cyrnn_ftz_end, softmax_columns, row_sums,
                           gather_time_major, scatter_batch_major, fill_rows, pack_columns,
                           unpack_columns, stream_rows)

cdef extern from "cyrnn_debug.h" nogil:
    # a no-op unless the debug build (CYRNN_DEBUG): see the header
    void check_block "cyrnn_check_block" (const char* what, const void* p, Py_ssize_t rows,
                                          Py_ssize_t ld, Py_ssize_t cols, const void* base,
                                          Py_ssize_t length, size_t item)
    int CYRNN_DEBUG_CHECKS

cdef extern from "Python.h":
    int PyGILState_Check() nogil

# Test hook: when on, the drivers record whether they ran holding the GIL (a
# structural check of GIL release, independent of timing and machine load).
cdef int gil_probe_on = 0
cdef int gil_probe_held = -1


cdef inline void probe_gil() noexcept nogil:
    global gil_probe_held
    if gil_probe_on:
        gil_probe_held = PyGILState_Check()


def _gil_probe(bint enable):
    """Turn the probe on or off; returns whether the last driver run since the
    previous call held the GIL (True/False), or None when none ran."""
    global gil_probe_on, gil_probe_held
    held = None if gil_probe_held < 0 else bool(gil_probe_held)
    gil_probe_on, gil_probe_held = enable, -1
    return held


# True in the debug build, whose driver checks every block against its buffer
DEBUG_CHECKS = bool(CYRNN_DEBUG_CHECKS)


def _check_block_selftest():
    """Hand the debug check a block one element past its buffer: the debug
    build aborts here (tests run this in a subprocess); others return."""
    cdef double buf[8]
    check_block("selftest", buf + 1, 2, 4, 4, buf, 8, sizeof(double))

from collections.abc import Sequence

import os

import numpy as np

from cyrnn import _cells, _packing, _validation
from cyrnn._parallel import concurrent_use, resolve_threads, run_chunks, CONCURRENCY_CHECK_SIZE
from cyrnn._validation import BLAS_INT_MAX
assert BLAS_INT_MAX == 2147483647

cnp.import_array()
use_pool()

include "engine/blocking.pxi"
include "engine/modes.pxi"
include "engine/plans.pxi"
include "engine/forward.pxi"
include "engine/split.pxi"
include "engine/backward.pxi"
include "engine/marshal.pxi"
include "engine/caches.pxi"
include "engine/calls.pxi"
include "engine/lengths.pxi"
include "engine/cell_calls.pxi"
include "engine/backward_calls.pxi"
include "engine/floor.pxi"
include "engine/api.pxi"
include "engine/directions.pxi"
