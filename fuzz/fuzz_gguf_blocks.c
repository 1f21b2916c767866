/* GGUF tensor data: the input's first byte picks a ggml type pyllm reads, the second a row
 * length, and the rest is whole blocks of that type. They are dequantized to float32 (every
 * type), and the Q8_0/Q4_0/Q4_1 ones are also taken into pyllm's own layouts as they are (the
 * plain one, and the AVX-512 kernels' lane order: rows of up to 20 blocks make whole and short
 * groups of 16) and dequantized from there: every way must give the same floats, bit for bit
 * (NaN for NaN). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/quant.h"
#include "ops/quant_gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int TYPES[] = {PYLLM_GGML_F32,  PYLLM_GGML_F16,  PYLLM_GGML_BF16, PYLLM_GGML_Q4_0,
                            PYLLM_GGML_Q4_1, PYLLM_GGML_Q5_0, PYLLM_GGML_Q5_1, PYLLM_GGML_Q8_0,
                            PYLLM_GGML_Q4_K, PYLLM_GGML_Q5_K, PYLLM_GGML_Q6_K};

static int same_float(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const int type = TYPES[data[0] % (sizeof TYPES / sizeof TYPES[0])];
    const int blocks_per_row = 1 + data[1] % 20;
    int64_t elems;
    size_t bytes;
    if (!pyllm_ggml_block_info(type, &elems, &bytes))
        abort();
    const size_t row_bytes = bytes * (size_t)blocks_per_row;
    const int64_t rows = (int64_t)((size - 2) / row_bytes);
    if (rows == 0)
        return 0;
    const int64_t k = elems * blocks_per_row, n = rows * k;
    /* a copy of exactly the whole rows: ASan sees any read past them */
    uint8_t *src = malloc((size_t)rows * row_bytes);
    float *out = malloc(sizeof(float) * (size_t)n), *again = malloc(sizeof(float) * (size_t)n);
    if (src == NULL || out == NULL || again == NULL)
        abort();
    memcpy(src, data + 2, (size_t)rows * row_bytes);
    if (pyllm_ggml_dequantize(type, src, n, out) != PYLLM_OK)
        abort();
    if (pyllm_ggml_native_weight_type(type) >= 0) {
        for (int lanes16 = 0; lanes16 < 2; lanes16++) {
            pyllm_qweight w;
            if (pyllm_qweight_from_ggml(&w, type, src, rows, k) != PYLLM_OK)
                abort();
            if (lanes16 && pyllm_qweight_to_lanes16(&w) != PYLLM_OK)
                abort();
            pyllm_qweight_dequantize_f32(&w, 0, rows, again);
            for (int64_t i = 0; i < n; i++)
                if (!same_float(out[i], again[i])) {
                    fprintf(stderr, "type %d element %lld: %a from the blocks, %a from pyllm's layout (lanes16 %d)\n",
                            type, (long long)i, out[i], again[i], lanes16);
                    abort();
                }
            pyllm_qweight_release(&w);
        }
    }
    /* a count that is not whole blocks is refused, not read */
    if (elems > 1 && pyllm_ggml_dequantize(type, src, elems - 1, out) == PYLLM_OK)
        abort();
    pyllm_error_clear();
    free(src);
    free(out);
    free(again);
    return 0;
}
