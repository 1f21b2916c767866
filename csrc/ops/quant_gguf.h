/* GGUF tensor data: ggml's block types dequantized to float32, and the Q8_0/Q4_0/Q4_1 blocks
 * taken into pyllm's own int8/int4 layout (ops/quant.h) as they are, without re-quantizing.
 *
 * A ggml block stores its f16 scale(s) and its quants together; a row of a GGUF matrix is
 * k / block_elems blocks. The values are ggml's reference dequantization bit for bit (the
 * gguf package's numpy code computes the same f32 products in the same order). */
#ifndef PYLLM_OPS_QUANT_GGUF_H
#define PYLLM_OPS_QUANT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "ops/quant.h"

/* ggml type ids as GGUF files store them. */
typedef enum {
    PYLLM_GGML_F32 = 0,
    PYLLM_GGML_F16 = 1,
    PYLLM_GGML_Q4_0 = 2,
    PYLLM_GGML_Q4_1 = 3,
    PYLLM_GGML_Q5_0 = 6,
    PYLLM_GGML_Q5_1 = 7,
    PYLLM_GGML_Q8_0 = 8,
    PYLLM_GGML_Q4_K = 12,
    PYLLM_GGML_Q5_K = 13,
    PYLLM_GGML_Q6_K = 14,
    PYLLM_GGML_BF16 = 30,
} pyllm_ggml_type;

/* Elements and bytes of one block of a type pyllm dequantizes; 0 when it is not one of them. */
int pyllm_ggml_block_info(int type, int64_t *elems, size_t *bytes);

/* n elements (a multiple of the type's block size) of src, of ggml type, into out as float32.
 * Rows are independent: large inputs are split over the threads. */
pyllm_status pyllm_ggml_dequantize(int type, const void *src, int64_t n, float *out);

/* A GGUF [n, k] matrix of type Q8_0, Q4_0 or Q4_1 (k a multiple of 32) as a pyllm_qweight of the
 * same type: quants and scales copied apart, their values unchanged. Release with
 * pyllm_qweight_release. */
pyllm_status pyllm_qweight_from_ggml(pyllm_qweight *w, int type, const void *src, int64_t n, int64_t k);

/* The ggml type of a block source type (PYLLM_SOURCE_GGML_*), or -1 for a plain one; and back:
 * the source type of a ggml type pyllm reads (F32, F16, BF16 and the block types), 0 when not. */
int pyllm_ggml_type_of_source(pyllm_source_type src);
int pyllm_source_of_ggml_type(int type, pyllm_source_type *src);

/* The pyllm weight type whose layout holds a ggml type's blocks as they are (Q8_0, Q4_0, Q4_1),
 * or -1. */
int pyllm_ggml_native_weight_type(int type);

/* n values of any source type (plain or ggml blocks) as float32. */
pyllm_status pyllm_source_widen(const void *src, pyllm_source_type type, int64_t n, float *out);

#endif
