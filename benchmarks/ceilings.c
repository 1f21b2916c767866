/* The compute ceilings of this CPU for pyllm's prefill and batched-decode kernels, built and run
 * by bench_ceilings.py (cc -O3 with AVX-512 F/BW/VNNI/BF16 and FMA; loaded through ctypes).
 *
 * Peaks: 12 independent chains of one instruction (vfmadd231ps, vpdpbusd or vdpbf16ps on zmm),
 * per thread, every thread its own chains: instructions per nanosecond, summed over threads.
 *
 * Block-scale tile: the inner loop of the int8 prefill tile (ops/gemv_avx512.c,
 * block_tile_wide) on data that stays in L1: 3 weight rows x 4 activation rows, per lane group
 * 8 vpdpbusd per pair (one 32-value block per lane), then the pair's int32 sums become floats
 * scaled by the two blocks' scales. The epilogue can be cut down to show what each part costs:
 * full (int-to-float, multiply of the scales, multiply-add), no scale product (int-to-float,
 * multiply-add), or none (the int32 sums folded with an xor, which needs no FMA pipe). The
 * result is vpdpbusd per nanosecond, comparable with the vpdpbusd peak. */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAINS 12
#define ROWS 3
#define COLS 4
#define GROUPS 8 /* 8 x 16 blocks of 32: k = 4096, 28 KB of weights and activations (L1) */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline __attribute__((always_inline)) void keep_i(__m512i *v)
{
    __asm__ volatile("" : "+v"(*v));
}

static inline __attribute__((always_inline)) void keep_f(__m512 *v)
{
    __asm__ volatile("" : "+v"(*v));
}

enum { PEAK_FMA, PEAK_DPBUSD, PEAK_DPBF16, TILE_FULL, TILE_NO_SCALE_PRODUCT, TILE_NO_EPILOGUE };

/* `iters` rounds of 12 chains of one instruction kind (a constant in each instance). */
static inline __attribute__((always_inline)) double peak_chains(const int kind, long iters)
{
    __m512 f[CHAINS];
    __m512i d[CHAINS];
    for (int c = 0; c < CHAINS; c++) {
        f[c] = _mm512_set1_ps(0.001f * (float)c);
        d[c] = _mm512_set1_epi32(c);
    }
    __m512 fa = _mm512_set1_ps(0.999f), fb = _mm512_set1_ps(1e-4f);
    __m512i ia = _mm512_set1_epi8(3), ib = _mm512_set1_epi8(5);
    keep_f(&fa), keep_f(&fb), keep_i(&ia), keep_i(&ib); /* not constants to fold */
    for (long it = 0; it < iters; it++) {
        _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++)
        {
            if (kind == PEAK_FMA)
                f[c] = _mm512_fmadd_ps(f[c], fa, fb);
            else if (kind == PEAK_DPBUSD)
                d[c] = _mm512_dpbusd_epi32(d[c], ia, ib);
            else
                f[c] = _mm512_dpbf16_ps(f[c], (__m512bh)ia, (__m512bh)ib);
        }
    }
    float s = 0.0f;
    for (int c = 0; c < CHAINS; c++)
        s += _mm512_reduce_add_ps(f[c]) + (float)_mm512_reduce_add_epi32(d[c]);
    return s;
}

static double peak_loop(int kind, long iters)
{
    return kind == PEAK_FMA      ? peak_chains(PEAK_FMA, iters)
           : kind == PEAK_DPBUSD ? peak_chains(PEAK_DPBUSD, iters)
                                 : peak_chains(PEAK_DPBF16, iters);
}

typedef struct {
    const uint8_t *w;
    const int8_t *x;
    const int32_t *corr;
    const uint16_t *dw;
    const float *dx;
    float y[ROWS * COLS];
} tile_data;

static inline __attribute__((always_inline)) void tile_once(tile_data *t, const int kind)
{
    const int64_t row_bytes = GROUPS * 512;
    __m512 acc[ROWS][COLS];
    for (int q = 0; q < ROWS; q++)
        for (int c = 0; c < COLS; c++)
            acc[q][c] = _mm512_setzero_ps();
    for (int g = 0; g < GROUPS; g++) {
        __m512i dot[ROWS][COLS];
        for (int c = 0; c < COLS; c++) {
            const __m512i corr = _mm512_load_si512(t->corr + (c * GROUPS + g) * 16);
            for (int q = 0; q < ROWS; q++)
                dot[q][c] = corr;
        }
        const uint8_t *wg = t->w + g * 512;
        _Pragma("GCC unroll 8") for (int s = 0; s < 8; s++)
        {
            __m512i wv[ROWS];
            for (int q = 0; q < ROWS; q++)
                wv[q] = _mm512_loadu_si512(wg + q * row_bytes + s * 64);
            for (int c = 0; c < COLS; c++) {
                __m512i xv = _mm512_load_si512(t->x + c * row_bytes + g * 512 + s * 64);
                __asm__("" : "+v"(xv)); /* one load per activation vector, as the kernel's in_register */
                for (int q = 0; q < ROWS; q++)
                    dot[q][c] = _mm512_dpbusd_epi32(dot[q][c], wv[q], xv);
            }
        }
        for (int q = 0; q < ROWS; q++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(t->dw + (q * GROUPS + g) * 16)));
            for (int c = 0; c < COLS; c++) {
                const __m512 dx = _mm512_load_ps(t->dx + (c * GROUPS + g) * 16);
                if (kind == TILE_FULL)
                    acc[q][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[q][c]), _mm512_mul_ps(dw, dx), acc[q][c]);
                else if (kind == TILE_NO_SCALE_PRODUCT)
                    acc[q][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[q][c]), dx, acc[q][c]);
                else
                    acc[q][c] = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(acc[q][c]), dot[q][c]));
            }
        }
    }
    for (int q = 0; q < ROWS; q++)
        for (int c = 0; c < COLS; c++)
            t->y[q * COLS + c] = _mm512_reduce_add_ps(acc[q][c]);
}

static double tile_loop(int kind, long iters)
{
    tile_data t;
    const size_t wbytes = (size_t)ROWS * GROUPS * 512, xbytes = (size_t)COLS * GROUPS * 512;
    uint8_t *w = aligned_alloc(64, wbytes);
    int8_t *x = aligned_alloc(64, xbytes);
    int32_t *corr = aligned_alloc(64, (size_t)COLS * GROUPS * 64);
    uint16_t *dw = aligned_alloc(64, (size_t)ROWS * GROUPS * 32);
    float *dx = aligned_alloc(64, (size_t)COLS * GROUPS * 64);
    if (!w || !x || !corr || !dw || !dx) {
        free(w), free(x), free(corr), free(dw), free(dx);
        return -1.0;
    }
    for (size_t i = 0; i < wbytes; i++)
        w[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t i = 0; i < xbytes; i++)
        x[i] = (int8_t)(i * 40503u >> 7);
    memset(corr, 0, (size_t)COLS * GROUPS * 64);
    for (int i = 0; i < ROWS * GROUPS * 16; i++)
        dw[i] = 0x1c00; /* f16 2^-8 */
    for (int i = 0; i < COLS * GROUPS * 16; i++)
        dx[i] = 1e-3f;
    t.w = w, t.x = x, t.corr = corr, t.dw = dw, t.dx = dx;
    for (long it = 0; it < iters; it++) {
        if (kind == TILE_FULL)
            tile_once(&t, TILE_FULL);
        else if (kind == TILE_NO_SCALE_PRODUCT)
            tile_once(&t, TILE_NO_SCALE_PRODUCT);
        else
            tile_once(&t, TILE_NO_EPILOGUE);
        __asm__ volatile("" : : "r"(&t) : "memory"); /* t is read again: no round may be skipped */
    }
    free(w), free(x), free(corr), free(dw), free(dx);
    return t.y[0];
}

typedef struct {
    int kind;
    long iters;
    volatile double sink; /* every chain's result ends here, so none is dead code */
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->sink = j->kind <= PEAK_DPBF16 ? peak_loop(j->kind, j->iters) : tile_loop(j->kind, j->iters);
    return NULL;
}

/* Instructions per nanosecond over `threads` threads (vpdpbusd for the tiles): the best of `reps`
 * timed runs; -1 when a thread cannot start. */
double ceiling(int kind, int threads, int reps)
{
    if (threads < 1 || threads > 64)
        return -1.0;
    const long iters = kind <= PEAK_DPBF16 ? 20000000L : 100000L;
    const double per_iter = kind <= PEAK_DPBF16 ? CHAINS : (double)GROUPS * 8 * ROWS * COLS;
    pthread_t tid[64];
    job j[64];
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        int started = 0;
        for (; started < threads; started++)
        {
            j[started].kind = kind, j[started].iters = iters;
            if (pthread_create(&tid[started], NULL, run_job, &j[started]) != 0)
                break;
        }
        for (int i = 0; i < started; i++)
            pthread_join(tid[i], NULL);
        if (started < threads)
            return -1.0;
        const double rate = (double)threads * (double)iters * per_iter / ((now() - t0) * 1e9);
        if (rate > best)
            best = rate;
    }
    return best;
}
