"""The recycling allocator for large arrays (see cyrnn_pool.h).

HANDLER is the NumPy memory-handler capsule; the kernel modules allocate their
large arrays under it (see _arrays.pxd), so those return here when freed.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New

cdef extern from "cyrnn_pool.h":
    size_t CYRNN_POOL_MIN
    size_t cyrnn_pool_limit
    size_t cyrnn_pool_bytes
    int cyrnn_pool_count
    void* cyrnn_pool_handler_ptr "(&cyrnn_pool_handler)"
    size_t cyrnn_pool_release()
    int cyrnn_pool_init()

if cyrnn_pool_init() != 0:
    raise MemoryError("could not create the cyrnn memory pool lock")

cnp.import_array()

HANDLER = PyCapsule_New(cyrnn_pool_handler_ptr, "mem_handler", NULL)
MIN_BYTES = CYRNN_POOL_MIN


def release_memory():
    """Return the memory cyrnn keeps for reuse to the system; returns the bytes freed.

    cyrnn recycles the memory of its large arrays (caches, outputs) once they
    are freed, up to CYRNN_POOL_BYTES (default 1 GiB; 0 turns recycling off),
    so that repeated calls do not pay for fresh pages again.
    """
    return cyrnn_pool_release()


def pool_info():
    """(bytes held, blocks held, limit in bytes) of the recycling pool."""
    return cyrnn_pool_bytes, cyrnn_pool_count, cyrnn_pool_limit


cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

import numpy as np


def empty(shape, dtype):
    """np.empty(shape, dtype), from the recycling pool when large."""
    cdef double size = 8            # (bytes of float64 elements; np.prod costs ~10 us)
    for extent in shape:
        size *= extent
    if size < CYRNN_POOL_MIN:
        return np.empty(shape, dtype)
    old = PyDataMem_SetHandler(HANDLER)
    try:
        return np.empty(shape, dtype)
    finally:
        PyDataMem_SetHandler(old)
