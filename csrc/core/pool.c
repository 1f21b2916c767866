/* The worker team of core/pool.h.
 *
 * State: `generation` counts published jobs (workers wait for it to move), `closed` says the
 * current job has no work left to hand out (its caller is past its own share), and `active` counts
 * the workers inside a job (the caller waits for it to reach 0 before its job's data, often on its
 * stack, goes away). A worker enters by raising `active` and then reading `closed`; the caller
 * finishes by setting `closed` and then reading `active`. Both sequentially consistent, so either
 * the caller sees the worker and waits for it, or the worker sees the job closed and stays out.
 * Waits spin for a short while (the gaps between a decode step's jobs are microseconds), then sleep
 * on a futex, so an idle process burns no core. */
#include "core/pool.h"

#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long a waiting thread spins before it sleeps (PYLLM_POOL_SPIN_US overrides). */
#define DEFAULT_SPIN_NS 50000

/* A worker's own futex word, so that a job wakes only the workers it will use: one left out of the
 * jobs (n_threads lowered, or the sizing below) sleeps on through them. */
typedef struct {
    _Alignas(64) _Atomic uint32_t wake; /* bumped to wake the worker */
    _Atomic int asleep;                 /* the worker sleeps (or is about to) on wake */
    _Atomic int64_t wakeups;            /* returns from its futex wait, ever (tests) */
} worker_slot;

static struct {
    pthread_mutex_t owner; /* held by the caller whose job the workers serve */
    _Alignas(64) _Atomic uint32_t generation;
    _Atomic int resting; /* pyllm_pool_rest: sleep instead of spinning */
    _Alignas(64) _Atomic int closed;
    _Alignas(64) _Atomic int active;
    _Atomic int caller_asleep; /* the caller sleeps on active */
    _Alignas(64) _Atomic(pyllm_pool_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int threads;
    _Atomic int64_t entries; /* workers that entered an open job, ever */
    _Atomic int64_t jobs;    /* jobs published to the workers, ever */
    int workers;             /* started, under owner */
    int64_t spin_ns;
    worker_slot slot[PYLLM_POOL_MAX_THREADS]; /* by worker index (1..) */
} pool = {.owner = PTHREAD_MUTEX_INITIALIZER, .closed = 1};

/* Work sizing against a busy neighbour, kept by the owning caller.
 *
 * With all our threads on all the cores and another process running, the cores have more
 * runnable threads than they can run: each of ours is descheduled for milliseconds at a time. A
 * job still ends without waiting for a worker that is off its core, but while the caller is
 * descheduled nothing is published, and while a worker holds a core it takes a share of the
 * neighbour's time that the caller needed: 2 threads ran at 0.66-0.83x of 1. So the caller counts,
 * over WINDOW jobs published while every worker was awake (spinning, not asleep), how many workers
 * missed a job (never entered it before its caller finished); if on average an eighth of one or
 * more did, that many fewer threads (rounded up) run the jobs for a while (then all are tried
 * again; the while grows fourfold, up to LAST_BACKOFF_NS, each time the contention is still
 * there), and the idle workers sleep, giving the neighbour its core. On a quiet machine a spinning
 * worker misses at most one job in a window (seen: 0 or 1; beside a busy process: 4 to 31). With
 * doubling from 10 ms and a return to it after one clean window, 2t/1t was 0.83-0.88; the
 * neighbour's time slices are long, so clean windows come between contended ones. */
#define WINDOW 32
#define CLEAN_WINDOWS 8
#define FIRST_BACKOFF_NS (20 * 1000000LL)
#define LAST_BACKOFF_NS (320 * 1000000LL)

static _Atomic int sizing_on = 1; /* pyllm_pool_set_sizing */

static struct {
    int counted, missed; /* in the current window */
    int clean;           /* windows in a row without contention */
    int reduce;          /* threads taken off while now < until */
    int64_t until, backoff;
} sizing = {.backoff = FIRST_BACKOFF_NS};

static long futex(void *word, int op, uint32_t value)
{
    return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins until done(arg) or the spin time is over; returns done's last answer. */
static int spin_until(int (*done)(void *), void *arg)
{
    const int64_t deadline = now_ns() + pool.spin_ns;
    for (unsigned i = 1;; i++) {
        if (done(arg))
            return 1;
        cpu_relax();
        if (i % 64 == 0 && (atomic_load_explicit(&pool.resting, memory_order_relaxed) || now_ns() > deadline))
            return done(arg);
    }
}

static int moved(void *seen)
{
    return atomic_load_explicit(&pool.generation, memory_order_acquire) != *(uint32_t *)seen;
}

/* A worker's wait for the next job after generation *seen: a spin first if `spin`, then sleep.
 * The worker raises asleep, then reads the generation; the caller bumps the generation, then reads
 * asleep (both sequentially consistent): either the worker sees the job or the caller wakes it. */
static void wait_for_job(worker_slot *me, uint32_t *seen, int spin)
{
    if (!spin || !spin_until(moved, seen)) {
        for (;;) {
            const uint32_t w = atomic_load(&me->wake);
            atomic_store(&me->asleep, 1);
            if (atomic_load(&pool.generation) == *seen)
                futex(&me->wake, FUTEX_WAIT_PRIVATE, w);
            atomic_fetch_add_explicit(&me->wakeups, 1, memory_order_relaxed);
            atomic_store(&me->asleep, 0);
            if (moved(seen))
                break;
        }
    }
    *seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
}

/* The caller, after publishing a job for `threads` threads: wakes those of its workers that
 * sleep; returns whether all of them were awake. */
static int wake_workers(int threads)
{
    int awake = 1;
    for (int i = 1; i < threads; i++) {
        worker_slot *w = &pool.slot[i];
        if (atomic_load(&w->asleep)) {
            awake = 0;
            atomic_fetch_add(&w->wake, 1);
            futex(&w->wake, FUTEX_WAKE_PRIVATE, 1);
        }
    }
    return awake;
}

static void leave_job(void)
{
    if (atomic_fetch_sub(&pool.active, 1) == 1 && atomic_load(&pool.caller_asleep))
        futex(&pool.active, FUTEX_WAKE_PRIVATE, 1);
}

static void *worker_main(void *arg)
{
    const uint64_t packed = (uint64_t)(uintptr_t)arg;
    const int self = (int)(packed & 0xff);
    uint32_t seen = (uint32_t)(packed >> 32);
    int spin = 1; /* the last job used this worker: the next one likely will, soon */
    for (;;) {
        wait_for_job(&pool.slot[self], &seen, spin);
        atomic_fetch_add(&pool.active, 1);
        if (!atomic_load(&pool.closed)) {
            /* Open: fn, ctx and threads are this job's, published before closed was cleared. */
            const pyllm_pool_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
            void *ctx = atomic_load_explicit(&pool.ctx, memory_order_relaxed);
            seen = atomic_load_explicit(&pool.generation, memory_order_relaxed);
            if (self < atomic_load_explicit(&pool.threads, memory_order_relaxed)) {
                atomic_fetch_add_explicit(&pool.entries, 1, memory_order_relaxed);
                fn(ctx, self);
            }
        }
        leave_job();
        spin = self < atomic_load_explicit(&pool.threads, memory_order_relaxed);
    }
    return NULL;
}

static int idle(void *unused)
{
    (void)unused;
    return atomic_load_explicit(&pool.active, memory_order_acquire) == 0;
}

/* The caller's wait for the workers inside the (closed) job. */
static void wait_for_workers(void)
{
    if (spin_until(idle, NULL))
        return;
    atomic_store(&pool.caller_asleep, 1);
    for (;;) {
        const int a = atomic_load(&pool.active);
        if (a == 0)
            break;
        futex(&pool.active, FUTEX_WAIT_PRIVATE, (uint32_t)a);
    }
    atomic_store(&pool.caller_asleep, 0);
}

/* A forked child has only the thread that forked: it starts again with no workers. */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&pool.owner, NULL);
    pool.workers = 0;
    sizing.counted = sizing.missed = sizing.reduce = sizing.clean = 0;
    sizing.backoff = FIRST_BACKOFF_NS;
    atomic_store(&pool.closed, 1);
    atomic_store(&pool.active, 0);
    for (int i = 0; i < PYLLM_POOL_MAX_THREADS; i++)
        atomic_store(&pool.slot[i].asleep, 0);
    atomic_store(&pool.caller_asleep, 0);
}

static void init_once(void)
{
    const char *spin = getenv("PYLLM_POOL_SPIN_US");
    pool.spin_ns = spin != NULL ? (int64_t)atoll(spin) * 1000 : DEFAULT_SPIN_NS;
    if (pool.spin_ns < 0)
        pool.spin_ns = 0;
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

/* Starts workers up to `wanted` (under owner); returns how many there are. Workers take no
 * signals: Python's handlers belong to its main thread. */
static int start_workers(int wanted)
{
    if (wanted > PYLLM_POOL_MAX_THREADS - 1)
        wanted = PYLLM_POOL_MAX_THREADS - 1;
    if (pool.workers >= wanted)
        return pool.workers;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    const uint32_t now = atomic_load(&pool.generation);
    while (pool.workers < wanted) {
        pthread_t t;
        const uint64_t packed = (uint64_t)now << 32 | (uint64_t)(pool.workers + 1);
        if (pthread_create(&t, NULL, worker_main, (void *)(uintptr_t)packed) != 0)
            break; /* run with the workers there are */
        pthread_detach(t);
        pool.workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool.workers;
}

static _Thread_local int openmp_phase; /* pyllm_pool_rest .. pyllm_pool_wake */

void pyllm_pool_rest(void)
{
    openmp_phase = 1;
    atomic_store_explicit(&pool.resting, 1, memory_order_relaxed);
}

void pyllm_pool_wake(void)
{
    openmp_phase = 0;
}

/* A job as an OpenMP region (pyllm_pool_rest): every thread of the team runs it. */
static void run_on_openmp(pyllm_pool_fn fn, void *ctx, int threads)
{
    (void)threads; /* serial builds without OpenMP (TSan, fuzz) ignore the pragma */
#pragma omp parallel num_threads(threads)
    fn(ctx, omp_get_thread_num());
}

/* One job's missed workers into the window; at the window's end, the sizing for the next while. */
static void count_misses(int missed)
{
    sizing.missed += missed;
    if (++sizing.counted < WINDOW)
        return;
    const int reduce = (8 * sizing.missed + 7 * WINDOW) / (8 * WINDOW); /* avg + 7/8, rounded down */
    sizing.counted = sizing.missed = 0;
    if (reduce == 0) {
        /* The while shortens only after CLEAN_WINDOWS clean windows in a row: a worker that has
         * just slept through a reduced while is favoured by the scheduler for a moment, and the
         * neighbour's time slices are milliseconds long, so one clean window says little. */
        if (++sizing.clean >= CLEAN_WINDOWS)
            sizing.backoff = FIRST_BACKOFF_NS;
        return;
    }
    sizing.clean = 0;
    sizing.reduce = reduce;
    sizing.until = now_ns() + sizing.backoff;
    if (sizing.backoff < LAST_BACKOFF_NS)
        sizing.backoff *= 4;
}

void pyllm_pool_run(pyllm_pool_fn fn, void *ctx, int threads)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (threads <= 1) {
        fn(ctx, 0);
        return;
    }
    if (openmp_phase) {
        run_on_openmp(fn, ctx, threads);
        return;
    }
    pthread_once(&once, init_once);
    if (pthread_mutex_trylock(&pool.owner) != 0) {
        fn(ctx, 0);
        return;
    }
    const int workers = start_workers(threads - 1);
    if (workers + 1 < threads)
        threads = workers + 1;
    if (sizing.reduce > 0) {
        if (now_ns() < sizing.until)
            threads = threads - sizing.reduce > 1 ? threads - sizing.reduce : 1;
        else
            sizing.reduce = 0;
    }
    if (threads <= 1) {
        fn(ctx, 0);
        pthread_mutex_unlock(&pool.owner);
        return;
    }
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.threads, threads, memory_order_relaxed);
    atomic_store_explicit(&pool.resting, 0, memory_order_relaxed);
    const int64_t entries = atomic_load_explicit(&pool.entries, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool.jobs, 1, memory_order_relaxed);
    atomic_store(&pool.closed, 0);
    atomic_fetch_add(&pool.generation, 1);
    const int awake = wake_workers(threads);
    fn(ctx, 0);
    atomic_store(&pool.closed, 1);
    wait_for_workers();
    if (awake && sizing.reduce == 0 && atomic_load_explicit(&sizing_on, memory_order_relaxed))
        count_misses(threads - 1 - (int)(atomic_load_explicit(&pool.entries, memory_order_relaxed) - entries));
    pthread_mutex_unlock(&pool.owner);
}

int pyllm_pool_threads(void)
{
    const int t = omp_get_max_threads();
    return t < PYLLM_POOL_MAX_THREADS ? t : PYLLM_POOL_MAX_THREADS;
}

void pyllm_pool_set_sizing(int on)
{
    pthread_mutex_lock(&pool.owner);
    atomic_store(&sizing_on, on != 0);
    sizing.counted = sizing.missed = sizing.reduce = sizing.clean = 0;
    sizing.backoff = FIRST_BACKOFF_NS;
    pthread_mutex_unlock(&pool.owner);
}

void pyllm_pool_stats(int *workers, int64_t *jobs, int64_t *entries, int *reduced, int64_t *wakeups)
{
    pthread_mutex_lock(&pool.owner);
    *workers = pool.workers;
    for (int i = 1; i <= pool.workers; i++)
        wakeups[i - 1] = atomic_load(&pool.slot[i].wakeups);
    *reduced = sizing.reduce > 0 && now_ns() < sizing.until ? sizing.reduce : 0;
    pthread_mutex_unlock(&pool.owner);
    *jobs = atomic_load(&pool.jobs);
    *entries = atomic_load(&pool.entries);
}

typedef struct {
    _Atomic int64_t *count;
    int64_t target;
} await_arg;

static int reached(void *p)
{
    const await_arg *a = p;
    return atomic_load_explicit(a->count, memory_order_acquire) >= a->target;
}

void pyllm_pool_await(_Atomic int64_t *count, int64_t target)
{
    await_arg a = {count, target};
    while (!spin_until(reached, &a))
        sched_yield();
}

typedef struct {
    pyllm_chunks chunks;
    pyllm_range_fn body;
    void *ctx;
} for_job;

static void for_body(void *p, int self)
{
    for_job *j = p;
    int64_t lo, hi;
    while (pyllm_chunks_next(&j->chunks, &lo, &hi))
        j->body(j->ctx, lo, hi, self);
}

void pyllm_pool_for(int64_t n, int64_t grain, int big, pyllm_range_fn body, void *ctx)
{
    const int threads = pyllm_pool_threads();
    if (!big || threads <= 1 || n <= grain) {
        if (n > 0)
            body(ctx, 0, n, 0);
        return;
    }
    for_job j = {.body = body, .ctx = ctx};
    pyllm_chunks_init(&j.chunks, n, grain);
    pyllm_pool_run(for_body, &j, threads);
}
