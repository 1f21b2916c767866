#include "core/faults.h"

atomic_int pyllm_faults_armed;

static atomic_llong calls[PYLLM_FAULT_KINDS];
static atomic_llong countdown; /* calls of `target` left before the failing one; 0 = none pending */
static atomic_int target;      /* a kind, or PYLLM_FAULT_ANY */
static atomic_llong injected;

int pyllm_fault_slow(pyllm_fault_kind kind)
{
    atomic_fetch_add(&calls[kind], 1);
    const int t = atomic_load(&target);
    if (t != PYLLM_FAULT_ANY && t != (int)kind)
        return 0;
    /* Only the thread that takes the countdown from 1 to 0 fails: the n-th call, once. */
    long long left = atomic_load(&countdown);
    while (left > 0 && !atomic_compare_exchange_weak(&countdown, &left, left - 1))
        ;
    if (left != 1)
        return 0;
    atomic_fetch_add(&injected, 1);
    return 1;
}

void pyllm_faults_arm(int kind, long long n)
{
    atomic_store(&pyllm_faults_armed, 0);
    for (int k = 0; k < PYLLM_FAULT_KINDS; k++)
        atomic_store(&calls[k], 0);
    atomic_store(&injected, 0);
    atomic_store(&target, kind);
    atomic_store(&countdown, n > 0 ? n : 0);
    atomic_store(&pyllm_faults_armed, 1);
}

long long pyllm_faults_count(int kind)
{
    if (kind == PYLLM_FAULT_ANY)
        return atomic_load(&calls[PYLLM_FAULT_ALLOC]) + atomic_load(&calls[PYLLM_FAULT_DNNL]);
    return atomic_load(&calls[kind]);
}

long long pyllm_faults_injected(void) { return atomic_load(&injected); }

void pyllm_faults_clear(void)
{
    atomic_store(&pyllm_faults_armed, 0);
    atomic_store(&countdown, 0);
}
