#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *cdam_strerror(int code) {
    switch (code) {
    case CDAM_OK: return "ok";
    case CDAM_EINVAL: return "invalid argument";
    case CDAM_ENOMEM: return "out of memory";
    case CDAM_EIO: return "i/o error";
    case CDAM_EFORMAT: return "malformed data";
    case CDAM_ELIMIT: return "over a limit";
    case CDAM_EUNSUPPORTED: return "not supported";
    case CDAM_ECANCELLED: return "cancelled";
    case CDAM_ENOTFOUND: return "not found";
    case CDAM_ENOSPC: return "no space or read-only storage";
    default: return "unknown error";
    }
}

int cdam_fail(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, CDAM_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return code;
}
