/* The binding's side of memory accounting (py_memory.c). */
#ifndef PYLLM_PYTHON_PY_MEMORY_H
#define PYLLM_PYTHON_PY_MEMORY_H

#include "python/common.h"
#include "models/decoder.h"

/* 0 when a KV cache of batch x capacity for a model of config c fits the memory the process can
 * have (asked of pyllm.memory.check_kv_cache); -1 with MemoryError (or ValueError for bad
 * sizes) set otherwise. Call with the GIL held, before allocating. */
int pyllm_check_kv_cache_fits(const pyllm_decoder_config *c, int64_t batch, int64_t capacity);

#endif
