/* What other binding files may ask of the model binding (py_model.c). */
#ifndef PYLLM_PYTHON_PY_MODEL_H
#define PYLLM_PYTHON_PY_MODEL_H

#include "python/common.h"

#include "models/decoder.h"

/* Claim a _core.KVCache as a call does: write for one that appends to it, else a read. 0, or -1
 * with RuntimeError when it would overlap a call that appends (TypeError for another object).
 * With the GIL held; every successful claim is undone by pyllm_kv_cache_unclaim. */
int pyllm_kv_cache_claim(PyObject *cache, int write);
void pyllm_kv_cache_unclaim(PyObject *cache, int write);

/* Claim a _core.Decoder for a call made on another model's behalf (a draft model in
 * speculative decoding): 0 with its weights, lock and thread setting, or -1 with TypeError for
 * another object and RuntimeError once it is closed. With the GIL held; every successful claim
 * is undone by pyllm_decoder_unclaim. */
int pyllm_decoder_claim(PyObject *obj, pyllm_decoder **model, PyThread_type_lock *lock, int *n_threads);
void pyllm_decoder_unclaim(PyObject *obj);

/* The keys and values of a _core.KVCache made for `model`; NULL with TypeError for another
 * object, ValueError for another model's cache. Borrowed: valid while the object lives. */
const pyllm_kv_cache *pyllm_kv_cache_of(PyObject *cache, const pyllm_decoder *model);

#endif
