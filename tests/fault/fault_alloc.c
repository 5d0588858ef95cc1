/* fault_alloc.c - allocation fault injection for build/cdam-server-fault (never linked
 * into the production binaries).
 *
 * The fault build links the server's own objects with
 *     -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup,
 *            --wrap=aligned_alloc,--wrap=posix_memalign
 * so that every allocation made by server/ and core/ code goes through the wrappers below,
 * cJSON's too: its hooks point here from a constructor, and main's srv_json_init then
 * points them at server/util.c's json_malloc, whose malloc is wrapped as well.
 * Allocations inside other shared libraries (libmicrohttpd, libwebp, libc itself) are
 * not counted.
 *
 * Arming: server/http.c calls srv_request_hook() at the start of every request with the
 * value of its X-Fault-Alloc header. "N" (N >= 1) resets the counter and makes the Nth
 * counted allocation from then on fail (once; then disarmed). "0" disarms and logs how
 * many allocations were counted since the last arming. No header: nothing changes (the
 * counter keeps running, e.g. through the GET /jobs/{id} polls of a job). The counter is
 * global (all threads): the tests send the armed requests one at a time.
 *
 * Log lines on stderr (written with write(2), no allocation):
 *     cdam-fault: armed N
 *     cdam-fault: fired N (malloc of 123 bytes)
 *     cdam-fault: disarmed after K allocations (fired F)
 * CDAM_FAULT_BACKTRACE=1 adds a backtrace to each "fired" line (to find the call site).
 */
#include <cJSON.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);

static atomic_int active;    // counting since an arming, until the next disarming
static atomic_long target;   // fail the allocation with this number; 0: none (left)
static atomic_long counted;  // allocations since the last arming
static atomic_long fired;    // failures injected since the last arming
static int want_backtrace;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k > sizeof line - 2) k = (int)sizeof line - 2;
    line[k++] = '\n';
    ssize_t w = write(2, line, (size_t)k);
    (void)w;
}

// Counts one allocation; 1 when this one must fail (the armed number is reached).
static int should_fail(const char *what, size_t bytes) {
    if (!atomic_load_explicit(&active, memory_order_relaxed)) return 0;
    long k = atomic_fetch_add(&counted, 1) + 1;
    long t = k;
    if (!atomic_compare_exchange_strong(&target, &t, 0)) return 0;
    atomic_fetch_add(&fired, 1);
    say("cdam-fault: fired %ld (%s of %zu bytes)", k, what, bytes);
    if (want_backtrace) {
        void *frames[32];
        int n = backtrace(frames, 32);
        backtrace_symbols_fd(frames, n, 2);
    }
    return 1;
}

void *__wrap_malloc(size_t n) { return should_fail("malloc", n) ? NULL : __real_malloc(n); }

void *__wrap_calloc(size_t k, size_t n) { return should_fail("calloc", k * n) ? NULL : __real_calloc(k, n); }

void *__wrap_realloc(void *p, size_t n) { return should_fail("realloc", n) ? NULL : __real_realloc(p, n); }

char *__wrap_strdup(const char *s) { return should_fail("strdup", strlen(s) + 1) ? NULL : __real_strdup(s); }

char *__wrap_strndup(const char *s, size_t n) { return should_fail("strndup", n) ? NULL : __real_strndup(s, n); }

void *__wrap_aligned_alloc(size_t align, size_t n) {
    return should_fail("aligned_alloc", n) ? NULL : __real_aligned_alloc(align, n);
}

int __wrap_posix_memalign(void **p, size_t align, size_t n) {
    if (should_fail("posix_memalign", n)) return 12;  // ENOMEM
    return __real_posix_memalign(p, align, n);
}

// cJSON (a shared library) allocates through its hooks: point them at the wrappers.
static void *json_malloc(size_t n) { return __wrap_malloc(n); }
static void json_free(void *p) { free(p); }

__attribute__((constructor)) static void fault_init(void) {
    cJSON_Hooks h = {json_malloc, json_free};
    cJSON_InitHooks(&h);
    const char *bt = getenv("CDAM_FAULT_BACKTRACE");
    want_backtrace = bt && *bt && strcmp(bt, "0");
    if (want_backtrace) {  // the first backtrace() loads libgcc: do it now, not in a fault
        void *f[2];
        backtrace(f, 2);
    }
    say("cdam-fault: allocation fault injection is on (X-Fault-Alloc: N)");
}

// Overrides the weak no-op in server/util.c.
void srv_request_hook(const char *fault_alloc) {
    if (!fault_alloc) return;
    long n = strtol(fault_alloc, NULL, 10);
    if (n > 0) {
        atomic_store(&active, 0);
        atomic_store(&counted, 0);
        atomic_store(&fired, 0);
        atomic_store(&target, n);
        atomic_store(&active, 1);
        say("cdam-fault: armed %ld", n);
    } else {
        atomic_store(&active, 0);
        atomic_store(&target, 0);
        say("cdam-fault: disarmed after %ld allocations (fired %ld)", atomic_load(&counted), atomic_load(&fired));
    }
}
