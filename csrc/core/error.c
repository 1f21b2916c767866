#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char error_message[1024];

pyllm_status pyllm_error(pyllm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return code;
}

const char *pyllm_error_message(void) { return error_message; }

void pyllm_error_clear(void) { error_message[0] = '\0'; }
