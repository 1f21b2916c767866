/* Fault injection, for tests: make the n-th allocation (core/alloc.c) or the n-th oneDNN call
 * (ops/dnnl_status.h) from now fail as if the system had refused, to prove that every error
 * path leaves the objects it touched usable and unchanged (tests/test_fault_injection.py).
 *
 * The switch is process-wide (OpenMP workers and Python threads count alike) and built into
 * every build: unset, a hooked call pays one relaxed load of a global and a predictable branch
 * (allocations and oneDNN calls are outside the token loop, so this is not measurable). */
#ifndef PYLLM_CORE_FAULTS_H
#define PYLLM_CORE_FAULTS_H

#include <stdatomic.h>

typedef enum { PYLLM_FAULT_ALLOC = 0, PYLLM_FAULT_DNNL, PYLLM_FAULT_KINDS } pyllm_fault_kind;

/* Which countdowns apply: PYLLM_FAULT_ANY counts allocations and oneDNN calls together. */
#define PYLLM_FAULT_ANY PYLLM_FAULT_KINDS

/* Nonzero while counting or a failure is pending: the only thing the fast path reads. */
extern atomic_int pyllm_faults_armed;

/* Counts the call and says whether it must fail (the slow path, armed only). */
int pyllm_fault_slow(pyllm_fault_kind kind);

/* 1 when this call of `kind` must fail. */
static inline int pyllm_fault_hit(pyllm_fault_kind kind)
{
    if (__builtin_expect(atomic_load_explicit(&pyllm_faults_armed, memory_order_relaxed) == 0, 1))
        return 0;
    return pyllm_fault_slow(kind);
}

/* Reset the counts and start counting; the n-th call of `kind` (a kind, or PYLLM_FAULT_ANY) from
 * now fails once; n = 0 only counts. */
void pyllm_faults_arm(int kind, long long n);
/* Calls of `kind` (or of both kinds) since the last pyllm_faults_arm. */
long long pyllm_faults_count(int kind);
/* Failures injected since the last pyllm_faults_arm (0 or 1). */
long long pyllm_faults_injected(void);
/* No failure pending, counting off (the counts stay readable). */
void pyllm_faults_clear(void);

#endif
