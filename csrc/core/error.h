/* Error reporting for the C core.
 *
 * Core functions return a pyllm_status; on failure they first record a message with
 * pyllm_error(), kept per thread so that calls running without the GIL do not race.
 * The Python layer turns (status, message) into the matching exception. */
#ifndef PYLLM_CORE_ERROR_H
#define PYLLM_CORE_ERROR_H

typedef enum {
    PYLLM_OK = 0,
    PYLLM_ERR_VALUE,        /* ValueError: a value out of range or malformed input */
    PYLLM_ERR_TYPE,         /* TypeError */
    PYLLM_ERR_INDEX,        /* IndexError */
    PYLLM_ERR_MEMORY,       /* MemoryError */
    PYLLM_ERR_IO,           /* OSError */
    PYLLM_ERR_NOT_FOUND,    /* FileNotFoundError */
    PYLLM_ERR_RUNTIME,      /* RuntimeError: an internal or oneDNN failure */
    PYLLM_ERR_INTERRUPTED,  /* KeyboardInterrupt: a signal arrived during a long call */
} pyllm_status;

/* Record a printf-style message for the current thread and return code. */
pyllm_status pyllm_error(pyllm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message recorded last on this thread ("" when none). */
const char *pyllm_error_message(void);

void pyllm_error_clear(void);

/* Propagate a failing status: `PYLLM_TRY(f(x));` returns its status when it is not OK. */
#define PYLLM_TRY(expr)                          \
    do {                                         \
        pyllm_status pyllm_try_status_ = (expr); \
        if (pyllm_try_status_ != PYLLM_OK)       \
            return pyllm_try_status_;            \
    } while (0)

#endif
