/* LLaMA's table of differences over the decoder skeleton: RMSNorm, rotary positions (with
 * the transformers scalings), separate Q/K/V projections with grouped-query attention, and
 * a SiLU-gated MLP. */
#ifndef PYLLM_MODELS_LLAMA_H
#define PYLLM_MODELS_LLAMA_H

#include "models/decoder.h"

extern const pyllm_decoder_arch pyllm_llama_arch;

/* ValueError when the shapes cannot form a LLaMA (heads not dividing, odd head_dim...). */
pyllm_status pyllm_llama_check_config(const pyllm_decoder_config *c);

#endif
