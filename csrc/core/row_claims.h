/* Rows of a product shared out among the threads of a pool job (core/pool.h) as they go. Each thread
 * starts on its own even, contiguous share and takes it from the front a chunk at a time; a
 * thread done with its own then takes chunks from the back of the others'. While every thread is
 * busy each reads a single stream of weights (which the hardware prefetchers follow), and none
 * idles at the job's end while another, slowed by a neighbour process or by chance, still has
 * rows to do: with even static shares, each of two decoding threads spent 6% of its time waiting
 * at barriers (perf, bf16 decode). Which thread computes a row changes nothing in it. */
#ifndef PYLLM_CORE_ROW_CLAIMS_H
#define PYLLM_CORE_ROW_CLAIMS_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/threads.h"

/* One share per thread a pool job may have (pyllm_pool_threads never asks for more). */
#define PYLLM_CLAIM_MAX_THREADS PYLLM_POOL_MAX_THREADS

/* One thread's share: rows [front, back), front in the low 32 bits, back in the high ones. */
typedef struct {
    _Alignas(64) _Atomic uint64_t range;
} pyllm_row_share;

typedef struct {
    pyllm_row_share share[PYLLM_CLAIM_MAX_THREADS];
    int threads;       /* shares in use */
    int64_t chunk;     /* rows per claim, a multiple of unit */
    int64_t unit;      /* claims start on multiples of it (a kernel's tile) */
} pyllm_row_claims;

/* Before the job, on its caller: n rows (< 2^32) in even shares for `threads` threads (at most
 * PYLLM_CLAIM_MAX_THREADS: pyllm_pool_threads()), claimed `chunk` rows at a time (rounded up to
 * a multiple of unit). A share whose thread never comes is taken by the others. */
static inline void pyllm_claims_init(pyllm_row_claims *c, int64_t n, int64_t unit, int64_t chunk, int threads)
{
    const int64_t forced = pyllm_claim_rows_override();
    if (forced > 0)
        chunk = forced;
    c->threads = threads;
    c->unit = unit;
    c->chunk = chunk < unit ? unit : (chunk + unit - 1) / unit * unit;
    for (int t = 0; t < threads; t++) {
        int64_t front, back;
        pyllm_share_of(n, unit, t, threads, &front, &back);
        atomic_init(&c->share[t].range, (uint64_t)front | (uint64_t)back << 32);
    }
}

/* Takes the next chunk of a share, from its front (the owner) or its back (another thread). */
static inline int pyllm_claim_from(pyllm_row_claims *c, int t, int from_back, int64_t *lo, int64_t *hi)
{
    pyllm_row_share *s = &c->share[t];
    uint64_t cur = atomic_load_explicit(&s->range, memory_order_relaxed);
    for (;;) {
        const int64_t front = (int64_t)(cur & 0xffffffffu), back = (int64_t)(cur >> 32);
        if (front >= back)
            return 0;
        int64_t f = front, b = back;
        if (!from_back)
            f = back - front > c->chunk ? front + c->chunk : back;
        else
            b = back - front > c->chunk ? (back - c->chunk) / c->unit * c->unit : front;
        const uint64_t next = (uint64_t)f | (uint64_t)b << 32;
        if (atomic_compare_exchange_weak_explicit(&s->range, &cur, next, memory_order_relaxed, memory_order_relaxed)) {
            *lo = from_back ? b : front;
            *hi = from_back ? back : f;
            return 1;
        }
    }
}

/* Inside the job: thread self's next rows [*lo, *hi), 0 once every share is done. */
static inline int pyllm_claim_next(pyllm_row_claims *c, int self, int64_t *lo, int64_t *hi)
{
    if (self < c->threads && pyllm_claim_from(c, self, 0, lo, hi))
        return 1;
    for (int v = 1; v <= c->threads; v++)
        if (pyllm_claim_from(c, (self + v) % c->threads, 1, lo, hi))
            return 1;
    return 0;
}

#endif
