cdef int forward_chunks(const Forward* r, Py_ssize_t first, Py_ssize_t last,
                        void* ws) noexcept nogil:
    """Chunks first..last-1 of the plan for r.m, with one workspace of
    chunk_workspace() elements (NULL: none needed, or allocate one here; -1
    when that fails). Callers pass a pooled one: fresh pages cost page faults."""
    cdef Py_ssize_t n = n_chunks(r.m), k, j0, j1
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int status = 0
    cdef void* own = NULL
    cdef size_t need = chunk_workspace(r)
    cdef Split sp
    probe_gil()
    if ws == NULL and need > 0:
        ws = own = malloc(need * (4 if r.single else 8))
        if ws == NULL:
            cyrnn_ftz_end(csr)
            return -1
    if runs_split(r) and first < last:
        split_run(&sp, r, ws)
        if r.a_out != NULL:
            run_head(r)
        first = last
    for k in range(first, last):
        if r.bounds != NULL:
            j0, j1 = r.bounds[k], r.bounds[k + 1]
        else:
            j0, j1 = chunk_start(r.m, k, n), chunk_start(r.m, k + 1, n)
        if r.single:
            status = forward_chunk[float](0, r, j0, j1, <float*>ws)
        else:
            status = forward_chunk[double](0, r, j0, j1, <double*>ws)
        if status != 0:
            break
    free(own)
    cyrnn_ftz_end(csr)
    return status


cdef inline size_t chunk_workspace(const Forward* r) noexcept nogil:
    """Workspace elements for the widest chunk of the plan."""
    cdef Py_ssize_t n = n_chunks(r.m)
    return workspace_size(r, (r.m + n - 1) // n) if n > 0 else 0
