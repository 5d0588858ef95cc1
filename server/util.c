/* util.c - see util.h. */
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

// Room for `more` bytes and a NUL; 0 or -1 (oom set).
static int reserve(srv_buf *b, size_t more) {
    if (b->oom) return -1;
    if (b->p && b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void srv_buf_add(srv_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = 1;
        return;
    }
    if (reserve(b, (size_t)k) < 0) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

void srv_buf_str(srv_buf *b, const char *s) {
    if (reserve(b, 2 + 6 * strlen(s)) < 0) return;
    char *o = b->p + b->len;
    *o++ = '"';
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (*q == '"' || *q == '\\') *o++ = '\\', *o++ = (char)*q;
        else if (*q < 0x20) o += sprintf(o, "\\u%04x", *q);
        else *o++ = (char)*q;
    }
    *o++ = '"';
    *o = 0;
    b->len = (size_t)(o - b->p);
}

void srv_buf_float(srv_buf *b, double v) { srv_buf_add(b, "%.9g", isfinite(v) ? v : 0.0); }

int srv_random_id(char id[33]) {
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t k = getrandom(r + got, sizeof r - got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        got += (size_t)k;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) id[2 * i] = hex[r[i] >> 4], id[2 * i + 1] = hex[r[i] & 15];
    id[32] = 0;
    return 0;
}

static _Thread_local unsigned long oom_failures;

static void *json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) oom_failures++;
    return p;
}

static void json_free(void *p) { free(p); }

void srv_json_init(void) {
    cJSON_Hooks h = {json_malloc, json_free};
    cJSON_InitHooks(&h);
}

unsigned long srv_oom_count(void) { return oom_failures; }

__attribute__((weak)) void srv_request_hook(const char *fault_alloc) { (void)fault_alloc; }
