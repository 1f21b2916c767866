/* Weight formats below float32 and their conversions: bfloat16, and ggml's Q8_0, Q4_0 and Q4_1
 * block quantizations (one f16 scale, and for Q4_1 an f16 minimum, per 32 input elements).
 *
 * The numerics are ggml's, bit for bit (so GGUF tensors of these types load without
 * re-quantizing); the memory layout is ours: quants and scales of a matrix live in separate
 * arrays, row after row, so the kernels stream two aligned arrays. An input dimension k that is
 * not a multiple of 32 is padded with zeros up to one (zero quants and zero scales add nothing).
 *
 *   BF16: quants = uint16 [n][k]
 *   Q8_0: quants = int8 [n][blocks * 32], scales = f16 [n][blocks]          w = d * q
 *   Q4_0: quants = uint8 [n][blocks * 16], scales = f16 [n][blocks]         w = d * (q - 8)
 *   Q4_1: as Q4_0 plus mins = f16 [n][blocks]                                w = d * q + m
 * A Q4 block's byte j holds element j in its low nibble and element j + 16 in its high one.
 *
 * Where the AVX-512 kernels run (pyllm_qweight_to_lanes16 sets `lanes16`), a row's block bytes
 * are stored lane by lane instead, for VNNI: the row's blocks form groups of 16 (the last group
 * holds the rest, L <= 16 blocks), and a group's bytes run [step][block of the group][4 bytes],
 * step s holding bytes 4s..4s+3 of each block. One 64-byte load then puts 4 bytes of 16 blocks in
 * the 16 lanes of vpdpbusd, so a lane accumulates one whole block and its scale applies once per
 * block, not once per 4 bytes. Q8_0 bytes are stored there as unsigned q + 128 (the operand
 * vpdpbusd takes). pyllm_qblock_store/load move a block in and out of either layout. */
#ifndef PYLLM_OPS_QUANT_H
#define PYLLM_OPS_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"

typedef enum {
    PYLLM_WEIGHT_F32 = 0,
    PYLLM_WEIGHT_BF16 = 1,
    PYLLM_WEIGHT_Q8_0 = 2,
    PYLLM_WEIGHT_Q4_0 = 3,
    PYLLM_WEIGHT_Q4_1 = 4,
} pyllm_weight_type;

#define PYLLM_WEIGHT_TYPE_COUNT 5
#define PYLLM_QBLOCK 32

/* Element types a weight can be given in: plain floats, or ggml blocks as a GGUF file stores them
 * (each row k / block-size blocks; ops/quant_gguf.h reads them, pyllm_source_to_f32 does not). */
typedef enum {
    PYLLM_SOURCE_F32 = 0,
    PYLLM_SOURCE_F16 = 1,
    PYLLM_SOURCE_BF16 = 2,
    PYLLM_SOURCE_GGML_Q8_0,
    PYLLM_SOURCE_GGML_Q4_0,
    PYLLM_SOURCE_GGML_Q4_1,
    PYLLM_SOURCE_GGML_Q5_0,
    PYLLM_SOURCE_GGML_Q5_1,
    PYLLM_SOURCE_GGML_Q4_K,
    PYLLM_SOURCE_GGML_Q5_K,
    PYLLM_SOURCE_GGML_Q6_K,
} pyllm_source_type;
#define PYLLM_SOURCE_IS_PLAIN(t) ((t) <= PYLLM_SOURCE_BF16)

typedef struct {
    pyllm_weight_type type; /* never F32: float32 weights are oneDNN's (ops/matmul.c) */
    int64_t n, k, blocks;   /* blocks = ceil(k / 32) for the block types, 0 for BF16 */
    int lanes16;            /* block bytes in the AVX-512 kernels' lane order (see above) */
    void *quants;
    uint16_t *scales, *mins; /* f16; mins only for Q4_1 */
} pyllm_qweight;

const char *pyllm_weight_type_name(pyllm_weight_type type);

#define PYLLM_LANE_GROUP 16 /* blocks per lane group */

/* Quant bytes of one block: 32 (Q8_0) or 16 (Q4). */
static inline int64_t pyllm_qblock_bytes(pyllm_weight_type type) { return type == PYLLM_WEIGHT_Q8_0 ? 32 : 16; }

/* Block b of row r, as ggml stores its quants (bytes = pyllm_qblock_bytes), into w's layout and out. */
void pyllm_qblock_store(pyllm_qweight *w, int64_t r, int64_t b, const uint8_t *bytes);
void pyllm_qblock_load(const pyllm_qweight *w, int64_t r, int64_t b, uint8_t *bytes);

/* Row r of a lane-order matrix as bf16 [k] (ops/quant_lanes_avx512.c; AVX-512 only). */
void pyllm_lanes16_dequantize_row_bf16(const pyllm_qweight *w, int64_t r, uint16_t *out);

/* Rewrite a block-type matrix packed in the plain layout (as pyllm_qweight_init and
 * pyllm_qweight_from_ggml pack it) into the lane order, in place (a row's bytes of scratch per
 * thread): the layer code does this where the AVX-512 kernels run. */
pyllm_status pyllm_qweight_to_lanes16(pyllm_qweight *w);

/* Bytes a [n, k] matrix takes in the given type (what pyllm_qweight_init allocates). */
size_t pyllm_weight_bytes(pyllm_weight_type type, int64_t n, int64_t k);

/* Quantize src [n, k] (row-major, in a plain element type: F32, F16 or BF16) into w. */
pyllm_status pyllm_qweight_init(pyllm_qweight *w, pyllm_weight_type type, const void *src,
                                pyllm_source_type src_type, int64_t n, int64_t k);
void pyllm_qweight_release(pyllm_qweight *w);

/* Rows [row0, row0 + rows) of w as float32 [rows][k] (exactly ggml's dequantization) or as
 * bfloat16 [rows][k] (that value rounded to nearest even). */
void pyllm_qweight_dequantize_f32(const pyllm_qweight *w, int64_t row0, int64_t rows, float *out);
void pyllm_qweight_dequantize_bf16(const pyllm_qweight *w, int64_t row0, int64_t rows, uint16_t *out);

/* Scalar conversions, exact IEEE round-to-nearest-even (f16: with subnormals, inf, nan). */
uint16_t pyllm_f32_to_f16(float f);
float pyllm_f16_to_f32(uint16_t h);

/* bf16, rounded to nearest even (nan stays a quiet nan); inline: called per activation. */
static inline uint16_t pyllm_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline float pyllm_bf16_to_f32(uint16_t h)
{
    const uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* roundf (half away from zero, as ggml rounds) exactly, without a libm call: x - trunc(x) is
 * exact for every float, and truncf is one instruction with SSE4.1. */
static inline float pyllm_round_half_away(float x)
{
    const float t = truncf(x);
    return fabsf(x - t) >= 0.5f ? t + copysignf(1.0f, x) : t;
}

/* Convert n values of a plain source type (F32, F16, BF16) to float32. */
void pyllm_source_to_f32(const void *src, pyllm_source_type type, int64_t n, float *out);

#endif
