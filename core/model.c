/* model.c - strict loading of DINO ViT weights from safetensors files.
 * Legend: P patch, D embedding, L blocks, H heads, F MLP width, g0 native grid side,
 * N0 = 1 + g0*g0 position rows, C classes. */
#include "model.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "json.h"
#include "safetensors.h"

#define MAX_FILES 16

typedef struct {
    char *canon;           // DINO/timm name (q/k/v split for HF: blocks.i.attn.{q,k,v}.*)
    const st_tensor *t;
    int file;
    int used;
} entry;

typedef struct {
    st_file files[MAX_FILES];
    int nfiles;
    entry *e;
    int ne;
    int hf;                // some names were Hugging Face names
    char what[256];        // "a.safetensors" or "a.safetensors + b.safetensors" for messages
    float *arena;          // next free float of the weight arena during copying
    float *arena_end;
} loader;

static const char *strip(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) ? NULL : s + n;
}

// Maps a Hugging Face name onto the DINO one; returns a malloc'ed name, or NULL with
// *ignore set for tensors DINO does not have (HF's pooler), or the name itself copied.
static char *canonical(const char *name, int *is_hf, int *ignore) {
    static const struct { const char *hf, *dino; } top[] = {
        {"embeddings.cls_token", "cls_token"},
        {"embeddings.position_embeddings", "pos_embed"},
        {"embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"},
        {"embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias"},
        {"layernorm.weight", "norm.weight"},
        {"layernorm.bias", "norm.bias"},
        {"classifier.weight", "head.weight"},
        {"classifier.bias", "head.bias"},
    };
    static const struct { const char *hf, *dino; } blk[] = {
        {"attention.attention.query.", "attn.q."},
        {"attention.attention.key.", "attn.k."},
        {"attention.attention.value.", "attn.v."},
        {"attention.output.dense.", "attn.proj."},
        {"layernorm_before.", "norm1."},
        {"layernorm_after.", "norm2."},
        {"intermediate.dense.", "mlp.fc1."},
        {"output.dense.", "mlp.fc2."},
    };
    *ignore = 0;
    const char *s = name, *r;
    if ((r = strip(s, "vit.")) && (strip(r, "embeddings.") || strip(r, "encoder.") || strip(r, "layernorm.") || strip(r, "pooler.")))
        s = r;
    if (strip(s, "pooler.dense.")) { *is_hf = 1; *ignore = 1; return NULL; }
    for (size_t i = 0; i < sizeof top / sizeof *top; i++)
        if (!strcmp(s, top[i].hf)) { *is_hf = 1; return strdup(top[i].dino); }
    if ((r = strip(s, "encoder.layer."))) {
        char *end;
        errno = 0;
        long li = strtol(r, &end, 10);
        if (end != r && isdigit((unsigned char)*r) && *end == '.' && !errno && li >= 0 && li < 100000) {
            for (size_t i = 0; i < sizeof blk / sizeof *blk; i++) {
                const char *leaf = strip(end + 1, blk[i].hf);
                if (leaf && (!strcmp(leaf, "weight") || !strcmp(leaf, "bias"))) {
                    char buf[128];
                    snprintf(buf, sizeof buf, "blocks.%ld.%s%s", li, blk[i].dino, leaf);
                    *is_hf = 1;
                    return strdup(buf);
                }
            }
        }
    }
    return strdup(name);
}

static entry *find(loader *ld, const char *canon) {
    for (int i = 0; i < ld->ne; i++)
        if (!strcmp(ld->e[i].canon, canon)) return &ld->e[i];
    return NULL;
}

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
}

// Looks up a required tensor with an exact shape; *out set to the entry.
static int need(loader *ld, const char *canon, int ndim, const int64_t *shape, entry **out, char *err) {
    entry *e = find(ld, canon);
    if (!e) return cdam_fail(err, CDAM_EFORMAT, "%s: missing tensor '%s'", ld->what, canon);
    int ok = e->t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = e->t->shape[i] == shape[i];
    if (!ok) {
        char got[96], want[96];
        shape_str(got, sizeof got, e->t->shape, e->t->ndim);
        shape_str(want, sizeof want, shape, ndim);
        return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", ld->files[e->file].label,
                         e->t->name, got, want);
    }
    if (e->t->dtype != ST_F32 && e->t->dtype != ST_F16 && e->t->dtype != ST_BF16 && e->t->dtype != ST_F64)
        return cdam_fail(err, CDAM_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 or F64 expected)",
                         ld->files[e->file].label, e->t->name, st_dtype_name(e->t->dtype));
    *out = e;
    return 0;
}

// Converts the entry into dst (numel floats) and checks every value is finite.
static int convert(loader *ld, entry *e, float *dst, char *err) {
    e->used = 1;
    st_to_f32(e->t, dst);
    int64_t n = st_numel(e->t);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' has a non-finite value at element %lld",
                             ld->files[e->file].label, e->t->name, (long long)i);
    return 0;
}

// Reserves n floats in the arena, 64-byte aligned.
static float *take(loader *ld, long n) {
    float *p = ld->arena;
    ld->arena += (n + 15) & ~15L;
    return p;
}

// Loads tensor canon of the given shape into a fresh arena slot; *dst set to it.
static int load(loader *ld, const char *canon, int ndim, const int64_t *shape, const float **dst, char *err) {
    entry *e;
    int rc = need(ld, canon, ndim, shape, &e, err);
    if (rc < 0) return rc;
    float *p = take(ld, (long)st_numel(e->t));
    *dst = p;
    return convert(ld, e, p, err);
}

// Either blocks.i.attn.qkv.<leaf> (3D, ...) or the HF parts q, k, v (D, ...) joined.
static int load_qkv(loader *ld, int i, const char *leaf, int D, const float **dst, char *err) {
    char name[96];
    snprintf(name, sizeof name, "blocks.%d.attn.qkv.%s", i, leaf);
    int is_w = !strcmp(leaf, "weight");
    int64_t shape3[2] = {3 * (int64_t)D, D}, shape1[2] = {D, D};
    if (find(ld, name)) return load(ld, name, is_w ? 2 : 1, shape3, dst, err);
    float *p = take(ld, 3L * D * (is_w ? D : 1));
    *dst = p;
    for (int t = 0; t < 3; t++) {
        snprintf(name, sizeof name, "blocks.%d.attn.%c.%s", i, "qkv"[t], leaf);
        entry *e;
        int rc = need(ld, name, is_w ? 2 : 1, shape1, &e, err);
        if (rc < 0) {  // name the DINO tensor when no HF part is there either
            if (!find(ld, name) && !ld->hf) snprintf(name, sizeof name, "blocks.%d.attn.qkv.%s", i, leaf), rc = cdam_fail(err, CDAM_EFORMAT, "%s: missing tensor '%s'", ld->what, name);
            return rc;
        }
        if ((rc = convert(ld, e, p + (long)t * D * (is_w ? D : 1), err)) < 0) return rc;
    }
    return 0;
}

static int parse_floats3(const char *txt, float out[3]) {
    json_value *v = json_parse(txt, strlen(txt), NULL);
    int ok = v && v->type == JSON_ARRAY && v->len == 3;
    for (int i = 0; ok && i < 3; i++) {
        // within float range: 1e300 would become an infinite mean (found by tests/fuzz)
        ok = v->items[i].type == JSON_NUMBER && isfinite(v->items[i].num) && fabs(v->items[i].num) <= FLT_MAX;
        if (ok) out[i] = (float)v->items[i].num;
    }
    json_free(v);
    return ok ? 0 : -1;
}

static const char *meta(const loader *ld, const char *key) {
    for (int i = 0; i < ld->nfiles; i++) {
        const char *v = st_meta_get(&ld->files[i], key);
        if (v) return v;
    }
    return NULL;
}

static int set_labels(vit_model *m, char **names, int n, const char *src, char *err) {
    if (n != m->cfg.C)
        return cdam_fail(err, CDAM_EFORMAT, "%s: %d labels, but the head has %d classes", src, n, m->cfg.C);
    m->labels = names;
    return 0;
}

static int read_labels_file(vit_model *m, const char *path, char *err) {
    FILE *f = fopen(path, "r");
    if (!f) return cdam_fail(err, CDAM_EIO, "%s: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') { rc = cdam_fail(err, CDAM_EFORMAT, "%s: line %d too long", path, n + 1); break; }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); break; }
            names = nn;
        }
        if (!(names[n] = strdup(line))) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); break; }
        n++;
    }
    fclose(f);
    while (rc == 0 && n > m->cfg.C && names[n - 1][0] == 0) free(names[--n]);  // trailing blank lines
    if (rc == 0) rc = set_labels(m, names, n, path, err);
    if (rc < 0) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
    }
    return rc;
}

static int read_meta_labels(vit_model *m, const char *txt, const char *src, char *err) {
    char jerr[CDAM_ERR_MAX];
    json_value *v = json_parse(txt, strlen(txt), jerr);
    if (!v || v->type != JSON_ARRAY) {
        json_free(v);
        return cdam_fail(err, CDAM_EFORMAT, "%s: metadata 'labels' is not a JSON array of strings", src);
    }
    int n = (int)v->len, rc = 0;
    char **names = calloc(n ? (size_t)n : 1, sizeof *names);
    if (!names) rc = cdam_fail(err, CDAM_ENOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        if (v->items[i].type != JSON_STRING) rc = cdam_fail(err, CDAM_EFORMAT, "%s: label %d is not a string", src, i);
        else if (!(names[i] = strdup(v->items[i].str))) rc = cdam_fail(err, CDAM_ENOMEM, "out of memory");
    }
    json_free(v);
    if (rc == 0) rc = set_labels(m, names, n, src, err);
    if (rc < 0 && names) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
    }
    return rc;
}

static int read_config_meta(loader *ld, vit_model *m, char *err) {
    vit_config *c = &m->cfg;
    const char *v;
    c->H = c->D >= 64 ? c->D / 64 : 1;
    if ((v = meta(ld, "num_heads"))) {
        char *end;
        long h = strtol(v, &end, 10);
        if (end == v || *end || h < 1 || h > c->D || c->D % h)
            return cdam_fail(err, CDAM_EFORMAT, "%s: metadata num_heads '%.32s' does not divide D = %d", ld->what, v, c->D);
        c->H = (int)h;
    } else if (c->D % c->H) {
        return cdam_fail(err, CDAM_EFORMAT, "%s: no num_heads metadata and D = %d is not a multiple of 64", ld->what, c->D);
    }
    c->Dh = c->D / c->H;
    c->ln_eps = ld->hf ? 1e-12f : 1e-6f;
    if ((v = meta(ld, "ln_eps"))) {
        char *end;
        double e = strtod(v, &end);
        if (end == v || *end || !(e > 0) || e > 1 || !((float)e > 0))  // 1e-300 would be a float 0
            return cdam_fail(err, CDAM_EFORMAT, "%s: metadata ln_eps '%.32s' is not a small positive number", ld->what, v);
        c->ln_eps = (float)e;
    }
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    if ((v = meta(ld, "mean")) && parse_floats3(v, c->mean) < 0)
        return cdam_fail(err, CDAM_EFORMAT, "%s: metadata mean is not a JSON array of 3 numbers", ld->what);
    if ((v = meta(ld, "std")) && (parse_floats3(v, c->std) < 0 || !(c->std[0] > 0 && c->std[1] > 0 && c->std[2] > 0)))
        return cdam_fail(err, CDAM_EFORMAT, "%s: metadata std is not a JSON array of 3 positive numbers", ld->what);
    snprintf(c->name, sizeof c->name, "%s", (v = meta(ld, "name")) ? v : "vit");
    return 0;
}

/* vit_model_load (bufs NULL: paths are files, mapped) and vit_model_load_mem (bufs[i] of
 * lens[i] bytes, borrowed for the duration of the call; paths[i] only labels messages).
 * Same contract as vit_model_load otherwise. */
static int model_load(const char *const *paths, const uint8_t *const *bufs, const size_t *lens, int npaths,
                      const char *labels_path, vit_model **out, char *err) {
    *out = NULL;
    if (npaths < 1 || npaths > MAX_FILES) return cdam_fail(err, CDAM_EINVAL, "need 1 to %d model files, got %d", MAX_FILES, npaths);
    loader ld;
    memset(&ld, 0, sizeof ld);
    vit_model *m = calloc(1, sizeof *m);
    int rc = 0;
    if (!m) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < npaths && k < sizeof ld.what; i++)
        k += (size_t)snprintf(ld.what + k, sizeof ld.what - k, "%s%s", i ? " + " : "", paths[i]);

    // 1. Open every file and index every tensor under its DINO name.
    int total = 0;
    for (int i = 0; i < npaths; i++) {
        rc = bufs ? st_parse(bufs[i], lens[i], paths[i], &ld.files[i], err) : st_open(paths[i], &ld.files[i], err);
        if (rc < 0) goto done;
        ld.nfiles++;
        total += ld.files[i].ntensors;
    }
    ld.e = calloc(total ? (size_t)total : 1, sizeof *ld.e);
    if (!ld.e) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto done; }
    for (int i = 0; i < ld.nfiles; i++) {
        for (int j = 0; j < ld.files[i].ntensors; j++) {
            const st_tensor *t = &ld.files[i].t[j];
            int ignore;
            char *canon = canonical(t->name, &ld.hf, &ignore);
            if (ignore) continue;
            if (!canon) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto done; }
            entry *dup = find(&ld, canon);
            if (dup) {
                rc = cdam_fail(err, CDAM_EFORMAT, "tensor '%s' is in both %s and %s", canon, ld.files[dup->file].label,
                               ld.files[i].label);
                free(canon);
                goto done;
            }
            ld.e[ld.ne++] = (entry){canon, t, i, 0};
        }
    }

    // 2. Configuration from shapes.
    vit_config *c = &m->cfg;
    entry *e;
    const entry *pw = find(&ld, "patch_embed.proj.weight"), *pe = find(&ld, "pos_embed");
    if (!pw) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: missing tensor 'patch_embed.proj.weight'", ld.what); goto done; }
    if (!pe) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: missing tensor 'pos_embed'", ld.what); goto done; }
    const st_tensor *t = pw->t;
    if (t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != t->shape[3] || t->shape[2] < 1 || t->shape[2] > 64 ||
        t->shape[0] < 1 || t->shape[0] > 8192) {
        char s[96];
        shape_str(s, sizeof s, t->shape, t->ndim);
        rc = cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' has shape %s, expected (D, 3, P, P)", ld.files[pw->file].label, t->name, s);
        goto done;
    }
    c->D = (int)t->shape[0];
    c->P = (int)t->shape[2];
    t = pe->t;
    long g0 = t->ndim == 3 && t->shape[1] >= 2 ? lround(sqrt((double)(t->shape[1] - 1))) : 0;
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != c->D || g0 < 1 || 1 + g0 * g0 != t->shape[1]) {
        char s[96];
        shape_str(s, sizeof s, t->shape, t->ndim);
        rc = cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' has shape %s, expected (1, 1 + g0*g0, %d)", ld.files[pe->file].label,
                       t->name, s, c->D);
        goto done;
    }
    c->g0 = (int)g0;
    char name[96];
    for (c->L = 0; c->L < 1000; c->L++) {
        snprintf(name, sizeof name, "blocks.%d.norm1.weight", c->L);
        if (!find(&ld, name)) break;
    }
    if (c->L == 0) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: missing tensor 'blocks.0.norm1.weight'", ld.what); goto done; }
    const entry *f1 = find(&ld, "blocks.0.mlp.fc1.weight");
    if (!f1) { rc = cdam_fail(err, CDAM_EFORMAT, "%s: missing tensor 'blocks.0.mlp.fc1.weight'", ld.what); goto done; }
    if (f1->t->ndim != 2 || f1->t->shape[1] != c->D || f1->t->shape[0] < 1 || f1->t->shape[0] > 65536) {
        rc = cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' is not (F, %d)", ld.files[f1->file].label, f1->t->name, c->D);
        goto done;
    }
    c->F = (int)f1->t->shape[0];
    const entry *hw = find(&ld, "head.weight");
    if (hw) {
        t = hw->t;
        if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > 1000000 ||
            !(t->shape[1] == c->D || (t->shape[1] == 4L * c->D && c->L >= 4))) {
            char s[96];
            shape_str(s, sizeof s, t->shape, t->ndim);
            rc = cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' has shape %s, expected (C, %d) or, with 4+ blocks, (C, %d)",
                           ld.files[hw->file].label, t->name, s, c->D, 4 * c->D);
            goto done;
        }
        c->C = (int)t->shape[0];
        c->head_in = (int)t->shape[1];
    }
    if ((rc = read_config_meta(&ld, m, err)) < 0) goto done;

    // 3. One arena for every weight, then every tensor by name with its exact shape.
    long D = c->D, F = c->F, P = c->P, N0 = 1 + g0 * g0, pad = 16;
    long floats = (D + pad) + (N0 * D + pad) + (D * 3 * P * P + pad) + (D + pad) + 2 * (D + pad) +
                  c->L * (4 * (D + pad) + (3 * D * D + pad) + (3 * D + pad) + (D * D + pad) + (D + pad) +
                          (F * D + pad) + (F + pad) + (D * F + pad) + (D + pad)) +
                  (long)c->C * c->head_in + pad + c->C + pad;
    m->arena_bytes = (size_t)floats * sizeof(float);
    m->arena = mmap(NULL, m->arena_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->arena == MAP_FAILED) { m->arena = NULL; rc = cdam_fail(err, CDAM_ENOMEM, "cannot map %zu bytes for weights", m->arena_bytes); goto done; }
    ld.arena = m->arena;
    ld.arena_end = ld.arena + floats;
    if (!(m->blocks = calloc((size_t)c->L, sizeof *m->blocks))) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto done; }
    int64_t sD[1] = {D}, sCls[3] = {1, 1, D}, sPos[3] = {1, N0, D}, sPw[4] = {D, 3, P, P}, sDD[2] = {D, D},
            sFD[2] = {F, D}, sF[1] = {F}, sDF[2] = {D, F};
    if ((rc = load(&ld, "cls_token", 3, sCls, &m->cls, err)) < 0 || (rc = load(&ld, "pos_embed", 3, sPos, &m->pos, err)) < 0 ||
        (rc = load(&ld, "patch_embed.proj.weight", 4, sPw, &m->patch_w, err)) < 0 ||
        (rc = load(&ld, "patch_embed.proj.bias", 1, sD, &m->patch_b, err)) < 0)
        goto done;
    for (int i = 0; i < c->L; i++) {
        vit_block *b = &m->blocks[i];
        struct { const char *leaf; int ndim; const int64_t *shape; const float **dst; } parts[] = {
            {"norm1.weight", 1, sD, &b->ln1_w}, {"norm1.bias", 1, sD, &b->ln1_b},
            {"attn.proj.weight", 2, sDD, &b->proj_w}, {"attn.proj.bias", 1, sD, &b->proj_b},
            {"norm2.weight", 1, sD, &b->ln2_w}, {"norm2.bias", 1, sD, &b->ln2_b},
            {"mlp.fc1.weight", 2, sFD, &b->fc1_w}, {"mlp.fc1.bias", 1, sF, &b->fc1_b},
            {"mlp.fc2.weight", 2, sDF, &b->fc2_w}, {"mlp.fc2.bias", 1, sD, &b->fc2_b},
        };
        if ((rc = load_qkv(&ld, i, "weight", c->D, &b->qkv_w, err)) < 0 || (rc = load_qkv(&ld, i, "bias", c->D, &b->qkv_b, err)) < 0)
            goto done;
        for (size_t j = 0; j < sizeof parts / sizeof *parts; j++) {
            snprintf(name, sizeof name, "blocks.%d.%s", i, parts[j].leaf);
            if ((rc = load(&ld, name, parts[j].ndim, parts[j].shape, parts[j].dst, err)) < 0) goto done;
        }
    }
    if ((rc = load(&ld, "norm.weight", 1, sD, &m->norm_w, err)) < 0 || (rc = load(&ld, "norm.bias", 1, sD, &m->norm_b, err)) < 0)
        goto done;
    if (c->C) {
        int64_t sH[2] = {c->C, c->head_in}, sC[1] = {c->C};
        if ((rc = load(&ld, "head.weight", 2, sH, &m->head_w, err)) < 0 || (rc = load(&ld, "head.bias", 1, sC, &m->head_b, err)) < 0)
            goto done;
    } else if ((e = find(&ld, "head.bias"))) {
        rc = cdam_fail(err, CDAM_EFORMAT, "%s: tensor '%s' without head.weight", ld.files[e->file].label, e->t->name);
        goto done;
    }
    for (int i = 0; i < ld.ne; i++)
        if (!ld.e[i].used) {
            rc = cdam_fail(err, CDAM_EFORMAT, "%s: unexpected tensor '%s' (a %d-block model has no such weight)",
                           ld.files[ld.e[i].file].label, ld.e[i].t->name, c->L);
            goto done;
        }
    if (mprotect(m->arena, m->arena_bytes, PROT_READ) < 0) { rc = cdam_fail(err, CDAM_EIO, "mprotect: %s", strerror(errno)); goto done; }
    m->n_backbone = D + N0 * D + D * 3 * P * P + D + 2 * D +
                    c->L * (4 * D + 3 * D * D + 3 * D + D * D + D + F * D + F + D * F + D);
    m->n_head = (long)c->C * c->head_in + c->C;

    // 4. Labels: a file overrides the metadata; otherwise "class 17".
    const char *lm = meta(&ld, "labels");
    if (labels_path) rc = read_labels_file(m, labels_path, err);
    else if (lm && c->C) rc = read_meta_labels(m, lm, ld.what, err);
    if (rc < 0) goto done;
    if (!m->labels && c->C) {
        if (!(m->labels = calloc((size_t)c->C, sizeof *m->labels))) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto done; }
        for (int i = 0; i < c->C; i++) {
            snprintf(name, sizeof name, "class %d", i);
            if (!(m->labels[i] = strdup(name))) { rc = cdam_fail(err, CDAM_ENOMEM, "out of memory"); goto done; }
        }
    }
done:
    for (int i = 0; i < ld.ne; i++) free(ld.e[i].canon);
    free(ld.e);
    for (int i = 0; i < ld.nfiles; i++) st_close(&ld.files[i]);
    if (rc < 0) { vit_model_free(m); return rc; }
    *out = m;
    return 0;
}

int vit_model_load(const char *const *paths, int npaths, const char *labels_path, vit_model **out, char *err) {
    return model_load(paths, NULL, NULL, npaths, labels_path, out, err);
}

int vit_model_load_mem(const uint8_t *const *bufs, const size_t *lens, const char *const *names, int n,
                       const char *labels_path, vit_model **out, char *err) {
    if (!bufs || !lens || !names) {
        *out = NULL;
        return cdam_fail(err, CDAM_EINVAL, "vit_model_load_mem: no buffers");
    }
    return model_load(names, bufs, lens, n, labels_path, out, err);
}

void vit_model_free(vit_model *m) {
    if (!m) return;
    if (m->labels)
        for (int i = 0; i < m->cfg.C; i++) free(m->labels[i]);
    free(m->labels);
    free(m->blocks);
    if (m->arena) munmap(m->arena, m->arena_bytes);
    free(m);
}

int vit_model_class(const vit_model *m, const char *s) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long k = strtol(s, &end, 10);
    if (!*end && !errno && isdigit((unsigned char)s[strlen(s) - 1])) return k >= 0 && k < m->cfg.C ? (int)k : -1;
    for (int i = 0; i < m->cfg.C; i++)
        if (m->labels && !strcmp(m->labels[i], s)) return i;
    for (int i = 0; i < m->cfg.C; i++)  // then case-insensitively
        if (m->labels && !strcasecmp(m->labels[i], s)) return i;
    return -1;
}
