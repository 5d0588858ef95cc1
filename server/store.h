/* store.h - the concept store: named embeddings persisted as one JSON file each in a
 * data directory.
 *
 * Usage:
 *     srv_store *st;
 *     if (srv_store_open("data/concepts", 384, log_fn, log_ctx, &st, err)) ...;
 *     srv_concept_info info;
 *     srv_store_add(st, "zebra stripes", 3, embedding, &info, err);   // info.id: 32 hex
 *     srv_store_get(st, info.id, &info, emb);                          // emb: dim floats
 *     srv_concept_info *all; int n;
 *     srv_store_list(st, &all, &n); ... free(all);
 *     srv_store_delete(st, info.id, err);
 *     srv_store_close(st);
 *
 * Files: "<id>.json" in the directory, id 32 lowercase hex characters (random), holding
 *     {"id": "<id>", "name": "...", "images": N, "created": 1764000000.123456,
 *      "dim": D, "embedding": [D floats printed with %.9g, so they read back bit-identical]}
 * A file is written to a hidden temporary ".<id>.json.tmp" first, flushed and fsync'ed,
 * renamed over its final name and the directory fsync'ed: a concept becomes visible only
 * once it is durable, and a crash leaves either the whole file or a temporary file that
 * the next srv_store_open removes. Other files in the directory are ignored. Numbers are
 * printed and parsed in the C locale's format: do not switch LC_NUMERIC.
 *
 * Limits: SRV_STORE_MAX concepts; names 1..SRV_STORE_NAME_MAX bytes of valid UTF-8
 * (any characters, quotes and control characters included: they are escaped).
 *
 * Ownership: the store keeps its own copies of names and embeddings; get and list copy
 * out. Thread-safety: every function except open and close may be called from any
 * thread at the same time (one mutex; the slow file write of an add runs outside it,
 * so reads are not held up by fsync). srv_store_close only once no call is running.
 */
#ifndef CDAM_SRV_STORE_H
#define CDAM_SRV_STORE_H

#include <stddef.h>

#include "errors.h"

#define SRV_STORE_MAX 10000
#define SRV_STORE_NAME_MAX 128

typedef struct {
    char id[33];            // 32 lowercase hex characters
    char name[129];         // UTF-8, 1..128 bytes
    int images;             // number of images the embedding was made from
    double created;         // unix seconds (microsecond resolution)
} srv_concept_info;

typedef struct srv_store srv_store;

// Receives one human-readable line (no newline) per problem found by srv_store_open.
typedef void (*srv_log_fn)(void *ctx, const char *msg);

// Opens the store in dir (created with its missing parents, mode 0700, if it does not
// exist) for embeddings of dim floats (1..1000000), loading every "<32 hex>.json" file.
// A file that is unreadable, too large, not JSON, or has a wrong/missing field (id not
// matching the file name, name not 1..128 bytes of UTF-8, negative images, created not a
// finite number >= 0, dim other than dim, embedding not exactly dim finite floats) is
// skipped and reported through log (may be NULL) with its path and the reason, as are
// files beyond SRV_STORE_MAX. Leftover temporary files of an interrupted add are removed
// (and reported). Returns 0 and *out, or CDAM_EINVAL (bad dim, NULL dir/out), CDAM_EIO
// (dir cannot be created, opened or listed), CDAM_ENOMEM; err gets the reason.
int srv_store_open(const char *dir, int dim, srv_log_fn log, void *log_ctx, srv_store **out, char *err);

// Validates the text of one concept file exactly as srv_store_open does for each file:
// text holds len bytes followed by a NUL, id is the 32 hex characters of its file name,
// dim the store's embedding size. Returns 0 with *info and emb (dim floats) filled, or
// CDAM_ELIMIT (too large) / CDAM_EFORMAT with the reason in why (whycap bytes);
// allocates nothing that outlives the call. Used by srv_store_open and tests/fuzz.
int srv_store_parse_concept(const char *text, size_t len, const char *id, int dim, srv_concept_info *info, float *emb,
                            char *why, size_t whycap);

// Frees the store (the files stay). NULL is ignored.
void srv_store_close(srv_store *st);

// Adds a concept with a fresh random id: name 1..128 bytes of valid UTF-8, images >= 0,
// embedding dim finite floats. The file is durable before the concept is visible to
// get/list. On failure the store is unchanged and no file of it remains. Returns 0 and
// fills *out (may be NULL), or CDAM_EINVAL (bad argument), CDAM_ELIMIT (SRV_STORE_MAX
// concepts), CDAM_ENOMEM, CDAM_ENOSPC (the write failed with ENOSPC, EDQUOT, EROFS,
// EACCES or EPERM: disk full or directory not writable), CDAM_EIO (any other write
// failure, or no random bytes); err gets the reason with the errno text.
int srv_store_add(srv_store *st, const char *name, int images, const float *embedding, srv_concept_info *out, char *err);

// Copies the info (if info is non-NULL) and the dim floats (if emb is non-NULL) of
// concept id. Returns 0, or CDAM_ENOTFOUND for an unknown or malformed id.
int srv_store_get(srv_store *st, const char *id, srv_concept_info *info, float *emb);

// A snapshot of every concept, sorted by created then id: *out is malloc'd (free() it;
// NULL when *n is 0), *n the count. Returns 0 or CDAM_ENOMEM (*out NULL, *n 0),
// CDAM_EINVAL for a NULL out or n.
int srv_store_list(srv_store *st, srv_concept_info **out, int *n);

// Deletes concept id: unlinks its file, fsyncs the directory, drops the entry.
// Returns 0; CDAM_ENOTFOUND (unknown or malformed id); CDAM_ENOSPC/CDAM_EIO when the
// unlink fails (entry and file kept). If only the directory fsync fails the file is
// already gone from the directory, so the entry is dropped as well and CDAM_EIO is
// returned (the deletion may not survive a crash). A file that had vanished already
// counts as deleted.
int srv_store_delete(srv_store *st, const char *id, char *err);

// Number of concepts stored.
int srv_store_count(srv_store *st);

// The embedding size the store was opened with.
int srv_store_dim(const srv_store *st);

#endif
