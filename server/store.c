#include "store.h"
#include "util.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    srv_concept_info info;
    float *emb;
} concept;

struct srv_store {
    pthread_mutex_t mu;
    char *dir;          // as given, for messages
    int dirfd;          // every file operation is relative to it
    int dim;
    concept *items;     // sorted by id
    int n, cap;
    int pending;        // adds that reserved a slot and are writing their file
};

enum { MAX_DIM = 1000000 };

// ---------------------------------------------------------------- small helpers

static int errno_code(int e) {
    return (e == ENOSPC || e == EDQUOT || e == EROFS || e == EACCES || e == EPERM) ? CDAM_ENOSPC : CDAM_EIO;
}

static const char *errtext(int e, char *buf, size_t cap) { return strerror_r(e, buf, cap); }

static int is_hex32(const char *s) {
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int valid_id(const char *id) { return id && strnlen(id, 33) == 32 && is_hex32(id); }

// "<32 hex>.json"
static int is_concept_name(const char *name) {
    return strlen(name) == 37 && is_hex32(name) && !strcmp(name + 32, ".json");
}

// ".<32 hex>.json.tmp"
static int is_temp_name(const char *name) {
    return strlen(name) == 42 && name[0] == '.' && is_hex32(name + 1) && !strcmp(name + 33, ".json.tmp");
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i <= k) return 0;  // truncated sequence
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int valid_name(const char *name) {
    if (!name) return 0;
    size_t n = strnlen(name, SRV_STORE_NAME_MAX + 1);
    return n >= 1 && n <= SRV_STORE_NAME_MAX && utf8_valid((const unsigned char *)name, n);
}

static int cmp_id(const void *a, const void *b) {
    return memcmp(((const concept *)a)->info.id, ((const concept *)b)->info.id, 32);
}

static int cmp_created(const void *a, const void *b) {
    const srv_concept_info *x = a, *y = b;
    if (x->created < y->created) return -1;
    if (x->created > y->created) return 1;
    return memcmp(x->id, y->id, 32);
}

// Index of id in the sorted table, or -1. Caller holds the lock (or is open()).
static int find(const srv_store *st, const char *id) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = memcmp(st->items[mid].info.id, id, 32);
        if (!c) return mid;
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

// Makes room for at least want items. 0 or CDAM_ENOMEM.
static int reserve(srv_store *st, int want) {
    if (want <= st->cap) return 0;
    int cap = st->cap ? st->cap : 16;
    while (cap < want) cap *= 2;
    concept *p = realloc(st->items, sizeof *p * (size_t)cap);
    if (!p) return CDAM_ENOMEM;
    st->items = p;
    st->cap = cap;
    return 0;
}

static void logf_(srv_log_fn log, void *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(srv_log_fn log, void *ctx, const char *fmt, ...) {
    if (!log) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log(ctx, msg);
}

// Largest file a concept of dim floats can need (name fully \u-escaped, every float at
// its longest), with slack; anything bigger is not ours.
static size_t max_file_size(int dim) { return 65536 + (size_t)dim * 40; }

// ---------------------------------------------------------------- loading

// Reads and validates one concept file; on success appends it to st->items. Returns 0,
// CDAM_ENOMEM, or another negative code with the reason in why.
static int load_file(srv_store *st, const char *fname, char *why, size_t whycap) {
    char eb[128];
    int fd = openat(st->dirfd, fname, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(why, whycap, "cannot open: %s", errtext(errno, eb, sizeof eb)); return CDAM_EIO; }
    struct stat sb;
    if (fstat(fd, &sb)) {
        snprintf(why, whycap, "cannot stat: %s", errtext(errno, eb, sizeof eb));
        close(fd);
        return CDAM_EIO;
    }
    if (!S_ISREG(sb.st_mode)) { snprintf(why, whycap, "not a regular file"); close(fd); return CDAM_EFORMAT; }
    if ((unsigned long long)sb.st_size > max_file_size(st->dim)) {
        snprintf(why, whycap, "too large (%lld bytes, at most %zu expected)", (long long)sb.st_size, max_file_size(st->dim));
        close(fd);
        return CDAM_ELIMIT;
    }
    size_t size = (size_t)sb.st_size, got = 0;
    char *text = malloc(size + 1);
    if (!text) { close(fd); snprintf(why, whycap, "out of memory"); return CDAM_ENOMEM; }
    while (got < size) {
        ssize_t k = read(fd, text + got, size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            snprintf(why, whycap, "cannot read: %s", errtext(errno, eb, sizeof eb));
            free(text); close(fd);
            return CDAM_EIO;
        }
        if (k == 0) break;  // shrank meanwhile
        got += (size_t)k;
    }
    close(fd);
    text[got] = 0;
    float *emb = malloc(sizeof *emb * (size_t)st->dim);
    if (!emb) { free(text); snprintf(why, whycap, "out of memory"); return CDAM_ENOMEM; }
    srv_concept_info info;
    int rc = srv_store_parse_concept(text, got, fname, st->dim, &info, emb, why, whycap);
    free(text);
    if (!rc && (rc = reserve(st, st->n + 1))) snprintf(why, whycap, "out of memory");
    if (rc) { free(emb); return rc; }
    concept *c = &st->items[st->n++];
    memset(c, 0, sizeof *c);
    c->info = info;
    c->emb = emb;
    return 0;
}

int srv_store_parse_concept(const char *text, size_t len, const char *id, int dim, srv_concept_info *info, float *emb,
                            char *why, size_t whycap) {
    if (len > max_file_size(dim)) {
        snprintf(why, whycap, "too large (%zu bytes, at most %zu expected)", len, max_file_size(dim));
        return CDAM_ELIMIT;
    }
    if (strlen(text) != len) { snprintf(why, whycap, "contains a NUL byte"); return CDAM_EFORMAT; }
    int rc = CDAM_EFORMAT;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);  // length incl. the NUL
    if (!root) {
        snprintf(why, whycap, len ? "not valid JSON" : "empty file");
        goto out;
    }
    const cJSON *idv = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(root, "created");
    const cJSON *dimv = cJSON_GetObjectItemCaseSensitive(root, "dim");
    const cJSON *embv = cJSON_GetObjectItemCaseSensitive(root, "embedding");
    if (!cJSON_IsObject(root)) { snprintf(why, whycap, "not a JSON object"); goto out; }
    if (!cJSON_IsString(idv) || strlen(idv->valuestring) != 32 || strncmp(idv->valuestring, id, 32) != 0) {
        snprintf(why, whycap, "\"id\" missing or not matching the file name");
        goto out;
    }
    if (!cJSON_IsString(name) || !valid_name(name->valuestring)) {
        snprintf(why, whycap, "\"name\" missing or not 1..%d bytes of UTF-8", SRV_STORE_NAME_MAX);
        goto out;
    }
    if (!cJSON_IsNumber(images) || !(images->valuedouble >= 0 && images->valuedouble <= INT_MAX) ||
        images->valuedouble != floor(images->valuedouble)) {
        snprintf(why, whycap, "\"images\" missing or not an integer >= 0");
        goto out;
    }
    if (!cJSON_IsNumber(created) || !isfinite(created->valuedouble) || created->valuedouble < 0) {
        snprintf(why, whycap, "\"created\" missing or not a finite number >= 0");
        goto out;
    }
    if (!cJSON_IsNumber(dimv) || dimv->valuedouble != dim) {
        if (cJSON_IsNumber(dimv)) snprintf(why, whycap, "\"dim\" is %.17g, the store holds %d", dimv->valuedouble, dim);
        else snprintf(why, whycap, "\"dim\" missing or not a number");
        goto out;
    }
    if (!cJSON_IsArray(embv)) { snprintf(why, whycap, "\"embedding\" missing or not an array"); goto out; }
    int count = cJSON_GetArraySize(embv);
    if (count != dim) {
        snprintf(why, whycap, "\"embedding\" has %d values, dim is %d", count, dim);
        goto out;
    }
    int k = 0;
    for (const cJSON *v = embv->child; v; v = v->next, k++) {
        if (!cJSON_IsNumber(v)) { snprintf(why, whycap, "\"embedding\"[%d] is not a number", k); goto out; }
        float f = (float)v->valuedouble;
        if (!isfinite(v->valuedouble) || !isfinite(f)) {
            snprintf(why, whycap, "\"embedding\"[%d] is not a finite float", k);
            goto out;
        }
        emb[k] = f;
    }
    memset(info, 0, sizeof *info);
    memcpy(info->id, id, 32);
    snprintf(info->name, sizeof info->name, "%s", name->valuestring);
    info->images = (int)images->valuedouble;
    info->created = created->valuedouble;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// mkdir -p with mode 0700 for the components it creates. 0 or -1 with errno.
static int make_dirs(const char *dir) {
    struct stat sb;
    if (!stat(dir, &sb)) return S_ISDIR(sb.st_mode) ? 0 : (errno = ENOTDIR, -1);
    char *p = strdup(dir);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0700) && errno != EEXIST) { int e = errno; free(p); errno = e; return -1; }
        *s = '/';
    }
    int r = mkdir(p, 0700);
    if (r && errno == EEXIST) r = 0;
    int e = errno;
    free(p);
    errno = e;
    return r;
}

int srv_store_open(const char *dir, int dim, srv_log_fn log, void *log_ctx, srv_store **out, char *err) {
    if (out) *out = NULL;
    if (!dir || !*dir || !out) return cdam_fail(err, CDAM_EINVAL, "no directory given");
    if (dim < 1 || dim > MAX_DIM) return cdam_fail(err, CDAM_EINVAL, "dim %d out of range 1..%d", dim, MAX_DIM);
    char eb[128];
    if (make_dirs(dir))
        return cdam_fail(err, CDAM_EIO, "cannot create directory %s: %s", dir, errtext(errno, eb, sizeof eb));
    srv_store *st = calloc(1, sizeof *st);
    if (!st || !(st->dir = strdup(dir))) { free(st); return cdam_fail(err, CDAM_ENOMEM, "out of memory"); }
    st->dim = dim;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        int e = errno;
        free(st->dir); free(st);
        return cdam_fail(err, CDAM_EIO, "cannot open directory %s: %s", dir, errtext(e, eb, sizeof eb));
    }
    pthread_mutex_init(&st->mu, NULL);

    // collect the names first (sorted, so the load and its messages are deterministic)
    int dfd = dup(st->dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        int e = errno;
        if (dfd >= 0) close(dfd);
        srv_store_close(st);
        return cdam_fail(err, CDAM_EIO, "cannot list directory %s: %s", dir, errtext(e, eb, sizeof eb));
    }
    char **names = NULL;
    size_t nn = 0, ncap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (!is_concept_name(de->d_name) && !is_temp_name(de->d_name)) continue;
        if (nn == ncap) {
            size_t c2 = ncap ? ncap * 2 : 64;
            char **p = realloc(names, sizeof *p * c2);
            if (!p) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); break; }
            names = p;
            ncap = c2;
        }
        if (!(names[nn] = strdup(de->d_name))) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); break; }
        nn++;
        errno = 0;
    }
    if (!rc && errno) {
        rc = cdam_fail(err, CDAM_EIO, "cannot list directory %s: %s", dir, errtext(errno, eb, sizeof eb));
    }
    closedir(d);
    if (!rc && nn) qsort(names, nn, sizeof *names, cmp_str);

    for (size_t i = 0; i < nn && !rc; i++) {
        if (is_temp_name(names[i])) {
            if (unlinkat(st->dirfd, names[i], 0))
                logf_(log, log_ctx, "cannot remove leftover temporary file %s/%s: %s", dir, names[i],
                      errtext(errno, eb, sizeof eb));
            else
                logf_(log, log_ctx, "removed leftover temporary file %s/%s (interrupted write)", dir, names[i]);
            continue;
        }
        if (st->n >= SRV_STORE_MAX) {
            logf_(log, log_ctx, "skipped %s/%s: more than %d concepts", dir, names[i], SRV_STORE_MAX);
            continue;
        }
        char why[256];
        int r = load_file(st, names[i], why, sizeof why);
        if (r == CDAM_ENOMEM) rc = cdam_fail(err, CDAM_ENOMEM, "out of memory loading %s/%s", dir, names[i]);
        else if (r) logf_(log, log_ctx, "skipped %s/%s: %s", dir, names[i], why);
    }
    for (size_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    if (rc) { srv_store_close(st); return rc; }
    if (st->n > 1) qsort(st->items, (size_t)st->n, sizeof *st->items, cmp_id);
    *out = st;
    return 0;
}

void srv_store_close(srv_store *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->items[i].emb);
    free(st->items);
    if (st->dirfd >= 0) close(st->dirfd);
    pthread_mutex_destroy(&st->mu);
    free(st->dir);
    free(st);
}

// ---------------------------------------------------------------- adding


// Writes text durably as "<id>.json": temporary file, fsync, rename, fsync of the
// directory. On failure no file of this id is left behind. 0 or a CDAM code with err.
static int write_file(srv_store *st, const char *id, const char *text, size_t len, char *err) {
    char tmp[64], fin[64], eb[128];
    snprintf(tmp, sizeof tmp, ".%s.json.tmp", id);
    snprintf(fin, sizeof fin, "%s.json", id);
    const char *what = "create", *file = tmp;
    int e = 0;
    int fd = openat(st->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) { e = errno; goto fail; }
    for (size_t off = 0; off < len;) {
        ssize_t k = write(fd, text + off, len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { e = errno; what = "write"; break; }
        off += (size_t)k;
    }
    if (!e && fsync(fd)) { e = errno; what = "sync"; }
    if (close(fd) && !e) { e = errno; what = "close"; }
    if (!e && renameat(st->dirfd, tmp, st->dirfd, fin)) { e = errno; what = "rename into place"; }
    if (e) {
        unlinkat(st->dirfd, tmp, 0);
        goto fail;
    }
    if (fsync(st->dirfd)) {  // not durable: take the file back
        e = errno;
        what = "sync the directory for";
        file = fin;
        unlinkat(st->dirfd, fin, 0);
        fsync(st->dirfd);
        goto fail;
    }
    return 0;
fail:
    return cdam_fail(err, errno_code(e), "cannot %s %s/%s: %s", what, st->dir, file, errtext(e, eb, sizeof eb));
}

int srv_store_add(srv_store *st, const char *name, int images, const float *embedding, srv_concept_info *out, char *err) {
    if (!st || !embedding) return cdam_fail(err, CDAM_EINVAL, "no store or embedding");
    if (!valid_name(name)) return cdam_fail(err, CDAM_EINVAL, "concept name must be 1..%d bytes of UTF-8", SRV_STORE_NAME_MAX);
    if (images < 0) return cdam_fail(err, CDAM_EINVAL, "image count %d is negative", images);
    for (int i = 0; i < st->dim; i++)
        if (!isfinite(embedding[i])) return cdam_fail(err, CDAM_EINVAL, "embedding[%d] is not finite", i);

    concept c;
    memset(&c, 0, sizeof c);
    snprintf(c.info.name, sizeof c.info.name, "%s", name);
    c.info.images = images;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char created[48];
    snprintf(created, sizeof created, "%lld.%06ld", (long long)ts.tv_sec, ts.tv_nsec / 1000);
    c.info.created = strtod(created, NULL);  // exactly what a reload will read
    if (!(c.emb = malloc(sizeof *c.emb * (size_t)st->dim))) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    memcpy(c.emb, embedding, sizeof *c.emb * (size_t)st->dim);

    // reserve a slot (so the insert below cannot fail) and pick an unused id
    pthread_mutex_lock(&st->mu);
    int rc = 0;
    if (st->n + st->pending >= SRV_STORE_MAX)
        rc = cdam_fail(err, CDAM_ELIMIT, "concept store is full (%d concepts)", SRV_STORE_MAX);
    else if (reserve(st, st->n + st->pending + 1))
        rc = cdam_fail(err, CDAM_ENOMEM, "out of memory");
    else {
        do {
            if (srv_random_id(c.info.id)) {
                char eb[128];
                rc = cdam_fail(err, CDAM_EIO, "no random bytes for a concept id: %s", errtext(errno, eb, sizeof eb));
                break;
            }
        } while (find(st, c.info.id) >= 0);
    }
    if (!rc) st->pending++;
    pthread_mutex_unlock(&st->mu);
    if (rc) { free(c.emb); return rc; }

    srv_buf b = {malloc(4096), 0, 4096, 0};
    if (!b.p) b.oom = 1;
    srv_buf_add(&b, "{\"id\": \"%s\", \"name\": ", c.info.id);
    srv_buf_str(&b, c.info.name);
    srv_buf_add(&b, ", \"images\": %d, \"created\": %s, \"dim\": %d, \"embedding\": [", images, created, st->dim);
    for (int i = 0; i < st->dim; i++) srv_buf_add(&b, i ? ", %.9g" : "%.9g", (double)c.emb[i]);
    srv_buf_add(&b, "]}\n");
    if (b.oom) rc = cdam_fail(err, CDAM_ENOMEM, "out of memory");
    else rc = write_file(st, c.info.id, b.p, b.len, err);
    free(b.p);

    pthread_mutex_lock(&st->mu);
    st->pending--;
    if (!rc) {  // insert in id order; capacity was reserved
        int pos = st->n;
        while (pos > 0 && memcmp(st->items[pos - 1].info.id, c.info.id, 32) > 0) pos--;
        memmove(&st->items[pos + 1], &st->items[pos], sizeof *st->items * (size_t)(st->n - pos));
        st->items[pos] = c;
        st->n++;
    }
    pthread_mutex_unlock(&st->mu);
    if (rc) { free(c.emb); return rc; }
    if (out) *out = c.info;
    return 0;
}

// ---------------------------------------------------------------- reading, deleting

int srv_store_get(srv_store *st, const char *id, srv_concept_info *info, float *emb) {
    if (!st || !valid_id(id)) return CDAM_ENOTFOUND;
    pthread_mutex_lock(&st->mu);
    int i = find(st, id);
    if (i >= 0) {
        if (info) *info = st->items[i].info;
        if (emb) memcpy(emb, st->items[i].emb, sizeof *emb * (size_t)st->dim);
    }
    pthread_mutex_unlock(&st->mu);
    return i >= 0 ? 0 : CDAM_ENOTFOUND;
}

int srv_store_list(srv_store *st, srv_concept_info **out, int *n) {
    if (!out || !n) return CDAM_EINVAL;
    *out = NULL;
    *n = 0;
    if (!st) return 0;
    pthread_mutex_lock(&st->mu);
    int cnt = st->n;
    srv_concept_info *v = cnt ? malloc(sizeof *v * (size_t)cnt) : NULL;
    if (v)
        for (int i = 0; i < cnt; i++) v[i] = st->items[i].info;
    pthread_mutex_unlock(&st->mu);
    if (cnt && !v) return CDAM_ENOMEM;
    if (cnt > 1) qsort(v, (size_t)cnt, sizeof *v, cmp_created);
    *out = v;
    *n = cnt;
    return 0;
}

int srv_store_delete(srv_store *st, const char *id, char *err) {
    if (!st || !valid_id(id)) return cdam_fail(err, CDAM_ENOTFOUND, "no concept %.40s", id ? id : "(null)");
    char fin[64], eb[128];
    snprintf(fin, sizeof fin, "%.32s.json", id);
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    int i = find(st, id);
    if (i < 0) {
        rc = cdam_fail(err, CDAM_ENOTFOUND, "no concept %s", id);
    } else if (unlinkat(st->dirfd, fin, 0) && errno != ENOENT) {
        int e = errno;
        rc = cdam_fail(err, errno_code(e), "cannot delete %s/%s: %s", st->dir, fin, errtext(e, eb, sizeof eb));
    } else {
        if (fsync(st->dirfd)) {
            int e = errno;
            rc = cdam_fail(err, CDAM_EIO, "deleted %s/%s but cannot sync the directory: %s", st->dir, fin,
                           errtext(e, eb, sizeof eb));
        }
        free(st->items[i].emb);
        memmove(&st->items[i], &st->items[i + 1], sizeof *st->items * (size_t)(st->n - i - 1));
        st->n--;
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int srv_store_count(srv_store *st) {
    if (!st) return 0;
    pthread_mutex_lock(&st->mu);
    int n = st->n;
    pthread_mutex_unlock(&st->mu);
    return n;
}

int srv_store_dim(const srv_store *st) { return st ? st->dim : 0; }
