/* test_model.c - the strict loader: every malformed-file case gives a clear error that
 * names the file and the tensor; hostile bytes never crash; metadata and labels. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"

static const char *TINY = "tests/data/models/tiny.safetensors";
static char tmpdir[64];

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    if (fread(b, 1, *len, f) != *len) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

// Writes TINY with its header text edited (first occurrence of `from` -> `to`) to
// tmpdir/name and returns the path (static buffer).
static const char *edited(const char *name, const char *from, const char *to) {
    static char path[128];
    size_t len;
    uint8_t *b = read_all(TINY, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    char *hdr = malloc(hl + 1);
    memcpy(hdr, b + 8, hl);
    hdr[hl] = 0;
    char *at = strstr(hdr, from);
    if (!at) { fprintf(stderr, "test bug: '%s' not in header\n", from); exit(1); }
    size_t nl = hl - strlen(from) + strlen(to);
    uint8_t *o = malloc(8 + nl + (len - 8 - hl));
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)(nl >> (8 * i));
    size_t pre = (size_t)(at - hdr);
    memcpy(o + 8, hdr, pre);
    memcpy(o + 8 + pre, to, strlen(to));
    memcpy(o + 8 + pre + strlen(to), at + strlen(from), hl - pre - strlen(from));
    memcpy(o + 8 + nl, b + 8 + hl, len - 8 - hl);
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    write_all(path, o, 8 + nl + len - 8 - hl);
    free(b);
    free(hdr);
    free(o);
    return path;
}

// Loads files and expects failure with code and every one of the substrings.
static void expect_fail(const char *what, const char *const *files, int n, int code, const char *s1, const char *s2) {
    char err[CDAM_ERR_MAX] = "";
    vit_model *m = NULL;
    int rc = vit_model_load(files, n, NULL, &m, err);
    CHECK(rc == code && m == NULL, "%s: rc %d (want %d): %s", what, rc, code, err);
    CHECK(!s1 || strstr(err, s1), "%s: message lacks '%s': %s", what, s1, err);
    CHECK(!s2 || strstr(err, s2), "%s: message lacks '%s': %s", what, s2, err);
    printf("  %-28s -> %s\n", what, err);
}

static void expect_fail1(const char *what, const char *file, int code, const char *s1, const char *s2) {
    expect_fail(what, &file, 1, code, s1, s2);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cdam-test-model-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    char err[CDAM_ERR_MAX];
    vit_model *m;

    // Config read from shapes and metadata.
    CHECK(vit_model_load(&TINY, 1, NULL, &m, err) == 0, "tiny: %s", err);
    CHECK(m->cfg.P == 8 && m->cfg.D == 32 && m->cfg.L == 3 && m->cfg.H == 2 && m->cfg.F == 128 && m->cfg.g0 == 4 &&
              m->cfg.C == 7 && m->cfg.head_in == 32 && fabsf(m->cfg.ln_eps - 1e-6f) < 1e-12f,
          "tiny config");
    CHECK(!strcmp(m->cfg.name, "tiny") && !strcmp(m->labels[0], "apple") && !strcmp(m->labels[6], "guitar"), "tiny metadata");
    CHECK(fabsf(m->cfg.mean[0] - 0.485f) < 1e-7f && fabsf(m->cfg.std[2] - 0.225f) < 1e-7f, "default mean/std");
    CHECK(vit_model_class(m, "3") == 3 && vit_model_class(m, "dolphin") == 3 && vit_model_class(m, "Dolphin") == 3 &&
              vit_model_class(m, "7") == -1 && vit_model_class(m, "-1") == -1 && vit_model_class(m, "zebra") == -1 &&
              vit_model_class(m, "") == -1,
          "class lookup by index and name");
    vit_model_free(m);
    const char *probe = "tests/data/models/probe.safetensors";
    CHECK(vit_model_load(&probe, 1, NULL, &m, err) == 0, "probe: %s", err);
    CHECK(m->cfg.P == 4 && m->cfg.H == 3 && m->cfg.head_in == 4 * 48 && m->cfg.mean[1] == 0.5f && m->cfg.std[0] == 0.25f &&
              !strcmp(m->labels[3], "class 3"),
          "probe config, mean/std, default labels");
    vit_model_free(m);
    const char *hf = "tests/data/models/tiny_hf.safetensors";
    CHECK(vit_model_load(&hf, 1, NULL, &m, err) == 0 && m->cfg.ln_eps == 1e-6f, "hf with ln_eps metadata: %s", err);
    vit_model_free(m);

    {
        size_t len;
        uint8_t *b = read_all(hf, &len);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
        char *p = memmem(b + 8, hl, "\"ln_eps\"", 8);
        CHECK(p != NULL, "tiny_hf has ln_eps metadata");
        if (p) memcpy(p, "\"ln_epz\"", 8);  // same length: metadata key renamed
        char path[128];
        snprintf(path, sizeof path, "%s/hf_noeps.safetensors", tmpdir);
        write_all(path, b, len);
        const char *q = path;
        CHECK(vit_model_load(&q, 1, NULL, &m, err) == 0 && m->cfg.ln_eps == 1e-12f, "HF names default to eps 1e-12: %s", err);
        vit_model_free(m);
        free(b);
    }

    // Labels from a file override the metadata; a wrong count is an error.
    char lpath[128];
    snprintf(lpath, sizeof lpath, "%s/labels.txt", tmpdir);
    FILE *lf = fopen(lpath, "w");
    fputs("a\nb\nc\nd\ne\nf\ng g\n", lf);
    fclose(lf);
    CHECK(vit_model_load(&TINY, 1, lpath, &m, err) == 0 && !strcmp(m->labels[6], "g g"), "labels file: %s", err);
    vit_model_free(m);
    lf = fopen(lpath, "w");
    fputs("a\nb\n", lf);
    fclose(lf);
    CHECK(vit_model_load(&TINY, 1, lpath, &m, err) == CDAM_EFORMAT && strstr(err, "2 labels") && strstr(err, "7 classes"),
          "short labels file: %s", err);
    CHECK(vit_model_load(&TINY, 1, "/nonexistent/labels", &m, err) == CDAM_EIO, "missing labels file: %s", err);

    // Malformed files.
    expect_fail1("missing file", "/nonexistent.safetensors", CDAM_EIO, "/nonexistent.safetensors", "No such file");
    expect_fail1("missing tensor", edited("missing.safetensors", "\"blocks.1.norm2.bias\"", "\"blocks.1.norm2.bias_\""),
                 CDAM_EFORMAT, "missing tensor 'blocks.1.norm2.bias'", NULL);
    expect_fail1("mis-shaped tensor", edited("shape.safetensors", "\"shape\":[96,32]", "\"shape\":[32,96]"), CDAM_EFORMAT,
                 "'blocks.0.attn.qkv.weight' has shape (32, 96), expected (96, 32)", "shape.safetensors");
    expect_fail1("size/shape mismatch", edited("size.safetensors", "\"shape\":[96,32]", "\"shape\":[96,31]"), CDAM_EFORMAT,
                 "blocks.0.attn.qkv.weight", "bytes for");
    expect_fail1("offsets overlap", edited("overlap.safetensors", "\"data_offsets\":[128,2304]", "\"data_offsets\":[64,2240]"),
                 CDAM_EFORMAT, "overlap", NULL);
    expect_fail1("offsets past end", edited("past.safetensors", "\"data_offsets\":[128,2304]", "\"data_offsets\":[128,99999999]"),
                 CDAM_EFORMAT, "run past the end", "pos_embed");
    expect_fail1("offsets reversed", edited("rev.safetensors", "\"data_offsets\":[128,2304]", "\"data_offsets\":[2304,128]"),
                 CDAM_EFORMAT, "reversed", "pos_embed");
    expect_fail1("unknown dtype", edited("dtype.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"Q4\""), CDAM_EUNSUPPORTED,
                 "unknown dtype", "cls_token");
    expect_fail1("integer weights", edited("int.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"I32\""), CDAM_EUNSUPPORTED,
                 "'cls_token' has dtype I32", NULL);
    expect_fail1("bad header JSON", edited("json.safetensors", "\"cls_token\":{", "\"cls_token\":{{"), CDAM_EFORMAT,
                 "bad header JSON", NULL);
    expect_fail1("num_heads not dividing", edited("heads.safetensors", "\"num_heads\":\"2\"", "\"num_heads\":\"3\""),
                 CDAM_EFORMAT, "num_heads", NULL);
    expect_fail1("labels wrong count", edited("labels.safetensors", "\\\"guitar\\\"", "\\\"guitar\\\", \\\"x\\\""),
                 CDAM_EFORMAT, "8 labels", "7 classes");
    expect_fail1("labels not JSON", edited("labels2.safetensors", "[\\\"apple\\\"", "[apple"), CDAM_EFORMAT, "labels", NULL);
    expect_fail1("pos_embed not square", edited("pos.safetensors", "\"shape\":[1,17,32]", "\"shape\":[1,34,16]"),
                 CDAM_EFORMAT, "pos_embed", "1 + g0*g0");
    expect_fail1("head of wrong width", edited("head.safetensors", "\"shape\":[7,32]", "\"shape\":[14,16]"), CDAM_EFORMAT,
                 "head.weight", "(C, 32)");

    // Metadata that is finite as a double but not as a float (found by tests/fuzz).
    expect_fail1("mean overflows float", edited("mean.safetensors", "\"num_heads\":\"2\"", "\"num_heads\":\"2\",\"mean\":\"[1e300,0,0]\""),
                 CDAM_EFORMAT, "metadata mean", NULL);
    expect_fail1("std overflows float", edited("std.safetensors", "\"num_heads\":\"2\"", "\"num_heads\":\"2\",\"std\":\"[1,1e39,1]\""),
                 CDAM_EFORMAT, "metadata std", NULL);
    expect_fail1("ln_eps underflows float", edited("eps.safetensors", "\"num_heads\":\"2\"", "\"num_heads\":\"2\",\"ln_eps\":\"1e-300\""),
                 CDAM_EFORMAT, "ln_eps", NULL);
    // A shape whose element count wraps to 0 in 64 bits (found by tests/fuzz).
    {
        const char hdr[] = "{\"a\":{\"dtype\":\"F64\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}";
        uint8_t buf[128] = {0};
        uint64_t hl = sizeof hdr - 1;
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hl >> (8 * i));
        memcpy(buf + 8, hdr, hl);
        st_file f;
        CHECK(st_parse(buf, 8 + hl, "wrap", &f, err) == CDAM_EFORMAT && strstr(err, "shape too large"), "wrapping shape: %s", err);
    }
    // From memory: the same model as from the file.
    {
        size_t len;
        uint8_t *b = read_all(TINY, &len);
        const uint8_t *bufs[1] = {b};
        const char *names[1] = {"tiny-in-memory"};
        vit_model *a = NULL, *c = NULL;
        CHECK(vit_model_load_mem(bufs, &len, names, 1, NULL, &a, err) == 0, "load_mem: %s", err);
        CHECK(vit_model_load(&TINY, 1, NULL, &c, err) == 0, "load: %s", err);
        CHECK(a && c && !memcmp(&a->cfg, &c->cfg, sizeof a->cfg) && a->arena_bytes == c->arena_bytes &&
                  !memcmp(a->arena, c->arena, a->arena_bytes) && !strcmp(a->labels[6], c->labels[6]),
              "load_mem gives the same model");
        vit_model_free(a);
        vit_model_free(c);
        b[8] = 'x';
        CHECK(vit_model_load_mem(bufs, &len, names, 1, NULL, &a, err) == CDAM_EFORMAT && a == NULL && strstr(err, "tiny-in-memory"),
              "load_mem names the buffer: %s", err);
        free(b);
    }

    // A weight that is NaN or infinite.
    {
        size_t len;
        uint8_t *b = read_all(TINY, &len);
        st_file f;
        CHECK(st_parse(b, len, "tiny", &f, err) == 0, "%s", err);
        const st_tensor *t = st_find(&f, "blocks.2.mlp.fc1.bias");
        size_t off = (size_t)(t->data - b) + 4 * 5;
        st_close(&f);
        float nan = NAN;
        memcpy(b + off, &nan, 4);
        char path[128];
        snprintf(path, sizeof path, "%s/nan.safetensors", tmpdir);
        write_all(path, b, len);
        expect_fail1("NaN weight", path, CDAM_EFORMAT, "'blocks.2.mlp.fc1.bias' has a non-finite value at element 5", "nan.safetensors");
        free(b);
    }

    // Two files: a tensor in both; an unexpected extra tensor; a missing head bias.
    const char *dup[] = {TINY, "tests/data/models/tiny_head.safetensors"};
    expect_fail("tensor in two files", dup, 2, CDAM_EFORMAT, "'head.weight' is in both", "tiny_head.safetensors");
    {
        // An extra file with one unknown tensor.
        const char hdr[] = "{\"foo.bar\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        uint8_t buf[256] = {0};
        uint64_t hl = sizeof hdr - 1;
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hl >> (8 * i));
        memcpy(buf + 8, hdr, hl);
        char path[128];
        snprintf(path, sizeof path, "%s/extra.safetensors", tmpdir);
        write_all(path, buf, 8 + hl + 8);
        const char *two[] = {TINY, path};
        expect_fail("unexpected tensor", two, 2, CDAM_EFORMAT, "unexpected tensor 'foo.bar'", "extra.safetensors");
        const char *bb[] = {"tests/data/models/tiny_backbone.safetensors"};
        CHECK(vit_model_load(bb, 1, NULL, &m, err) == 0 && m->cfg.C == 0 && m->head_w == NULL, "backbone alone (no head): %s", err);
        vit_model_free(m);
    }

    // Truncated at every length, and random byte flips: an error or a model, never a crash.
    {
        size_t len;
        uint8_t *b = read_all(TINY, &len);
        char path[128];
        snprintf(path, sizeof path, "%s/trunc.safetensors", tmpdir);
        const char *p = path;
        int refused = 0, tried = 0;
        for (size_t cut = 0; cut < len; cut += cut < 4000 ? 1 : 997) {
            write_all(path, b, cut);
            tried++;
            if (vit_model_load(&p, 1, NULL, &m, err) < 0) refused++;
            else vit_model_free(m);
        }
        CHECK(refused == tried, "every truncation refused (%d of %d)", refused, tried);
        write_all(path, b, 30000);
        expect_fail1("truncated in the data", path, CDAM_EFORMAT, "run past the end", "trunc.safetensors");
        srand(7);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
        int loaded = 0;
        for (int it = 0; it < 3000; it++) {
            uint8_t *c = malloc(len);
            memcpy(c, b, len);
            int flips = 1 + rand() % 4;
            for (int k = 0; k < flips; k++) c[rand() % (8 + hl)] = (uint8_t)rand();
            st_file f;
            if (st_parse(c, len, "fuzz", &f, err) == 0) st_close(&f);
            write_all(path, c, len);
            if (vit_model_load(&p, 1, NULL, &m, err) == 0) { loaded++; vit_model_free(m); }
            free(c);
        }
        printf("  3000 header mutations: %d still loaded, none crashed\n", loaded);
        CHECK(1, "mutations survived");
        free(b);
    }

    // The JSON parser on its own: strictness and depth limit.
    {
        const char *bad[] = {"", "{", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "\"\\x\"", "01", "1e", "nan", "{\"a\":1,\"a\":2}",
                             "\"\\ud800\"", "[1] x", "\"a\x01\""};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            json_value *v = json_parse(bad[i], strlen(bad[i]), err);
            CHECK(v == NULL, "json should reject %s", bad[i]);
            json_free(v);
        }
        char deep[200];
        memset(deep, '[', 100);
        memset(deep + 100, ']', 100);
        json_value *v = json_parse(deep, 200, err);
        CHECK(v == NULL && strstr(err, "deep"), "nesting limit: %s", err);
        const char *good = "{\"s\":\"a\\u00e9\\ud83d\\ude00\\n\",\"n\":[-12,3.5e2,9007199254740993],\"t\":true,\"z\":null}";
        v = json_parse(good, strlen(good), err);
        CHECK(v && !strcmp(json_get(v, "s")->str, "a\xc3\xa9\xf0\x9f\x98\x80\n"), "json unicode");
        CHECK(v && json_get(v, "n")->items[2].is_int && json_get(v, "n")->items[2].i == 9007199254740993LL, "exact int64");
        CHECK(v && json_get(v, "n")->items[1].num == 350.0 && !json_get(v, "n")->items[1].is_int, "float");
        json_free(v);
    }

    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_model");
}
