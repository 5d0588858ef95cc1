/* test_srv_cache.c - server/cache.c: hits and misses, LRU order, eviction by bytes,
 * replacement, oversize values, the disabled cache, one digest at two sizes, a long
 * random run against a simple reference model, and threads hammering get/put (every
 * value carries its key, checked on each hit). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "check.h"

#define OV SRV_CACHE_ENTRY_OVERHEAD

static void make_key(unsigned char key[32], unsigned id) {
    for (int i = 0; i < 32; i++) key[i] = (unsigned char)(id * 31u + (unsigned)i * 7u + (id >> 8));
    memcpy(key, &id, sizeof id);
}

// A value that identifies its key: id, h, w, then a byte pattern derived from them.
static size_t make_value(unsigned char *buf, size_t len, unsigned id, int h, int w) {
    for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(id + (unsigned)h * 3u + (unsigned)w * 5u + i * 13u);
    if (len >= 12) { memcpy(buf, &id, 4); memcpy(buf + 4, &h, 4); memcpy(buf + 8, &w, 4); }
    return len;
}

static int value_ok(const unsigned char *buf, size_t len, size_t want_len, unsigned id, int h, int w) {
    unsigned char ref[4096];
    if (len != want_len || len > sizeof ref) return 0;
    make_value(ref, len, id, h, w);
    return memcmp(ref, buf, len) == 0;
}

static int has(srv_cache *c, unsigned id, int h, int w) {
    unsigned char key[32], buf[4096];
    size_t len;
    make_key(key, id);
    return srv_cache_get(c, key, h, w, buf, sizeof buf, &len);
}

static int put(srv_cache *c, unsigned id, int h, int w, size_t len) {
    unsigned char key[32], buf[4096];
    make_key(key, id);
    make_value(buf, len, id, h, w);
    return srv_cache_put(c, key, h, w, buf, len);
}

static void test_basic(void) {
    srv_cache *c = srv_cache_create(1 << 20);
    CHECK(c != NULL, "create");
    unsigned char key[32], buf[256], val[100];
    size_t len = 0;
    make_key(key, 1);
    CHECK(srv_cache_get(c, key, 224, 224, buf, sizeof buf, &len) == 0, "empty cache misses");
    make_value(val, 100, 1, 224, 224);
    CHECK(srv_cache_put(c, key, 224, 224, val, 100) == 0, "put");
    memset(buf, 0, sizeof buf);
    CHECK(srv_cache_get(c, key, 224, 224, buf, sizeof buf, &len) == 1, "hit after put");
    CHECK(len == 100 && memcmp(buf, val, 100) == 0, "hit copies the value (len %zu)", len);
    val[50] ^= 0xff;  // the cache holds a copy, not the caller's buffer
    CHECK(srv_cache_get(c, key, 224, 224, buf, sizeof buf, &len) == 1 && buf[50] != val[50], "value is copied on put");
    CHECK(srv_cache_get(c, key, 224, 224, buf, 99, &len) == 0, "cap smaller than the value misses");
    CHECK(srv_cache_get(c, key, 224, 224, buf, 100, NULL) == 1, "cap equal to the value hits; len may be NULL");

    // same digest, other sizes: separate entries
    CHECK(srv_cache_get(c, key, 224, 448, buf, sizeof buf, &len) == 0, "same digest, other size misses");
    CHECK(srv_cache_get(c, key, 448, 224, buf, sizeof buf, &len) == 0, "same digest, transposed size misses");
    CHECK(put(c, 1, 224, 448, 60) == 0, "put other size");
    CHECK(srv_cache_get(c, key, 224, 448, buf, sizeof buf, &len) == 1 && value_ok(buf, len, 60, 1, 224, 448), "other size has its own value");
    CHECK(srv_cache_get(c, key, 224, 224, buf, sizeof buf, &len) == 1 && len == 100, "first size still there");
    unsigned char key2[32];
    memcpy(key2, key, 32);
    key2[31] ^= 1;
    CHECK(srv_cache_get(c, key2, 224, 224, buf, sizeof buf, &len) == 0, "one bit of digest differs: miss");

    // zero-length value
    CHECK(put(c, 2, 8, 8, 0) == 0, "put empty value");
    len = 99;
    CHECK(has(c, 2, 8, 8) == 1, "empty value hits");
    make_key(key, 2);
    CHECK(srv_cache_get(c, key, 8, 8, NULL, 0, &len) == 1 && len == 0, "empty value hits with NULL dst, len 0");

    srv_cache_stats st;
    srv_cache_stats_get(c, &st);
    CHECK(st.hits == 7 && st.misses == 5, "stats hits %llu misses %llu (want 7, 5)", st.hits, st.misses);
    CHECK(st.entries == 3 && st.bytes == 100 + 60 + 0 + 3 * OV, "entries %zu bytes %zu", st.entries, st.bytes);
    CHECK(st.evictions == 0 && st.max_bytes == 1 << 20, "evictions %llu max %zu", st.evictions, st.max_bytes);

    CHECK(srv_cache_put(c, NULL, 1, 1, buf, 1) == CDAM_EINVAL, "NULL key refused");
    CHECK(srv_cache_put(c, key, 1, 1, NULL, 1) == CDAM_EINVAL, "NULL src with len refused");
    CHECK(srv_cache_put(NULL, key, 1, 1, buf, 1) == CDAM_EINVAL, "NULL cache refused");
    CHECK(srv_cache_get(NULL, key, 1, 1, buf, 1, &len) == 0, "NULL cache misses");
    srv_cache_stats_get(NULL, &st);
    CHECK(st.entries == 0 && st.hits == 0, "stats of NULL cache are zero");
    srv_cache_free(c);
    srv_cache_free(NULL);
}

static void test_lru(void) {
    // room for exactly three 100-byte values
    srv_cache *c = srv_cache_create(3 * (100 + OV));
    put(c, 1, 8, 8, 100);
    put(c, 2, 8, 8, 100);
    put(c, 3, 8, 8, 100);
    CHECK(has(c, 1, 8, 8), "A present");  // order now (most recent first): A C B
    put(c, 4, 8, 8, 100);                 // evicts B
    CHECK(!has(c, 2, 8, 8), "LRU entry B evicted");
    CHECK(has(c, 3, 8, 8) && has(c, 1, 8, 8) && has(c, 4, 8, 8), "A, C, D kept");  // order D A C
    srv_cache_stats st;
    srv_cache_stats_get(c, &st);
    CHECK(st.evictions == 1 && st.entries == 3 && st.bytes == 3 * (100 + OV), "one eviction, 3 entries (%llu, %zu, %zu)",
          st.evictions, st.entries, st.bytes);

    // a 150-byte value needs two slots' worth: evicts C then A (the two least recent)
    put(c, 5, 8, 8, 150);
    CHECK(!has(c, 3, 8, 8) && !has(c, 1, 8, 8), "C and A evicted by a bigger value");
    CHECK(has(c, 4, 8, 8) && has(c, 5, 8, 8), "D and E kept");
    srv_cache_stats_get(c, &st);
    CHECK(st.evictions == 3 && st.entries == 2 && st.bytes == 250 + 2 * OV, "evictions %llu entries %zu bytes %zu",
          st.evictions, st.entries, st.bytes);

    // replace: same key, new length; no eviction counted, bytes follow the new length
    put(c, 4, 8, 8, 20);
    srv_cache_stats_get(c, &st);
    CHECK(st.entries == 2 && st.bytes == 170 + 2 * OV && st.evictions == 3, "replace: entries %zu bytes %zu evictions %llu",
          st.entries, st.bytes, st.evictions);
    unsigned char key[32], buf[512];
    size_t len;
    make_key(key, 4);
    CHECK(srv_cache_get(c, key, 8, 8, buf, sizeof buf, &len) && value_ok(buf, len, 20, 4, 8, 8), "replaced value returned");

    // exactly the whole budget: stored, evicting everything else
    CHECK(put(c, 6, 8, 8, 3 * (100 + OV) - OV) == 0, "value of exactly max - overhead");
    srv_cache_stats_get(c, &st);
    CHECK(st.entries == 1 && st.bytes == st.max_bytes && has(c, 6, 8, 8), "largest value stored alone (%zu entries)", st.entries);

    // one byte more: not stored, returns 0, and the older entry of that key is dropped
    CHECK(put(c, 6, 8, 8, 3 * (100 + OV) - OV + 1) == 0, "oversize put returns 0");
    CHECK(!has(c, 6, 8, 8), "oversize value not stored, stale entry dropped");
    put(c, 7, 8, 8, 10);
    CHECK(put(c, 8, 8, 8, 3 * (100 + OV)) == 0 && has(c, 7, 8, 8), "oversize value of another key leaves the cache alone");
    srv_cache_stats_get(c, &st);
    CHECK(st.entries == 1 && st.bytes == 10 + OV, "after oversize: entries %zu bytes %zu", st.entries, st.bytes);

    // a get that misses because of cap does not refresh the entry
    srv_cache_free(c);
    c = srv_cache_create(2 * (100 + OV));
    put(c, 1, 8, 8, 100);
    put(c, 2, 8, 8, 100);
    make_key(key, 1);
    CHECK(srv_cache_get(c, key, 8, 8, buf, 10, &len) == 0, "short cap misses");
    put(c, 3, 8, 8, 100);
    CHECK(!has(c, 1, 8, 8) && has(c, 2, 8, 8), "short-cap miss did not make the entry recent");
    srv_cache_free(c);

    // a budget smaller than the overhead stores nothing
    c = srv_cache_create(OV - 1);
    CHECK(put(c, 1, 8, 8, 0) == 0 && !has(c, 1, 8, 8), "budget below overhead stores nothing");
    srv_cache_free(c);
}

static void test_disabled(void) {
    srv_cache *c = srv_cache_create(0);
    CHECK(c != NULL, "create disabled");
    CHECK(put(c, 1, 8, 8, 10) == 0, "put on disabled returns 0");
    CHECK(put(c, 1, 8, 8, 0) == 0, "empty put on disabled returns 0");
    CHECK(!has(c, 1, 8, 8), "disabled cache misses");
    srv_cache_stats st;
    srv_cache_stats_get(c, &st);
    CHECK(st.entries == 0 && st.bytes == 0 && st.misses == 1 && st.hits == 0 && st.max_bytes == 0, "disabled stats");
    srv_cache_free(c);
}

// Reference model: arrays, recency by a logical clock, eviction by smallest stamp.
#define MODEL_KEYS 64
typedef struct { int present; size_t len; unsigned long stamp; } model_entry;

static void test_model(void) {
    const size_t max = 20 * (200 + OV);
    srv_cache *c = srv_cache_create(max);
    model_entry m[MODEL_KEYS][2];
    memset(m, 0, sizeof m);
    unsigned long clock = 0, evictions = 0;
    size_t mbytes = 0;
    int mismatches = 0;
    srand(12345);
    for (int op = 0; op < 20000; op++) {
        unsigned id = (unsigned)(rand() % MODEL_KEYS);
        int sz = rand() % 2, h = 16 + 16 * sz;
        model_entry *e = &m[id][sz];
        if (rand() % 3) {  // get
            unsigned char key[32], buf[4096];
            size_t len = 0;
            make_key(key, id);
            int hit = srv_cache_get(c, key, h, 16, buf, sizeof buf, &len);
            if (hit != e->present || (hit && !value_ok(buf, len, e->len, id, h, 16))) mismatches++;
            if (e->present) e->stamp = ++clock;
        } else {  // put
            size_t len = (size_t)(rand() % 600);
            put(c, id, h, 16, len);
            if (e->present) { mbytes -= e->len + OV; e->present = 0; }
            if (len + OV <= max) {
                e->present = 1; e->len = len; e->stamp = ++clock; mbytes += len + OV;
                while (mbytes > max) {
                    model_entry *old = NULL;
                    for (int i = 0; i < MODEL_KEYS; i++)
                        for (int j = 0; j < 2; j++)
                            if (m[i][j].present && (!old || m[i][j].stamp < old->stamp)) old = &m[i][j];
                    old->present = 0;
                    mbytes -= old->len + OV;
                    evictions++;
                }
            }
        }
        srv_cache_stats st;
        srv_cache_stats_get(c, &st);
        if (st.bytes != mbytes || st.evictions != evictions) mismatches++;
    }
    CHECK(mismatches == 0, "random run vs reference LRU model: %d mismatches", mismatches);
    srv_cache_free(c);

    // many entries: the table grows, everything stays reachable
    c = srv_cache_create((size_t)1 << 30);
    int bad = 0;
    for (unsigned i = 0; i < 20000; i++) put(c, i, 7, 9, 16);
    for (unsigned i = 0; i < 20000; i++) bad += !has(c, i, 7, 9);
    srv_cache_stats st;
    srv_cache_stats_get(c, &st);
    CHECK(bad == 0 && st.entries == 20000 && st.bytes == 20000 * (16 + OV), "20000 entries all found (%d missing)", bad);
    srv_cache_free(c);
}

enum { THREADS = 8, OPS = 20000, TKEYS = 300 };
typedef struct { srv_cache *c; unsigned seed; long hits, bad, errors; } targ;

static size_t key_len(unsigned id, int h) { return 12 + (id * 37u + (unsigned)h) % 700; }

static void *hammer(void *p) {
    targ *a = p;
    unsigned char key[32], buf[4096];
    for (int i = 0; i < OPS; i++) {
        unsigned id = (unsigned)rand_r(&a->seed) % TKEYS;
        int h = 8 * (1 + (int)(id % 3)), w = 8;
        make_key(key, id);
        size_t len = 0;
        if (rand_r(&a->seed) % 2) {
            if (srv_cache_get(a->c, key, h, w, buf, sizeof buf, &len)) {
                a->hits++;
                if (!value_ok(buf, len, key_len(id, h), id, h, w)) a->bad++;
            }
        } else {
            size_t n = make_value(buf, key_len(id, h), id, h, w);
            if (srv_cache_put(a->c, key, h, w, buf, n)) a->errors++;
        }
    }
    return NULL;
}

static void test_threads(void) {
    const size_t max = 50 * (400 + OV);  // far fewer than TKEYS fit: constant eviction
    srv_cache *c = srv_cache_create(max);
    pthread_t t[THREADS];
    targ a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (targ){c, 1000u + (unsigned)i, 0, 0, 0};
        pthread_create(&t[i], NULL, hammer, &a[i]);
    }
    long hits = 0, bad = 0, errors = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        hits += a[i].hits; bad += a[i].bad; errors += a[i].errors;
    }
    CHECK(bad == 0 && errors == 0, "threads: %ld wrong values, %ld put errors", bad, errors);
    CHECK(hits > 0, "threads: some hits (%ld)", hits);
    srv_cache_stats st;
    srv_cache_stats_get(c, &st);
    CHECK(st.bytes <= max && st.evictions > 0, "threads: bytes %zu <= %zu, evictions %llu", st.bytes, max, st.evictions);
    CHECK(st.hits == (unsigned long long)hits, "threads: hit counter %llu == observed %ld", st.hits, hits);
    unsigned long long gets_before = st.hits + st.misses;
    // the accounting matches what is actually stored
    size_t sum = 0, found = 0;
    for (unsigned id = 0; id < TKEYS; id++) {
        int h = 8 * (1 + (int)(id % 3));
        if (has(c, id, h, 8)) { sum += key_len(id, h) + OV; found++; }
    }
    srv_cache_stats_get(c, &st);
    CHECK(found == st.entries && sum == st.bytes, "threads: %zu found vs %zu entries, %zu vs %zu bytes", found, st.entries, sum, st.bytes);
    CHECK(st.hits + st.misses == gets_before + TKEYS, "every get counted once");
    srv_cache_free(c);
}

int main(void) {
    test_basic();
    test_lru();
    test_disabled();
    test_model();
    test_threads();
    return check_summary("test_srv_cache");
}
