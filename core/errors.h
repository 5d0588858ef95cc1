/* errors.h - error codes shared by every core module.
 * Functions return 0 on success or one of these negative codes; a human-readable
 * reason goes into a caller-provided char buffer of CDAM_ERR_MAX bytes (may be NULL). */
#ifndef CDAM_ERRORS_H
#define CDAM_ERRORS_H

#define CDAM_ERR_MAX 512

enum {
    CDAM_OK = 0,
    CDAM_EINVAL = -1,      // bad argument (size not a multiple of P, unknown class, ...)
    CDAM_ENOMEM = -2,      // allocation failed
    CDAM_EIO = -3,         // open/read/mmap failed
    CDAM_EFORMAT = -4,     // malformed data: not an image, corrupt model file, ...
    CDAM_ELIMIT = -5,      // over a configured limit (pixels, input size, memory budget)
    CDAM_EUNSUPPORTED = -6,// well-formed but not supported (animated WebP, dtype I64, ...)
    CDAM_ECANCELLED = -7,  // cancelled by the caller's callback
    CDAM_ENOTFOUND = -8,   // no such item (concept id, job id, ...)
    CDAM_ENOSPC = -9,      // storage full or read-only (a write that could not be made durable)
};

// Short name of an error code: "invalid argument", "out of memory", ...
const char *cdam_strerror(int code);

// snprintf into err (if non-NULL, CDAM_ERR_MAX bytes) and return code. For use as
// `return cdam_fail(err, CDAM_EFORMAT, "not an image");`
int cdam_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
