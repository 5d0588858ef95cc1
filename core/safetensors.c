#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define ST_MAX_HEADER (100u << 20)  // 100 MB, as the reference implementation

static const struct { const char *name; st_dtype dt; size_t size; } dtypes[] = {
    {"F64", ST_F64, 8}, {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2},
    {"I64", ST_I64, 8}, {"I32", ST_I32, 4}, {"I16", ST_I16, 2}, {"I8", ST_I8, 1},
    {"U8", ST_U8, 1},   {"BOOL", ST_BOOL, 1},
};

const char *st_dtype_name(st_dtype d) {
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].dt == d) return dtypes[i].name;
    return "?";
}

size_t st_dtype_size(st_dtype d) {
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].dt == d) return dtypes[i].size;
    return 0;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

// Validates one header entry and fills t. Contract: on success every byte of
// [t->data, t->data + t->nbytes) lies inside [base, base + buflen).
static int parse_entry(const char *label, const char *name, const json_value *e, const uint8_t *base,
                       uint64_t buflen, st_tensor *t, char *err) {
    if (e->type != JSON_OBJECT)
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': header entry is not an object", label, name);
    const json_value *dt = json_get(e, "dtype"), *sh = json_get(e, "shape"), *off = json_get(e, "data_offsets");
    if (!dt || dt->type != JSON_STRING || !sh || sh->type != JSON_ARRAY || !off || off->type != JSON_ARRAY)
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': needs dtype, shape and data_offsets", label, name);
    int found = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (!strcmp(dt->str, dtypes[i].name)) { t->dtype = dtypes[i].dt; found = 1; }
    if (!found) return cdam_fail(err, CDAM_EUNSUPPORTED, "%s: tensor '%s': unknown dtype '%.32s'", label, name, dt->str);
    if (sh->len > ST_MAX_DIMS)
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", label, name, sh->len, ST_MAX_DIMS);
    t->ndim = (int)sh->len;
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        const json_value *d = &sh->items[i];
        if (d->type != JSON_NUMBER || !d->is_int || d->i < 0 || d->i > (1LL << 40))
            return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': bad shape", label, name);
        t->shape[i] = d->i;
        // checked before multiplying: two dimensions of 2^40 would wrap the product to 0
        // and pass as an empty tensor whose st_numel overflows (found by tests/fuzz)
        if (d->i && numel > (1ULL << 40) / (uint64_t)d->i)
            return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': shape too large", label, name);
        numel *= (uint64_t)d->i;
    }
    if (off->len != 2 || off->items[0].type != JSON_NUMBER || !off->items[0].is_int ||
        off->items[1].type != JSON_NUMBER || !off->items[1].is_int || off->items[0].i < 0 || off->items[1].i < 0)
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': data_offsets must be two non-negative integers", label, name);
    uint64_t b = (uint64_t)off->items[0].i, en = (uint64_t)off->items[1].i;
    if (b > en) return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] reversed", label, name,
                                 (unsigned long long)b, (unsigned long long)en);
    if (en > buflen)
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%llu bytes; file truncated?)",
                         label, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)buflen);
    if (numel * st_dtype_size(t->dtype) != en - b)
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s': %llu bytes for %llu elements of %s", label, name,
                         (unsigned long long)(en - b), (unsigned long long)numel, st_dtype_name(t->dtype));
    t->data = base + b;
    t->nbytes = (size_t)(en - b);
    return 0;
}

int st_parse(const uint8_t *buf, size_t len, const char *label, st_file *f, char *err) {
    memset(f, 0, sizeof *f);
    json_value *h = NULL;
    int rc = CDAM_EFORMAT;
    f->label = strdup(label ? label : "(buffer)");
    if (!f->label) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    label = f->label;
    if (len < 8) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: not a safetensors file (%zu bytes)", label, len); goto fail; }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    if (hl > ST_MAX_HEADER || hl > len - 8) {
        rc = cdam_fail(err, CDAM_EFORMAT, "%s: header length %llu does not fit in the file (%zu bytes; truncated or not safetensors)",
                       label, (unsigned long long)hl, len);
        goto fail;
    }
    char jerr[CDAM_ERR_MAX];
    h = json_parse((const char *)buf + 8, (size_t)hl, jerr);
    if (!h) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: bad header JSON: %s", label, jerr); goto fail; }
    if (h->type != JSON_OBJECT) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: header is not a JSON object", label); goto fail; }
    const uint8_t *base = buf + 8 + hl;
    uint64_t buflen = len - 8 - hl;
    f->t = calloc(h->len ? h->len : 1, sizeof *f->t);
    if (!f->t) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; i < h->len; i++) {
        const char *name = h->keys[i];
        const json_value *e = &h->items[i];
        if (!strcmp(name, "__metadata__")) {
            if (e->type != JSON_OBJECT) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: __metadata__ is not an object", label); goto fail; }
            f->meta = calloc(e->len ? e->len : 1, sizeof *f->meta);
            if (!f->meta) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto fail; }
            for (size_t j = 0; j < e->len; j++) {
                if (e->items[j].type != JSON_STRING) {
                    rc = cdam_fail(err, CDAM_EFORMAT, "%s: __metadata__ value of '%.64s' is not a string", label, e->keys[j]);
                    goto fail;
                }
                f->meta[j].key = strdup(e->keys[j]);
                f->meta[j].value = strdup(e->items[j].str);
                f->nmeta++;
                if (!f->meta[j].key || !f->meta[j].value) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto fail; }
            }
            continue;
        }
        st_tensor *t = &f->t[f->ntensors];
        if ((rc = parse_entry(label, name, e, base, buflen, t, err)) < 0) goto fail;
        if (!(t->name = strdup(name))) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto fail; }
        f->ntensors++;
    }
    // Tensors must tile the buffer: sorted by offset, no overlap, no hole, nothing left.
    if (f->ntensors > 0) {
        st_tensor **order = malloc((size_t)f->ntensors * sizeof *order);
        if (!order) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto fail; }
        for (int i = 0; i < f->ntensors; i++) order[i] = &f->t[i];
        qsort(order, (size_t)f->ntensors, sizeof *order, cmp_by_offset);
        const uint8_t *pos = base;
        for (int i = 0; i < f->ntensors; i++) {
            const st_tensor *t = order[i];
            if (t->data != pos) {
                rc = cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' %s the previous tensor%s%s", label, t->name,
                               t->data < pos ? "overlaps" : "leaves a gap after", i ? " " : "", i ? order[i - 1]->name : "");
                free(order);
                goto fail;
            }
            pos += t->nbytes;
        }
        free(order);
        if (pos != base + buflen) {
            rc = cdam_fail(err, CDAM_EFORMAT, "%s: %llu bytes after the last tensor", label,
                           (unsigned long long)(base + buflen - pos));
            goto fail;
        }
    }
    json_free(h);
    return 0;
fail:
    json_free(h);
    st_close(f);
    return rc;
}

int st_open(const char *path, st_file *f, char *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cdam_fail(err, CDAM_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cdam_fail(err, CDAM_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return cdam_fail(err, CDAM_EIO, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd);
    int rc = st_parse(map ? map : (const void *)"", size, path, f, err);
    if (rc < 0) {
        if (map) munmap(map, size);
        return rc;
    }
    f->map = map;
    f->map_size = size;
    return 0;
}

void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->ntensors; i++) free(f->t[i].name);
    free(f->t);
    for (int i = 0; i < f->nmeta; i++) { free(f->meta[i].key); free(f->meta[i].value); }
    free(f->meta);
    free(f->label);
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->ntensors; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: normalise
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 1024));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 1023) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int st_to_f32(const st_tensor *t, float *out) {
    int64_t n = st_numel(t);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, (size_t)n * 4); return 0;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); out[i] = (float)d; }
        return 0;
    case ST_F16:
        for (int64_t i = 0; i < n; i++) out[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &bits, 4);
        }
        return 0;
    default: return CDAM_EUNSUPPORTED;
    }
}
