/* Tickets for a forward pass split across threads inside each step
 * (src/_engine.pyx, "split runs"). The run is a sequence of phases of `parts`
 * independent parts each; ticket k is part k % parts of phase k / parts.
 * Threads claim tickets in order from one counter and, before running one,
 * wait until every ticket of the phases before it is done (one counter too:
 * no ticket of a phase can finish before the phases before it have, so
 * "done >= phase * parts" means exactly that).
 *
 * Why it cannot deadlock: a thread waits only for tickets below its own, all
 * claimed already, and the lowest unfinished ticket never waits, so some
 * thread always makes progress; a thread that claims nothing (it started
 * late) returns at once, and the caller alone can run every ticket. Waiting
 * spins briefly, then yields the CPU (more threads than cores). */
#ifndef CYRNN_PHASES_H
#define CYRNN_PHASES_H

#include <stddef.h>

#if defined(_MSC_VER)
#include <intrin.h>
/* kernel32's, declared here rather than through <windows.h> and its macros */
__declspec(dllimport) int __stdcall SwitchToThread(void);
typedef struct { volatile __int64 claimed; volatile __int64 done; } cyrnn_tickets;
static __inline long long cyrnn_claim(cyrnn_tickets *t)
{
    return _InterlockedExchangeAdd64(&t->claimed, 1);
}
static __inline void cyrnn_ticket_done(cyrnn_tickets *t) { _InterlockedExchangeAdd64(&t->done, 1); }
static __inline long long cyrnn_done_count(cyrnn_tickets *t)
{
    return _InterlockedCompareExchange64(&t->done, 0, 0);
}
static __inline void cyrnn_relax(int spins)
{
    if (spins > 64)
        SwitchToThread();
    else
        _mm_pause();
}
#else
#include <sched.h>
typedef struct { long long claimed; long long done; } cyrnn_tickets;
static inline long long cyrnn_claim(cyrnn_tickets *t)
{
    return __atomic_fetch_add(&t->claimed, 1, __ATOMIC_ACQ_REL);
}
static inline void cyrnn_ticket_done(cyrnn_tickets *t)
{
    __atomic_fetch_add(&t->done, 1, __ATOMIC_RELEASE);   /* the part's writes first */
}
static inline long long cyrnn_done_count(cyrnn_tickets *t)
{
    return __atomic_load_n(&t->done, __ATOMIC_ACQUIRE);
}
static inline void cyrnn_relax(int spins)
{
    if (spins > 64) {
        sched_yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }
}
#endif

static void cyrnn_tickets_init(cyrnn_tickets *t) { t->claimed = 0; t->done = 0; }

/* Wait until `count` tickets are done. */
static void cyrnn_wait_done(cyrnn_tickets *t, long long count)
{
    int spins = 0;
    while (cyrnn_done_count(t) < count) {
        cyrnn_relax(spins);
        if (spins <= 64)
            spins++;
    }
}

#endif
