/* util.h - small helpers shared by the server's modules: a growing text buffer (with
 * JSON string and float writers) and random ids.
 *
 * Usage:
 *     srv_buf b = {0};                       // or {malloc(n), 0, n, 0} to preallocate
 *     srv_buf_add(&b, "{\"n\":%d,\"name\":", 3); srv_buf_str(&b, name); srv_buf_add(&b, "}");
 *     if (b.oom) { free(b.p); fail(); }      // else b.p is NUL-terminated, b.len bytes
 *
 * Ownership: the buffer's text is malloc'd; the caller frees b.p. Thread-safety: no
 * shared state (srv_random_id uses getrandom).
 */
#ifndef CDAM_SRV_UTIL_H
#define CDAM_SRV_UTIL_H

#include <stddef.h>

typedef struct {
    char *p;
    size_t len, cap;
    int oom;     // set once an allocation failed; later writes are ignored
} srv_buf;

// printf-style append.
void srv_buf_add(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// A JSON string literal of s (UTF-8 passed through, '"', '\\' and control characters escaped).
void srv_buf_str(srv_buf *b, const char *s);
// A number that reads back as the same float32 (%.9g); 0 if not finite.
void srv_buf_float(srv_buf *b, double v);

// 16 random bytes as 32 lowercase hex characters. 0, or -1 with errno.
int srv_random_id(char id[33]);

// Routes cJSON's allocations through malloc plus a per-thread count of failures, so
// that a NULL from cJSON can be told apart as "out of memory" rather than "bad input".
// Call once at start, before any other thread uses cJSON.
void srv_json_init(void);
// Allocation failures seen so far by cJSON on the calling thread (monotonic): a request
// compares it before and after parsing or building JSON.
unsigned long srv_oom_count(void);

// Called at the start of every HTTP request with the value of its X-Fault-Alloc header
// (NULL when absent). A no-op here (weak); the fault-injection build
// (build/cdam-server-fault, tests/fault/fault_alloc.c) overrides it to arm allocation
// failures. Production binaries ignore the header.
void srv_request_hook(const char *fault_alloc);

#endif
