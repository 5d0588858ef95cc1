#include "cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    unsigned char key[32];
    int h, w;
    uint64_t hash;
    struct entry *chain;       // next in the hash bucket
    struct entry *prev, *next; // recency list: prev towards the most recent
    size_t len;
    unsigned char val[];       // len bytes
} entry;

struct srv_cache {
    pthread_mutex_t mu;
    size_t max_bytes, bytes, count;
    entry **buckets;
    size_t nbuckets;           // power of two
    entry *mru, *lru;          // ends of the recency list
    unsigned long long hits, misses, evictions;
};

enum { INITIAL_BUCKETS = 64 };

// FNV-1a over the digest and the size, finished with a 64-bit mixer so that the low
// bits (the bucket index) depend on every input byte.
static uint64_t key_hash(const unsigned char key[32], int h, int w) {
    uint64_t x = 1469598103934665603ull;
    for (int i = 0; i < 32; i++) x = (x ^ key[i]) * 1099511628211ull;
    x = (x ^ (uint32_t)h) * 1099511628211ull;
    x = (x ^ (uint32_t)w) * 1099511628211ull;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

srv_cache *srv_cache_create(size_t max_bytes) {
    srv_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
    if (!c->buckets) { free(c); return NULL; }
    c->nbuckets = INITIAL_BUCKETS;
    c->max_bytes = max_bytes;
    if (pthread_mutex_init(&c->mu, NULL)) { free(c->buckets); free(c); return NULL; }
    return c;
}

void srv_cache_free(srv_cache *c) {
    if (!c) return;
    for (entry *e = c->mru, *nx; e; e = nx) { nx = e->next; free(e); }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

// The slot that points at the entry of this key (so it can be unlinked), or the empty
// slot at the end of its chain. Caller holds the lock.
static entry **find_slot(srv_cache *c, const unsigned char key[32], int h, int w, uint64_t hash) {
    entry **p = &c->buckets[hash & (c->nbuckets - 1)];
    for (; *p; p = &(*p)->chain) {
        entry *e = *p;
        if (e->hash == hash && e->h == h && e->w == w && !memcmp(e->key, key, 32)) break;
    }
    return p;
}

static void list_unlink(srv_cache *c, entry *e) {
    if (e->prev) e->prev->next = e->next; else c->mru = e->next;
    if (e->next) e->next->prev = e->prev; else c->lru = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(srv_cache *c, entry *e) {
    e->prev = NULL;
    e->next = c->mru;
    if (c->mru) c->mru->prev = e; else c->lru = e;
    c->mru = e;
}

// Removes the entry from the table and the list, frees it and updates the total.
static void remove_entry(srv_cache *c, entry *e) {
    entry **p = find_slot(c, e->key, e->h, e->w, e->hash);
    *p = e->chain;
    list_unlink(c, e);
    c->bytes -= e->len + SRV_CACHE_ENTRY_OVERHEAD;
    c->count--;
    free(e);
}

// Doubles the bucket array when the load factor passes 1. Failure to grow is harmless
// (chains just get longer), so it is silently ignored.
static void maybe_grow(srv_cache *c) {
    if (c->count <= c->nbuckets || c->nbuckets > SIZE_MAX / 2 / sizeof(entry *)) return;
    size_t nb = c->nbuckets * 2;
    entry **b = calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (entry *e = c->buckets[i], *nx; e; e = nx) {
            nx = e->chain;
            entry **slot = &b[e->hash & (nb - 1)];
            e->chain = *slot;
            *slot = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

int srv_cache_get(srv_cache *c, const unsigned char key[32], int h, int w, void *dst, size_t cap, size_t *len) {
    if (!c || !key) return 0;
    uint64_t hash = key_hash(key, h, w);
    int hit = 0;
    pthread_mutex_lock(&c->mu);
    entry *e = *find_slot(c, key, h, w, hash);
    if (e && e->len <= cap && (dst || e->len == 0)) {
        if (e->len) memcpy(dst, e->val, e->len);
        if (len) *len = e->len;
        if (c->mru != e) { list_unlink(c, e); list_push_front(c, e); }
        c->hits++;
        hit = 1;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

int srv_cache_put(srv_cache *c, const unsigned char key[32], int h, int w, const void *src, size_t len) {
    if (!c || !key || (!src && len)) return CDAM_EINVAL;
    uint64_t hash = key_hash(key, h, w);
    int fits = c->max_bytes >= SRV_CACHE_ENTRY_OVERHEAD && len <= c->max_bytes - SRV_CACHE_ENTRY_OVERHEAD;
    entry *n = NULL;
    if (fits) {  // allocate and copy outside the lock
        if (len > SIZE_MAX - sizeof *n) return CDAM_ENOMEM;
        n = malloc(sizeof *n + len);
        if (!n) return CDAM_ENOMEM;
        memcpy(n->key, key, 32);
        n->h = h;
        n->w = w;
        n->hash = hash;
        n->len = len;
        n->chain = n->prev = n->next = NULL;
        if (len) memcpy(n->val, src, len);
    }
    pthread_mutex_lock(&c->mu);
    entry *old = *find_slot(c, key, h, w, hash);
    if (old) remove_entry(c, old);
    if (n) {
        entry **slot = find_slot(c, key, h, w, hash);  // the empty end of the chain
        *slot = n;
        list_push_front(c, n);
        c->bytes += len + SRV_CACHE_ENTRY_OVERHEAD;
        c->count++;
        while (c->bytes > c->max_bytes && c->lru != n) {
            remove_entry(c, c->lru);
            c->evictions++;
        }
        maybe_grow(c);
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void srv_cache_stats_get(srv_cache *c, srv_cache_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    s->hits = c->hits;
    s->misses = c->misses;
    s->evictions = c->evictions;
    s->entries = c->count;
    s->bytes = c->bytes;
    s->max_bytes = c->max_bytes;
    pthread_mutex_unlock(&c->mu);
}
