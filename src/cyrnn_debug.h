/* Bounds checks of the engine's driver, compiled in only by the debug build
 * (CYRNN_DEBUG=1, see setup.py; CI runs the suite against it). Every block the
 * driver hands to BLAS or to a step kernel is checked against the buffer it
 * belongs to before the call: rows × cols elements, rows ld apart, from p,
 * must lie inside [base, base + len). The sanitizer build cannot see such
 * overruns when they land in the slack of a recycled pool block (a block
 * serves requests from half its size up), nor in another array of the same
 * buffer; these checks can. A failed check prints the block's name and aborts. */
#ifndef CYRNN_DEBUG_H
#define CYRNN_DEBUG_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef CYRNN_DEBUG
#define CYRNN_DEBUG_CHECKS 1
#else
#define CYRNN_DEBUG_CHECKS 0
#endif

static inline void cyrnn_check_block(const char *what, const void *p, ptrdiff_t rows,
                                     ptrdiff_t ld, ptrdiff_t cols, const void *base,
                                     ptrdiff_t len, size_t item)
{
#ifdef CYRNN_DEBUG
    const char *first = (const char *)p, *start = (const char *)base;
    if (rows <= 0 || cols <= 0)
        return;
    if (p == NULL || base == NULL || first < start ||
        first + ((rows - 1) * ld + cols) * (ptrdiff_t)item > start + len * (ptrdiff_t)item) {
        fprintf(stderr, "cyrnn debug check: block %s (%td rows x %td, ld %td) lies outside "
                "its buffer of %td elements\n", what, rows, cols, ld, len);
        abort();
    }
#else
    (void)what; (void)p; (void)rows; (void)ld; (void)cols; (void)base; (void)len; (void)item;
#endif
}

#endif
