# The cells' step kernels, behind one interface the engine's driver calls
# (src/_engine.pyx). A cell's other facts (gates, states, parameter schema)
# are its description in cyrnn/_cells.py; the codes below match its `kind`.
#
# Every step works on one (rows × ms) block per buffer: rows `ld` elements
# apart, ms contiguous batch columns. The gate block G holds gates·n_a rows,
# gate k's rows starting at row k·n_a.
from cython cimport floating

from _elementwise cimport (rnn_forward_step, lstm_forward_step, rnn_backward_step,
                           lstm_backward_step)

cdef enum CellKind:
    CELL_RNN = 0
    CELL_LSTM = 1


cdef struct CellSpec:
    int kind
    int gates               # gate rows per hidden unit
    bint has_c              # carries a cell state c besides a
    # The gate block is the hidden state buffer (the RNN: z, then tanh(z) in
    # place), and backward's gate gradients start as the upstream da.
    bint gates_are_state


cdef inline CellSpec cell_spec(int kind) noexcept nogil:
    cdef CellSpec s
    s.kind = kind
    if kind == CELL_LSTM:
        s.gates, s.has_c, s.gates_are_state = 4, True, False
    else:
        s.gates, s.has_c, s.gates_are_state = 1, False, True
    return s


cdef inline void forward_step(const CellSpec* cell, Py_ssize_t n_a, Py_ssize_t ms,
                              floating* G, Py_ssize_t ld, const floating* b,
                              const floating* c_prev, Py_ssize_t ld_cp,
                              floating* c, floating* a) noexcept nogil:
    """The step's states from its pre-activations G (input and recurrent
    products, no bias yet): a, c (rows ld apart, like G); c_prev NULL means 0."""
    if cell.kind == CELL_LSTM:
        # f, i, o = σ(·), c~ = tanh(·), c = f·c_prev + i·c~, a = o·tanh(c)
        lstm_forward_step(n_a, ms, G, ld, n_a * ld, b, c_prev, ld_cp, c, ld, a, ld)
    else:
        # a = tanh(z + b), in place (a is G)
        rnn_forward_step(n_a, ms, G, ld, b)


cdef inline void backward_step(const CellSpec* cell, Py_ssize_t n_a, Py_ssize_t ms,
                               const floating* G, const floating* c, Py_ssize_t ld,
                               const floating* c_prev, Py_ssize_t ld_cp,
                               const floating* da_up, Py_ssize_t ld_du,
                               const floating* da_next, Py_ssize_t ld_dn,
                               floating* dc, floating* dG, Py_ssize_t ld_dg) noexcept nogil:
    """The step's gate gradients dG from the upstream da_up plus da_next (the
    gradient from the step after; NULL: none). G and c are the forward's
    activated gates and cell state of the step (rows ld apart); dc (ms
    contiguous columns per row) carries the gradient of c in and out. A cell
    with gates_are_state reads da_up from dG itself."""
    if cell.kind == CELL_LSTM:
        lstm_backward_step(n_a, ms, G, ld, n_a * ld, c, ld, c_prev, ld_cp, da_up, ld_du,
                           da_next, ld_dn, dc, ms, dG, ld_dg, n_a * ld_dg)
    else:
        # dz = (da + da_next)·(1 − a²), in place over dG (a is G)
        rnn_backward_step(n_a, ms, dG, ld_dg, da_next, ld_dn, G, ld)
