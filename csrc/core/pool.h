/* pyllm's own team of worker threads, for the parallel loops of a forward pass.
 *
 * Why not OpenMP: a parallel region starts when every thread of the team has joined it and ends
 * when every one has left it. A decode step opens dozens of regions; with another process busy on
 * one of the two cores, the kernel deschedules one of our threads for milliseconds at a time, and
 * every region then waits for it: two threads decoded at 0.68-0.77x of one.
 *
 * Here a job is published, and the caller and whichever workers come take its work in claims
 * (row_claims.h, pyllm_chunks below) until none is left. The caller then waits only for the
 * workers that took part and are still inside the job (at most one claim's work each); a worker
 * that has not come by then never enters it. So a descheduled worker costs its share of the work,
 * not a wait. Every job must therefore be written so that any thread can do any of its work, and
 * the caller alone all of it. Which thread does a piece changes nothing in the results.
 *
 * One caller at a time owns the workers; a second concurrent caller (another Python thread, or a
 * job started from inside a job) runs its job alone on its own thread. */
#ifndef PYLLM_CORE_POOL_H
#define PYLLM_CORE_POOL_H

#include <stdatomic.h>
#include <stdint.h>

#define PYLLM_POOL_MAX_THREADS 64

/* A job's body, run by each thread that takes part; self: 0 for the caller, 1.. for workers,
 * always below the job's thread count (an index into per-thread scratch). */
typedef void (*pyllm_pool_fn)(void *ctx, int self);

/* Runs fn(ctx, self) on the calling thread and up to threads - 1 workers (started on first
 * need); returns when every thread that entered has left. threads <= 1: fn(ctx, 0) alone. */
void pyllm_pool_run(pyllm_pool_fn fn, void *ctx, int threads);

/* The threads a job of the calling thread may use: OpenMP's setting (omp_set_num_threads, which
 * n_threads sets), so one setting governs our loops and oneDNN's. */
int pyllm_pool_threads(void);

/* The calling thread is about to run oneDNN (prefill's GEMMs, on OpenMP's threads): our spinning
 * workers sleep now, so as not to slow it, and until pyllm_pool_wake this thread's jobs run as
 * OpenMP regions, whose threads come out of the GEMMs awake, where ours would first have to be
 * woken (prefill ran 5% slower with every job waking a sleeping worker). */
void pyllm_pool_rest(void);

/* The calling thread runs our own kernels again (decode): its jobs go to the pool's workers. */
void pyllm_pool_wake(void);

/* Waits until *count reaches target (the pieces of a job's first phase, done by several threads,
 * before its second phase reads them): spins briefly, then yields the core to whichever thread
 * still holds a piece. */
void pyllm_pool_await(_Atomic int64_t *count, int64_t target);

/* Tests only (_testing.pool_stats): workers started, jobs published to them, entries of workers
 * into those jobs, the threads the busy-neighbour sizing takes off now, and each worker's wake-ups
 * from sleep (wakeups[PYLLM_POOL_MAX_THREADS - 1], worker 1 first). */
void pyllm_pool_stats(int *workers, int64_t *jobs, int64_t *entries, int *reduced, int64_t *wakeups);

/* Tests only (_testing.set_pool_sizing): 0 turns the busy-neighbour sizing off (every job uses
 * all its threads), so that tests counting the workers' part do not depend on the host's load. */
void pyllm_pool_set_sizing(int on);

/* Items [0, n) handed out grain at a time to whichever thread asks next. */
typedef struct {
    _Alignas(64) _Atomic int64_t next;
    int64_t n, grain;
} pyllm_chunks;

static inline void pyllm_chunks_init(pyllm_chunks *c, int64_t n, int64_t grain)
{
    atomic_init(&c->next, 0);
    c->n = n;
    c->grain = grain > 0 ? grain : 1;
}

/* The caller's next items [*lo, *hi); 0 once all are handed out. */
static inline int pyllm_chunks_next(pyllm_chunks *c, int64_t *lo, int64_t *hi)
{
    if (atomic_load_explicit(&c->next, memory_order_relaxed) >= c->n)
        return 0;
    const int64_t at = atomic_fetch_add_explicit(&c->next, c->grain, memory_order_relaxed);
    if (at >= c->n)
        return 0;
    *lo = at;
    *hi = c->n - at < c->grain ? c->n : at + c->grain;
    return 1;
}

/* body(ctx, lo, hi, self) over [0, n) in pieces of `grain` items, on the pool when `big` and more
 * than one thread may run, else body(ctx, 0, n, 0) on the calling thread. */
typedef void (*pyllm_range_fn)(void *ctx, int64_t lo, int64_t hi, int self);
void pyllm_pool_for(int64_t n, int64_t grain, int big, pyllm_range_fn body, void *ctx);

#endif
