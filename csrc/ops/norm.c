#include "ops/norm.h"

#include <math.h>

#include "core/pool.h"

/* Σ (x - centre)², or Σ x when not squaring, in double over SUM_LANES interleaved partial sums
 * added at the end in a fixed order: one running sum waited on each add's latency (about 2 µs a
 * row of 2048, 1.7% of a batch-8 decode step); the lanes vectorise. The order depends on nothing
 * but n, so a row's norm is the same in any batch and on any thread. */
#define SUM_LANES 8
static inline __attribute__((always_inline)) double lane_sum(const float *x, int64_t n, double centre, const int square)
{
    double part[SUM_LANES] = {0};
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) {
            const double v = (double)x[i + l] - centre;
            part[l] += square ? v * v : v;
        }
    for (int l = 0; i < n; i++, l++) {
        const double v = (double)x[i] - centre;
        part[l] += square ? v * v : v;
    }
    double sum = 0.0;
    for (int l = 0; l < SUM_LANES; l++)
        sum += part[l];
    return sum;
}

static void rms_norm_row(const float *xr, const float *weight, float *yr, int64_t dim, float eps)
{
    /* Sum in double: closer to torch's pairwise f32 mean than a naive f32 loop. */
    const double sum = lane_sum(xr, dim, 0.0, 1);
    float mean = (float)(sum / (double)dim);
    float inv = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < dim; i++)
        yr[i] = weight[i] * (xr[i] * inv);
}

typedef struct {
    const float *x, *weight, *bias;
    float *y;
    int64_t dim;
    float eps;
} norm_call;

static void rms_norm_rows(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    const norm_call *c = p;
    for (int64_t r = lo; r < hi; r++)
        rms_norm_row(c->x + r * c->dim, c->weight, c->y + r * c->dim, c->dim, c->eps);
}

/* Rows a claim of the threads takes: about 16K values. */
static int64_t grain_rows(int64_t dim)
{
    return dim >= 16384 ? 1 : 16384 / dim;
}

void pyllm_rms_norm(const float *x, const float *weight, float *y, int64_t rows, int64_t dim, float eps)
{
    norm_call c = {.x = x, .weight = weight, .y = y, .dim = dim, .eps = eps};
    pyllm_pool_for(rows, grain_rows(dim), rows > 1, rms_norm_rows, &c);
}

static void layer_norm_row(const float *xr, const float *weight, const float *bias, float *yr, int64_t dim,
                           float eps)
{
    /* Mean, then the variance around it, in double: two passes, no cancellation. */
    const double mean = lane_sum(xr, dim, 0.0, 0) / (double)dim;
    const double squares = lane_sum(xr, dim, mean, 1);
    const float inv = (float)(1.0 / sqrt(squares / (double)dim + (double)eps));
    const float m = (float)mean;
    for (int64_t i = 0; i < dim; i++)
        yr[i] = (xr[i] - m) * inv * weight[i] + bias[i];
}

static void layer_norm_rows(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    const norm_call *c = p;
    for (int64_t r = lo; r < hi; r++)
        layer_norm_row(c->x + r * c->dim, c->weight, c->bias, c->y + r * c->dim, c->dim, c->eps);
}

void pyllm_layer_norm(const float *x, const float *weight, const float *bias, float *y, int64_t rows, int64_t dim,
                      float eps)
{
    norm_call c = {.x = x, .weight = weight, .bias = bias, .y = y, .dim = dim, .eps = eps};
    pyllm_pool_for(rows, grain_rows(dim), rows > 1, layer_norm_rows, &c);
}
