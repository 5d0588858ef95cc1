/* cache.h - the server's forward-pass cache: an LRU map bounded in bytes.
 *
 * Usage:
 *     srv_cache *c = srv_cache_create(256u << 20);          // 256 MiB; 0 = disabled
 *     size_t len;
 *     if (!srv_cache_get(c, digest, h, w, buf, cap, &len)) {  // miss
 *         ... compute value ...
 *         srv_cache_put(c, digest, h, w, value, value_len);   // stores a copy
 *     }
 *     srv_cache_stats st; srv_cache_stats_get(c, &st);
 *     srv_cache_free(c);
 *
 * Key: a 32-byte digest (of the image bytes, say) together with the input size h x w,
 * so one image run at two sizes makes two entries. Values are opaque bytes.
 *
 * Accounting: every entry costs its value length plus SRV_CACHE_ENTRY_OVERHEAD bytes
 * (the entry's bookkeeping); the total never exceeds max_bytes. Putting a value makes it
 * the most recently used and evicts least-recently-used entries until the total fits;
 * a value that could not fit even in an empty cache is not stored.
 *
 * Complexity: get and put are O(1) on average (chained hash table that doubles with the
 * entry count, plus a doubly linked recency list), plus the copy of the value.
 *
 * Ownership: the cache owns copies of the values; get copies out into the caller's
 * buffer, so nothing returned aliases the cache. Thread-safety: every function may be
 * called from any thread at the same time (one mutex; values are copied under it);
 * srv_cache_free only once nobody else uses the cache.
 */
#ifndef CDAM_SRV_CACHE_H
#define CDAM_SRV_CACHE_H

#include <stddef.h>

#include "errors.h"

// Bytes charged per entry on top of its value (hash/list links, key, allocator slack).
#define SRV_CACHE_ENTRY_OVERHEAD 128

typedef struct srv_cache srv_cache;

typedef struct {
    unsigned long long hits, misses, evictions; // evictions: entries dropped to make room
    size_t entries;                             // entries stored now
    size_t bytes;                               // their cost: values + entries * overhead
    size_t max_bytes;                           // the configured bound
} srv_cache_stats;

// New empty cache bounded to max_bytes (0 = disabled: every get misses, every put
// stores nothing and returns 0). NULL on out of memory.
srv_cache *srv_cache_create(size_t max_bytes);

// Frees the cache and every value. NULL is ignored.
void srv_cache_free(srv_cache *c);

// Looks up (key, h, w). Hit: copies the value into dst (which must hold cap bytes),
// sets *len (if len is non-NULL) to its length, makes the entry the most recently used,
// counts a hit and returns 1. Miss, or a value longer than cap (left in place, recency
// unchanged): counts a miss and returns 0. A NULL cache or key is a miss (not counted).
int srv_cache_get(srv_cache *c, const unsigned char key[32], int h, int w, void *dst, size_t cap, size_t *len);

// Stores a copy of src[0..len) under (key, h, w) as the most recently used entry,
// replacing an entry of the same key, then evicts least-recently-used entries until the
// total fits max_bytes. A value with len + SRV_CACHE_ENTRY_OVERHEAD > max_bytes is not
// stored (and an older entry of the same key is dropped, so a stale value never
// outlives a newer put); it returns 0 like a disabled cache does. Returns 0, CDAM_EINVAL
// (NULL cache/key, or NULL src with len > 0), or CDAM_ENOMEM when the copy cannot be
// allocated (cache unchanged).
int srv_cache_put(srv_cache *c, const unsigned char key[32], int h, int w, const void *src, size_t len);

// Copies the counters and sizes into *s (zeros for a NULL cache).
void srv_cache_stats_get(srv_cache *c, srv_cache_stats *s);

#endif
