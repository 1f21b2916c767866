#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/error.h"
#include "core/faults.h"

#define SIMD_ALIGN 64
#define HUGE_ALIGN (2u << 20)

static void *aligned(size_t alignment, size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 1;
    /* Round up: aligned_alloc wants a multiple of the alignment. */
    if (bytes > SIZE_MAX - alignment) {
        pyllm_error(PYLLM_ERR_MEMORY, "cannot allocate %zu bytes", bytes);
        return NULL;
    }
    bytes = (bytes + alignment - 1) / alignment * alignment;
    if (pyllm_fault_hit(PYLLM_FAULT_ALLOC) || posix_memalign(&p, alignment, bytes) != 0) {
        pyllm_error(PYLLM_ERR_MEMORY, "cannot allocate %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void *pyllm_alloc(size_t bytes) { return aligned(SIMD_ALIGN, bytes); }

void *pyllm_calloc(size_t count, size_t size)
{
    size_t bytes = pyllm_mul_size(count, size);
    if (bytes == 0 && count != 0 && size != 0)
        return NULL;
    void *p = aligned(SIMD_ALIGN, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void *pyllm_calloc_lazy(size_t count, size_t size)
{
    void *p = pyllm_fault_hit(PYLLM_FAULT_ALLOC) ? NULL : calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        pyllm_error(PYLLM_ERR_MEMORY, "cannot allocate %zu x %zu bytes", count, size);
    return p;
}

void *pyllm_alloc_big(size_t bytes)
{
    if (bytes < HUGE_ALIGN)
        return aligned(SIMD_ALIGN, bytes);
    void *p = aligned(HUGE_ALIGN, bytes);
#ifdef MADV_HUGEPAGE
    if (p)
        madvise(p, (bytes + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN, MADV_HUGEPAGE);
#endif
    return p;
}

size_t pyllm_alloc_big_size(size_t bytes)
{
    const size_t align = bytes < HUGE_ALIGN ? SIMD_ALIGN : HUGE_ALIGN;
    if (bytes == 0)
        bytes = 1;
    return bytes > SIZE_MAX - align ? SIZE_MAX : (bytes + align - 1) / align * align;
}

void pyllm_free(void *p) { free(p); }

size_t pyllm_mul_size(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        pyllm_error(PYLLM_ERR_MEMORY, "allocation of %zu x %zu bytes overflows", count, size);
        return 0;
    }
    return count * size;
}
