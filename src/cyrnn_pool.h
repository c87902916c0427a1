/* A recycling allocator for cyrnn's large arrays, as a NumPy memory handler
 * (NEP 49). Why: a forward pass at large sizes allocates hundreds of MB of
 * caches and outputs, and the kernel's first touch of fresh pages (page faults
 * and zeroing) cost as much as the arithmetic. Blocks of at least
 * CYRNN_POOL_MIN bytes that cyrnn allocated go back to this pool when NumPy
 * frees the arrays, and the next call of a similar size reuses them, already
 * mapped. The pool holds at most cyrnn_pool_limit bytes (env CYRNN_POOL_BYTES,
 * default 1 GiB; 0 disables it) and cyrnn.release_memory() empties it.
 *
 * Each block starts with a 64-byte header holding its capacity, so a block can
 * serve any request between half its size and its size. A PyThread lock guards
 * the free list; NumPy calls the handler with the GIL held anyway.
 */
#ifndef CYRNN_POOL_H
#define CYRNN_POOL_H

#include <Python.h>
#include <pythread.h>
#include <stdlib.h>
#include <string.h>
#include "numpy/ndarraytypes.h"
#if defined(__linux__)
#include <stdint.h>
#include <sys/mman.h>
#endif

/* 128 KiB: glibc's malloc serves requests from its mmap threshold (128 KiB by
 * default) up with freshly mapped pages and unmaps them on free, so without
 * the pool even the "small" benchmark shape spent half its time in page
 * faults. Smaller blocks are recycled by malloc itself. */
#define CYRNN_POOL_MIN (1u << 17)
#define CYRNN_POOL_SLOTS 64
#define CYRNN_POOL_HEADER 64

static size_t cyrnn_pool_limit = (size_t)1 << 30;
static size_t cyrnn_pool_bytes = 0;           /* bytes held in the free list */
static int cyrnn_pool_count = 0;
static void *cyrnn_pool_blocks[CYRNN_POOL_SLOTS];  /* header addresses, oldest first */
static PyThread_type_lock cyrnn_pool_lock = NULL;

static size_t cyrnn_block_capacity(void *header) { return *(size_t *)header; }

/* Ask Linux for transparent huge pages on blocks of 4 MiB and more, as NumPy's
 * own allocator does for its arrays: a block's first use then takes one fault
 * per 2 MiB instead of one per 4 KiB (bigbatch forward with nothing pooled:
 * rnn 139 -> 97 ms, lstm 486 -> 312 ms; benchmarks/bench_first_call.py), and
 * the strided per-step GEMMs miss the TLB less (float32 up to 4% faster even
 * with the pool warm). Errors (old kernels, THP off) are harmless and ignored. */
static void cyrnn_advise_huge_pages(void *block, size_t size)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (size >= ((size_t)1 << 22)) {
        uintptr_t offset = 4096u - (uintptr_t)block % 4096u;
        madvise((char *)block + offset, size - offset, MADV_HUGEPAGE);
    }
#else
    (void)block; (void)size;
#endif
}

static void *cyrnn_pool_take(size_t size)
{
    void *found = NULL;
    PyThread_acquire_lock(cyrnn_pool_lock, WAIT_LOCK);
    for (int k = cyrnn_pool_count - 1; k >= 0; k--) {   /* newest first: warmest */
        size_t cap = cyrnn_block_capacity(cyrnn_pool_blocks[k]);
        if (cap >= size && cap / 2 <= size) {
            found = cyrnn_pool_blocks[k];
            memmove(&cyrnn_pool_blocks[k], &cyrnn_pool_blocks[k + 1],
                    (size_t)(cyrnn_pool_count - k - 1) * sizeof(void *));
            cyrnn_pool_count--;
            cyrnn_pool_bytes -= cap;
            break;
        }
    }
    PyThread_release_lock(cyrnn_pool_lock);
    return found;
}

static void *cyrnn_pool_malloc(void *ctx, size_t size)
{
    (void)ctx;
    void *header = size >= CYRNN_POOL_MIN ? cyrnn_pool_take(size) : NULL;
    if (header == NULL) {
        if (size > (size_t)-1 - CYRNN_POOL_HEADER)
            return NULL;
        header = malloc(size + CYRNN_POOL_HEADER);
        if (header == NULL)
            return NULL;
        cyrnn_advise_huge_pages(header, size + CYRNN_POOL_HEADER);
        *(size_t *)header = size;
    }
    return (char *)header + CYRNN_POOL_HEADER;
}

static void *cyrnn_pool_calloc(void *ctx, size_t nelem, size_t elsize)
{
    if (elsize && nelem > (size_t)-1 / elsize)
        return NULL;
    void *p = cyrnn_pool_malloc(ctx, nelem * elsize);
    if (p)
        memset(p, 0, nelem * elsize);
    return p;
}

static void cyrnn_pool_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx; (void)size;
    if (ptr == NULL)
        return;
    void *header = (char *)ptr - CYRNN_POOL_HEADER;
    size_t cap = cyrnn_block_capacity(header);
    void *evicted = NULL;
    if (cap >= CYRNN_POOL_MIN && cap <= cyrnn_pool_limit) {
        PyThread_acquire_lock(cyrnn_pool_lock, WAIT_LOCK);
        if (cyrnn_pool_count == CYRNN_POOL_SLOTS || cyrnn_pool_bytes + cap > cyrnn_pool_limit) {
            /* make room by dropping the oldest block, once */
            if (cyrnn_pool_count > 0) {
                evicted = cyrnn_pool_blocks[0];
                cyrnn_pool_bytes -= cyrnn_block_capacity(evicted);
                memmove(&cyrnn_pool_blocks[0], &cyrnn_pool_blocks[1],
                        (size_t)(cyrnn_pool_count - 1) * sizeof(void *));
                cyrnn_pool_count--;
            }
        }
        if (cyrnn_pool_count < CYRNN_POOL_SLOTS && cyrnn_pool_bytes + cap <= cyrnn_pool_limit) {
            cyrnn_pool_blocks[cyrnn_pool_count++] = header;
            cyrnn_pool_bytes += cap;
            header = NULL;
        }
        PyThread_release_lock(cyrnn_pool_lock);
    }
    free(evicted);
    free(header);
}

static void *cyrnn_pool_realloc(void *ctx, void *ptr, size_t new_size)
{
    if (ptr == NULL)
        return cyrnn_pool_malloc(ctx, new_size);
    size_t cap = cyrnn_block_capacity((char *)ptr - CYRNN_POOL_HEADER);
    if (new_size <= cap)
        return ptr;
    void *p = cyrnn_pool_malloc(ctx, new_size);
    if (p) {
        memcpy(p, ptr, cap);
        cyrnn_pool_free(ctx, ptr, cap);
    }
    return p;
}

/* Free every pooled block; returns the bytes released. */
static size_t cyrnn_pool_release(void)
{
    size_t released;
    PyThread_acquire_lock(cyrnn_pool_lock, WAIT_LOCK);
    for (int k = 0; k < cyrnn_pool_count; k++)
        free(cyrnn_pool_blocks[k]);
    released = cyrnn_pool_bytes;
    cyrnn_pool_count = 0;
    cyrnn_pool_bytes = 0;
    PyThread_release_lock(cyrnn_pool_lock);
    return released;
}

static PyDataMem_Handler cyrnn_pool_handler = {
    "cyrnn_pool", 1,
    {NULL, cyrnn_pool_malloc, cyrnn_pool_calloc, cyrnn_pool_realloc, cyrnn_pool_free}};

static int cyrnn_pool_init(void)
{
    const char *env = getenv("CYRNN_POOL_BYTES");
    if (env && *env)
        cyrnn_pool_limit = (size_t)strtoull(env, NULL, 10);
    cyrnn_pool_lock = PyThread_allocate_lock();
    return cyrnn_pool_lock ? 0 : -1;
}

#endif
