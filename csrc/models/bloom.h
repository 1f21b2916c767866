/* BLOOM's table of differences over the decoder skeleton: LayerNorm (with shifts) on oneDNN,
 * a LayerNorm right after the word embedding, ALiBi instead of rotary positions, a tanh-GeLU
 * MLP, and the residual taken from the norm's output when the config asks. Its fused
 * query_key_value is split into the skeleton's q/k/v projections when the weights are loaded
 * (pyllm/bloom.py), so the forward pass is the skeleton's own. */
#ifndef PYLLM_MODELS_BLOOM_H
#define PYLLM_MODELS_BLOOM_H

#include "models/decoder.h"

extern const pyllm_decoder_arch pyllm_bloom_arch;

/* ValueError when the shapes cannot form a BLOOM (key/value heads differing from the heads,
 * heads not tiling the hidden size...). */
pyllm_status pyllm_bloom_check_config(const pyllm_decoder_config *c);

#endif
