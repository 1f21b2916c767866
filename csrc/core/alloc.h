/* Memory for the C core: aligned buffers for SIMD, and large weight buffers placed on
 * 2 MB boundaries with transparent huge pages requested (fewer TLB misses when the
 * decode loop streams every weight once per token). Every allocation of the C core and of the
 * binding's own buffers goes through here, so the fault switch (core/faults.h) can refuse any. */
#ifndef PYLLM_CORE_ALLOC_H
#define PYLLM_CORE_ALLOC_H

#include <stddef.h>

/* 64-byte aligned, uninitialised; NULL (with a MemoryError recorded) on failure. */
void *pyllm_alloc(size_t bytes);
/* Same, zero-filled. */
void *pyllm_calloc(size_t count, size_t size);
/* A large buffer, 2 MB aligned, huge pages advised. Freed with pyllm_free like the others. */
void *pyllm_alloc_big(size_t bytes);
/* The bytes pyllm_alloc_big(bytes) reserves (rounded up to its alignment): what an estimate of
 * the memory a buffer takes must count. */
size_t pyllm_alloc_big_size(size_t bytes);
/* Zero-filled but only 16-byte aligned: calloc's, whose large blocks come from the kernel
 * already zero and are not written here, so a big table costs memory only as it is used. */
void *pyllm_calloc_lazy(size_t count, size_t size);
void pyllm_free(void *p);

/* bytes rounded up to a multiple of 64 (buffers carved from one scratch stay SIMD-aligned). */
static inline size_t pyllm_round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* count * size, or 0 with a MemoryError recorded when it overflows. */
size_t pyllm_mul_size(size_t count, size_t size);

#endif
