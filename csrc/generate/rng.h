/* A small, seedable, fast PRNG (xoshiro256**), so sampled generation is reproducible
 * from a seed on every platform. */
#ifndef PYLLM_GENERATE_RNG_H
#define PYLLM_GENERATE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} pyllm_rng;

void pyllm_rng_seed(pyllm_rng *rng, uint64_t seed);
uint64_t pyllm_rng_next(pyllm_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double pyllm_rng_uniform(pyllm_rng *rng);

#endif
