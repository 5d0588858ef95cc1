/* test_image.c - decoding of every accepted format, EXIF orientation, limits, hostile
 * and truncated data, and the PyTorch-exact antialiased resize / model input.
 * Data: the files in tests/data/images/ and tests/data/golden/{images,resize}.safetensors,
 * written by tests/ref/make_images.py. Runs from the repository root; the real photos in
 * ../shared/images/ are checked when that folder exists. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "image.h"
#include "safetensors.h"

#define IMG_DIR "tests/data/images/"
#define PHOTO_DIR "../shared/images/"

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint8_t *slurp_img(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, IMG_DIR "%s", name);
    uint8_t *b = slurp(path, len);
    CHECK(b != NULL, "cannot read %s", path);
    return b;
}

/* ---- decoding against the expected pixels --------------------------------------- */

// tol_mean < 0: exact equality. Otherwise mean/max absolute error bounds plus the mean
// colour of each quadrant's interior within 6 (catches flips and rotations).
typedef struct { const char *file, *fmt; double tol_mean; int tol_max; } expect_case;

static const expect_case cases[] = {
    {"rgb8.png", "png", -1, 0},          {"grey8.png", "png", -1, 0},
    {"greya8.png", "png", -1, 0},        {"rgba8.png", "png", -1, 0},
    {"rgb16.png", "png", -1, 0},         {"grey16.png", "png", -1, 0},
    {"palette.png", "png", -1, 0},       {"palette_trns.png", "png", -1, 0},
    {"rgb24.bmp", "bmp", -1, 0},         {"anim2.gif", "gif", -1, 0},
    {"lossless.webp", "webp", -1, 0},    {"rgba_lossless.webp", "webp", -1, 0},
    {"baseline.jpg", "jpeg", 3, 40},     {"progressive.jpg", "jpeg", 3, 40},
    {"grey.jpg", "jpeg", 3, 40},         {"lossy.webp", "webp", 8, 128},
    {"exif1.jpg", "jpeg", 3, 40},        {"exif2.jpg", "jpeg", 3, 40},
    {"exif3.jpg", "jpeg", 3, 40},        {"exif4.jpg", "jpeg", 3, 40},
    {"exif5.jpg", "jpeg", 3, 40},        {"exif6.jpg", "jpeg", 3, 40},
    {"exif7.jpg", "jpeg", 3, 40},        {"exif8.jpg", "jpeg", 3, 40},
    {"exif6_le.jpg", "jpeg", 3, 40},
};
#define NCASES (int)(sizeof cases / sizeof *cases)

static void quadrant_means(const uint8_t *px, int w, int x0, int x1, int y0, int y1, double m[3]) {
    m[0] = m[1] = m[2] = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            for (int c = 0; c < 3; c++) m[c] += px[(y * w + x) * 3 + c];
    for (int c = 0; c < 3; c++) m[c] /= (double)(x1 - x0) * (y1 - y0);
}

static void test_expected(const st_file *gold) {
    for (int i = 0; i < NCASES; i++) {
        const expect_case *k = &cases[i];
        size_t len;
        uint8_t *data = slurp_img(k->file, &len);
        const st_tensor *t = st_find(gold, k->file);
        CHECK(t && t->dtype == ST_U8 && t->ndim == 3 && t->shape[2] == 3, "%s: no U8 (h, w, 3) golden", k->file);
        if (!data || !t) { free(data); continue; }
        int eh = (int)t->shape[0], ew = (int)t->shape[1];
        const uint8_t *want = t->data;

        int pw, ph;
        const char *fmt = NULL;
        char err[CDAM_ERR_MAX] = "";
        CHECK(img_probe(data, len, &pw, &ph, &fmt, err) == 0 && pw == ew && ph == eh && fmt && !strcmp(fmt, k->fmt),
              "%s: probe %dx%d %s (%s), want %dx%d %s", k->file, pw, ph, fmt ? fmt : "-", err, ew, eh, k->fmt);
        CHECK(img_sniff(data, len) && !strcmp(img_sniff(data, len), k->fmt), "%s: sniff", k->file);

        img_rgb8 im;
        int rc = img_decode(data, len, 0, &im, err);
        CHECK(rc == 0, "%s: decode failed: %s", k->file, err);
        if (rc == 0) {
            CHECK(im.w == ew && im.h == eh, "%s: %dx%d, want %dx%d", k->file, im.w, im.h, ew, eh);
            if (im.w == ew && im.h == eh) {
                long n = (long)ew * eh * 3, sum = 0, worst = 0;
                for (long j = 0; j < n; j++) {
                    long d = labs((long)im.px[j] - want[j]);
                    sum += d;
                    if (d > worst) worst = d;
                }
                double mean = (double)sum / n;
                if (k->tol_mean < 0) {
                    CHECK(worst == 0, "%s: not pixel-exact (mean err %.3f, max %ld)", k->file, mean, worst);
                } else {
                    printf("  %-20s mean abs err %.2f, max %ld\n", k->file, mean, worst);
                    CHECK(mean < k->tol_mean && worst < k->tol_max, "%s: mean err %.3f (< %.0f), max %ld (< %d)",
                          k->file, mean, k->tol_mean, worst, k->tol_max);
                    // quadrants of the 32x24 pattern: split at x=16, y=16; 2-pixel margins
                    int q[4][4] = {{2, 14, 2, 14}, {18, 30, 2, 14}, {2, 14, 18, 22}, {18, 30, 18, 22}};
                    for (int j = 0; j < 4; j++) {
                        double g[3], e[3];
                        quadrant_means(im.px, ew, q[j][0], q[j][1], q[j][2], q[j][3], g);
                        quadrant_means(want, ew, q[j][0], q[j][1], q[j][2], q[j][3], e);
                        CHECK(fabs(g[0] - e[0]) < 6 && fabs(g[1] - e[1]) < 6 && fabs(g[2] - e[2]) < 6,
                              "%s: quadrant %d mean (%.0f %.0f %.0f), want (%.0f %.0f %.0f)", k->file, j, g[0], g[1],
                              g[2], e[0], e[1], e[2]);
                    }
                }
            }
            img_free(&im);
            CHECK(im.px == NULL && im.w == 0, "img_free clears");
            img_free(&im);  // twice is fine
        }
        free(data);
    }
}

/* ---- errors, limits -------------------------------------------------------------- */

static void expect_error(const char *what, int rc, int want_rc, const char *err, const char *want_msg) {
    CHECK(rc == want_rc, "%s: rc %d (%s), want %d", what, rc, err, want_rc);
    CHECK(strstr(err, want_msg) != NULL, "%s: message '%s' lacks '%s'", what, err, want_msg);
}

static void test_errors(void) {
    char err[CDAM_ERR_MAX];
    img_rgb8 im = {7, 7, (uint8_t *)&im};  // garbage: must come back zeroed
    int rc = img_decode((const uint8_t *)"", 0, 0, &im, err);
    expect_error("empty", rc, CDAM_EFORMAT, err, "not an image");
    CHECK(im.px == NULL && im.w == 0 && im.h == 0, "out zeroed on error");
    rc = img_decode(NULL, 0, 0, &im, err);
    expect_error("NULL", rc, CDAM_EFORMAT, err, "not an image");
    rc = img_decode((const uint8_t *)"\xFF", 1, 0, &im, err);
    expect_error("1 byte", rc, CDAM_EFORMAT, err, "not an image");
    rc = img_decode((const uint8_t *)"\xFF\xD8\xFF", 3, 0, &im, err);
    expect_error("JPEG magic only", rc, CDAM_EFORMAT, err, "truncated or corrupt JPEG");
    rc = img_decode((const uint8_t *)"BM", 2, 0, &im, err);
    expect_error("BM only", rc, CDAM_EFORMAT, err, "not an image");
    CHECK(img_decode((const uint8_t *)"x", 1, 0, &im, NULL) == CDAM_EFORMAT, "err may be NULL");
    CHECK(img_sniff(NULL, 0) == NULL && img_sniff((const uint8_t *)"GIF8", 4) == NULL, "sniff short");

    struct { const char *file; int rc; const char *msg; } bad[] = {
        {"not_an_image.txt", CDAM_EFORMAT, "not an image"},
        {"truncated.png", CDAM_EFORMAT, "truncated or corrupt PNG: "},
        {"truncated.jpg", CDAM_EFORMAT, "truncated or corrupt JPEG: "},
        {"anim2.webp", CDAM_EUNSUPPORTED, "WebP animation not supported"},
        {"huge.png", CDAM_ELIMIT, "image is 30000x20000, limit is 40000000 pixels"},
        {"huge.jpg", CDAM_ELIMIT, "image is 30000x20000, limit is 40000000 pixels"},
        {"huge.webp", CDAM_ELIMIT, "image is 16383x16383, limit is 40000000 pixels"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t len;
        uint8_t *d = slurp_img(bad[i].file, &len);
        if (!d) continue;
        err[0] = 0;
        rc = img_decode(d, len, 0, &im, err);
        expect_error(bad[i].file, rc, bad[i].rc, err, bad[i].msg);
        CHECK(im.px == NULL, "%s: no buffer on error", bad[i].file);
        printf("  %-20s -> %s\n", bad[i].file, err);
        free(d);
    }
    // The huge headers still probe (no pixels needed), animated WebP too.
    const char *probes[][2] = {{"huge.png", "30000x20000"}, {"huge.jpg", "30000x20000"},
                               {"huge.webp", "16383x16383"}, {"anim2.webp", "32x24"}};
    for (int i = 0; i < 4; i++) {
        size_t len;
        uint8_t *d = slurp_img(probes[i][0], &len);
        int w = 0, h = 0;
        char got[32] = "";
        if (d && img_probe(d, len, &w, &h, NULL, err) == 0) snprintf(got, sizeof got, "%dx%d", w, h);
        CHECK(!strcmp(got, probes[i][1]), "probe %s: '%s', want %s", probes[i][0], got, probes[i][1]);
        free(d);
    }

    // A small image against a small limit; the message gives displayed (EXIF) dims.
    const char *small[] = {"rgb8.png", "exif6.jpg", "lossless.webp", "anim2.gif", "rgb24.bmp"};
    for (int i = 0; i < 5; i++) {
        size_t len;
        uint8_t *d = slurp_img(small[i], &len);
        if (!d) continue;
        rc = img_decode(d, len, 767, &im, err);
        expect_error(small[i], rc, CDAM_ELIMIT, err, "image is 32x24, limit is 767 pixels");
        rc = img_decode(d, len, 768, &im, err);
        CHECK(rc == 0 && im.w == 32 && im.h == 24, "%s at exactly the limit: %s", small[i], rc ? err : "ok");
        img_free(&im);
        free(d);
    }

    // A JPEG whose header ends straight in EOI, without any scan (stb would return grey).
    size_t blen;
    uint8_t *b = slurp_img("baseline.jpg", &blen);
    if (b) {
        size_t sos = 0;
        while (sos + 1 < blen && !(b[sos] == 0xFF && b[sos + 1] == 0xDA)) sos++;
        b[sos + 1] = 0xD9;
        rc = img_decode(b, sos + 2, 0, &im, err);
        expect_error("JPEG without scan", rc, CDAM_EFORMAT, err, "truncated or corrupt JPEG: no scan");
        free(b);
    }

    rc = img_load_file("tests/data/images/no-such-file.png", 0, &im, err);
    expect_error("missing file", rc, CDAM_EIO, err, "no-such-file.png");
    rc = img_load_file("tests/data/images", 0, &im, err);
    expect_error("directory", rc, CDAM_EIO, err, "not a regular file");
    rc = img_load_file(IMG_DIR "rgb8.png", 0, &im, err);
    CHECK(rc == 0 && im.w == 32 && im.h == 24, "img_load_file: %s", rc ? err : "ok");
    img_free(&im);
}

/* ---- hostile EXIF ---------------------------------------------------------------- */

// JPEG = SOI + app1 + the rest of base (base without its SOI).
static uint8_t *with_app1(const uint8_t *base, size_t blen, const uint8_t *app1, size_t alen, size_t *len) {
    *len = blen + alen;
    uint8_t *b = malloc(*len);
    memcpy(b, base, 2);
    memcpy(b + 2, app1, alen);
    memcpy(b + 2 + alen, base + 2, blen - 2);
    return b;
}

// APP1 "Exif\0\0" + tiff (n bytes); declared segment length = n + 8 + extra.
static size_t make_app1(uint8_t *out, const uint8_t *tiff, size_t n, int extra) {
    size_t L = n + 8 + (size_t)extra;
    out[0] = 0xFF, out[1] = 0xE1, out[2] = (uint8_t)(L >> 8), out[3] = (uint8_t)L;
    memcpy(out + 4, "Exif\0\0", 6);
    memcpy(out + 10, tiff, n);
    return n + 10;
}

static void test_exif(void) {
    size_t mlen;
    uint8_t *le = slurp_img("exif6_le.jpg", &mlen);  // SOI, our II Exif APP1, PIL's JPEG
    if (!le) return;
    CHECK(mlen > 6 && le[2] == 0xFF && le[3] == 0xE1, "exif6_le.jpg starts with APP1");
    // The stored image (24x32) without the APP1: decodes unrotated.
    size_t seg = 2 + ((size_t)le[4] << 8 | le[5]), blen = mlen - seg;
    uint8_t *base = malloc(blen);
    memcpy(base, le, 2);
    memcpy(base + 2, le + 2 + seg, blen - 2);
    char err[CDAM_ERR_MAX];
    img_rgb8 ref6, im;
    CHECK(img_decode(le, mlen, 0, &ref6, err) == 0 && ref6.w == 32 && ref6.h == 24, "exif6_le: %s", err);
    CHECK(img_decode(base, blen, 0, &im, err) == 0 && im.w == 24 && im.h == 32, "no EXIF: stored 24x32");
    img_free(&im);

    // Little-endian IFD0 with a first dummy tag and the orientation: II, 42, IFD at 8, 2 entries.
    const uint8_t good[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 2, 0,
                            0x0F, 0x01, 2, 0, 4, 0, 0, 0, 'a', 'b', 'c', 0,   // Make = "abc"
                            0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,         // Orientation = 6
                            0, 0, 0, 0};
    struct { const char *what; int patch_at, patch_val, extra, cut, want_w; } v[] = {
        {"valid orientation 6", -1, 0, 0, 0, 32},
        {"orientation LONG", 24, 4, 0, 0, 32},
        {"orientation 0", 30, 0, 0, 0, 24},
        {"orientation 9", 30, 9, 0, 0, 24},
        {"orientation type UNDEFINED", 24, 7, 0, 0, 24},
        {"orientation count 2", 26, 2, 0, 0, 24},
        {"TIFF magic 43", 2, 43, 0, 0, 24},
        {"byte order XX", 0, 'X', 0, 0, 24},
        {"IFD offset beyond segment", 4, 200, 0, 0, 24},
        {"IFD offset 0xFF.. (high byte)", 7, 0xFF, 0, 0, 24},
        {"IFD offset 0", 4, 0, 0, 0, 24},
        {"entry count 255 (runs past)", 8, 0xFF, 0, 0, 32},  // entries inside the segment still count
        {"entry count 0xFF00, tag cut", 9, 0xFF, 0, 8, 24},
        {"entry count 1 (stops before it)", 8, 1, 0, 0, 24},
        {"segment cut inside the entry", -1, 0, 0, 8, 24},
        {"TIFF header only 6 bytes", -1, 0, 0, 32, 24},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        uint8_t tiff[sizeof good], app1[128];
        memcpy(tiff, good, sizeof good);
        if (v[i].patch_at >= 0) tiff[v[i].patch_at] = (uint8_t)v[i].patch_val;
        size_t alen = make_app1(app1, tiff, sizeof good - (size_t)v[i].cut, v[i].extra), len;
        uint8_t *j = with_app1(base, blen, app1, alen, &len);
        int rc = img_decode(j, len, 0, &im, err);
        CHECK(rc == 0 && im.w == v[i].want_w, "EXIF %s: rc %d (%s), w %d, want %d", v[i].what, rc, rc ? err : "",
              im.w, v[i].want_w);
        if (rc == 0 && v[i].want_w == 32)
            CHECK(!memcmp(im.px, ref6.px, 32 * 24 * 3), "EXIF %s: same pixels as exif6_le", v[i].what);
        int w = 0, h = 0;
        CHECK(img_probe(j, len, &w, &h, NULL, err) == 0 && w == v[i].want_w, "probe EXIF %s", v[i].what);
        img_free(&im);
        free(j);
    }
    // An APP1 whose length runs past the end of the file: an error or an image, no crash.
    {
        uint8_t app1[128];
        size_t alen = make_app1(app1, good, sizeof good, 5000), len;
        uint8_t *j = with_app1(base, blen, app1, alen, &len);
        int rc = img_decode(j, len, 0, &im, err);
        CHECK(rc == 0 || rc == CDAM_EFORMAT, "APP1 past the end: rc %d", rc);
        img_free(&im);
        free(j);
    }
    // Only the first Exif APP1 counts: orientation 3 then 6 -> rotated 180, 24x32.
    {
        uint8_t t3[sizeof good], a3[128], a6[128];
        memcpy(t3, good, sizeof good);
        t3[30] = 3;
        size_t l3 = make_app1(a3, t3, sizeof good, 0), l6 = make_app1(a6, good, sizeof good, 0), len, len2;
        uint8_t *j1 = with_app1(base, blen, a6, l6, &len);
        uint8_t *j2 = with_app1(j1, len, a3, l3, &len2);  // SOI, a3, a6, rest
        int rc = img_decode(j2, len2, 0, &im, err);
        CHECK(rc == 0 && im.w == 24 && im.h == 32, "two Exif segments: first wins (rc %d, %dx%d)", rc, im.w, im.h);
        img_free(&im);
        free(j1);
        free(j2);
    }
    img_free(&ref6);
    free(base);
    free(le);
}

/* ---- stb_image 2.27 DHT overflow guard ------------------------------------------- */

// A DHT table whose 16 code counts add up to more than 256 overflows stb 2.27's tables;
// image.c refuses such files before stb parses them (before SOS and between scans).
static void test_dht_guard(void) {
    const char *files[] = {"baseline.jpg", "progressive.jpg"};
    char err[CDAM_ERR_MAX];
    for (int f = 0; f < 2; f++) {
        size_t len;
        uint8_t *d = slurp_img(files[f], &len);
        if (!d) continue;
        size_t first = 0, last = 0, sos = 0;
        for (size_t i = 0; i + 1 < len; i++) {
            if (d[i] == 0xFF && d[i + 1] == 0xC4) last = i, first = first ? first : i;
            if (d[i] == 0xFF && d[i + 1] == 0xDA && !sos) sos = i;
        }
        size_t at[2] = {first, last};
        for (int k = 0; k < 2; k++) {
            if (f == 0 && k == 1) continue;  // baseline: all DHTs precede the scan
            if (k == 1) CHECK(last > sos, "%s has a DHT after its first SOS", files[f]);
            uint8_t *m = malloc(len);
            memcpy(m, d, len);
            memset(m + at[k] + 5, 0xFF, 16);  // counts of the first table: 16 * 255 codes
            img_rgb8 im;
            int rc = img_decode(m, len, 0, &im, err);
            expect_error(files[f], rc, CDAM_EFORMAT, err, "bad Huffman table");
            CHECK(img_probe(m, len, NULL, NULL, NULL, err) == CDAM_EFORMAT, "%s: probe with a bad %s DHT",
                  files[f], k ? "late" : "early");
            free(m);
        }
        free(d);
    }
    // The same bytes inside an APP segment (skipped by stb) are not a DHT: still decodes.
    size_t blen, len;
    uint8_t *base = slurp_img("baseline.jpg", &blen);
    if (!base) return;
    uint8_t app[64] = {0xFF, 0xE5, 0, 62, 0xFF, 0xC4, 0, 40, 0x00};
    memset(app + 9, 0xFF, 16);
    uint8_t *j = with_app1(base, blen, app, sizeof app, &len);
    img_rgb8 im;
    int rc = img_decode(j, len, 0, &im, err);
    CHECK(rc == 0 && im.w == 32, "FF C4 inside an APP5 segment is ignored: %s", rc ? err : "ok");
    img_free(&im);
    // An Exif APP1 whose length runs past a file cut right after it: no over-read.
    uint8_t cut[] = {0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 'E', 'x'};
    CHECK(img_decode(cut, sizeof cut, 0, &im, err) == CDAM_EFORMAT, "APP1 past the end of a cut JPEG");
    free(j);
    free(base);
}

/* ---- PNG with empty IDAT chunks (stb 2.27: NULL + 0, found by tests/fuzz) ------------ */

// Empty IDAT chunks before and between the data decode exactly as the file without them;
// an empty IDAT alone is still a corrupt PNG.
static void test_empty_idat(void) {
    const char *files[] = {"rgb8.png", "rgb16.png", "palette_trns.png"};
    static const uint8_t empty[12] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
    char err[CDAM_ERR_MAX];
    for (int f = 0; f < 3; f++) {
        size_t len;
        uint8_t *d = slurp_img(files[f], &len);
        if (!d) continue;
        uint8_t *idat = memmem(d, len, "IDAT", 4);
        CHECK(idat != NULL, "%s has an IDAT", files[f]);
        if (!idat) { free(d); continue; }
        size_t at = (size_t)(idat - 4 - d);  // the first IDAT's length field
        uint8_t *m = malloc(len + 36);
        memcpy(m, d, at);
        memcpy(m + at, empty, 12);
        memcpy(m + at + 12, empty, 12);
        memcpy(m + at + 24, d + at, len - at);
        size_t iend = len + 24 - 12;  // an empty IDAT before IEND too
        memmove(m + iend + 12, m + iend, 12);
        memcpy(m + iend, empty, 12);
        img_rgb8 a, b;
        int ra = img_decode(d, len, 0, &a, err), rb = img_decode(m, len + 36, 0, &b, err);
        CHECK(ra == 0 && rb == 0 && a.w == b.w && a.h == b.h && !memcmp(a.px, b.px, (size_t)a.w * a.h * 3),
              "%s with empty IDAT chunks decodes the same: %s", files[f], rb ? err : "ok");
        img_free(&a);
        img_free(&b);
        // only empty IDATs: no image data at all
        uint8_t *e = malloc(33 + 12 + 12);
        memcpy(e, d, 33);  // signature + IHDR
        memcpy(e + 33, empty, 12);
        memcpy(e + 45, d + len - 12, 12);  // IEND
        CHECK(img_decode(e, 57, 0, &a, err) == CDAM_EFORMAT && a.px == NULL, "%s: empty IDAT only: %s", files[f], err);
        free(e);
        free(m);
        free(d);
    }
}

/* ---- truncation and mutation: never crash ---------------------------------------- */

static void test_robustness(void) {
    const char *files[] = {"rgb8.png", "rgb16.png", "palette_trns.png", "greya8.png", "rgb24.bmp", "anim2.gif",
                           "baseline.jpg", "progressive.jpg", "exif6.jpg", "exif6_le.jpg", "grey.jpg",
                           "lossless.webp", "lossy.webp", "rgba_lossless.webp", "anim2.webp", "huge.png", "huge.jpg",
                           "huge.webp"};
    char err[CDAM_ERR_MAX];
    uint32_t seed = 12345;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        size_t len;
        uint8_t *d = slurp_img(files[f], &len);
        if (!d) continue;
        // Every strict prefix either fails or decodes to exactly the full file's image (a GIF
        // cut after its first frame, a PNG without its IEND CRC); never to a partial image.
        img_rgb8 full;
        if (img_decode(d, len, 1 << 16, &full, err) < 0) full.px = NULL;
        long ok = 0, failed = 0, insane = 0, partial = 0;
        for (size_t n = 0; n < len; n++) {
            uint8_t *cut = malloc(n ? n : 1);  // exact-size copy so ASAN sees any over-read
            memcpy(cut, d, n);
            img_rgb8 im;
            int rc = img_decode(cut, n, 1 << 16, &im, err);
            if (rc == 0) {
                ok++;
                if (im.w <= 0 || im.h <= 0 || !im.px) insane++;
                else if (!full.px || im.w != full.w || im.h != full.h || memcmp(im.px, full.px, (size_t)im.w * im.h * 3))
                    partial++;
            } else {
                failed++;
                if (rc != CDAM_EFORMAT && rc != CDAM_ELIMIT && rc != CDAM_EUNSUPPORTED) insane++;
            }
            int w, h;
            img_probe(cut, n, &w, &h, NULL, err);
            img_free(&im);
            free(cut);
        }
        CHECK(insane == 0, "%s: %ld insane results over its truncations", files[f], insane);
        CHECK(partial == 0, "%s: %ld truncated prefixes decoded to a partial image", files[f], partial);
        img_free(&full);
        // Mutations: 1 to 4 random bytes changed, 300 times.
        long mok = 0;
        uint8_t *m = malloc(len);
        for (int it = 0; it < 300; it++) {
            memcpy(m, d, len);
            int k = 1 + it % 4;
            for (int j = 0; j < k; j++) {
                seed = seed * 1664525u + 1013904223u;
                m[(seed >> 8) % len] = (uint8_t)(seed >> 24);
            }
            img_rgb8 im;
            if (img_decode(m, len, 1 << 16, &im, err) == 0) {
                mok++;
                CHECK(im.w > 0 && im.h > 0 && im.px, "%s mutation %d: bad image", files[f], it);
            }
            img_free(&im);
        }
        free(m);
        printf("  %-20s %5zu prefixes: %ld decoded, %ld refused; 300 mutations: %ld decoded\n", files[f], len, ok,
               failed, mok);
        free(d);
    }
}

/* ---- resize and model input ------------------------------------------------------ */

static void test_resize(void) {
    st_file g;
    char err[CDAM_ERR_MAX];
    if (st_open("tests/data/golden/resize.safetensors", &g, err) < 0) {
        CHECK(0, "%s", err);
        return;
    }
    const st_tensor *s = st_find(&g, "src");
    CHECK(s && s->dtype == ST_U8 && s->ndim == 3, "resize golden: src");
    if (!s) { st_close(&g); return; }
    img_rgb8 src = {(int)s->shape[1], (int)s->shape[0], malloc(s->nbytes)};
    memcpy(src.px, s->data, s->nbytes);
    int bit_exact = 0, total = 0;
    for (int i = 0; i < g.ntensors; i++) {
        const st_tensor *t = &g.t[i];
        int oh, ow;
        if (sscanf(t->name, "out_%dx%d", &oh, &ow) != 2) continue;
        long n = st_numel(t);
        float *want = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
        st_to_f32(t, want);
        int rc = img_resize_bilinear_aa(&src, oh, ow, got, err);
        CHECK(rc == 0, "resize to %dx%d: %s", oh, ow, err);
        char what[64];
        snprintf(what, sizeof what, "resize %dx%d -> %dx%d", src.h, src.w, oh, ow);
        if (rc == 0) check_close(what, got, want, n, 1e-5);
        bit_exact += rc == 0 && !memcmp(got, want, sizeof(float) * n);
        total++;
        free(want);
        free(got);
    }
    CHECK(total >= 6, "resize golden has %d outputs", total);
    printf("  resize: %d of %d outputs bit-identical to torch\n", bit_exact, total);

    // Identity: equal size is a plain conversion.
    float *id = malloc(sizeof(float) * src.w * src.h * 3);
    CHECK(img_resize_bilinear_aa(&src, src.h, src.w, id, err) == 0, "identity resize");
    int same = 1;
    for (long j = 0; j < (long)src.w * src.h * 3; j++) same &= id[j] == (float)src.px[j];
    CHECK(same, "identity resize returns the pixels");
    free(id);
    CHECK(img_resize_bilinear_aa(&src, 0, 5, (float[1]){0}, err) == CDAM_EINVAL, "resize to 0 rows: EINVAL");
    CHECK(img_resize_bilinear_aa(NULL, 5, 5, (float[75]){0}, err) == CDAM_EINVAL, "resize NULL: EINVAL");

    // Model input: resized (16x24) and not resampled (37x53, exact).
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const char *names[] = {"input_16x24", "input_37x53"};
    for (int i = 0; i < 2; i++) {
        const st_tensor *t = st_find(&g, names[i]);
        CHECK(t && t->ndim == 3 && t->shape[0] == 3, "golden %s", names[i]);
        if (!t) continue;
        int H = (int)t->shape[1], W = (int)t->shape[2];
        long n = st_numel(t);
        float *want = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
        st_to_f32(t, want);
        int rc = img_to_input(&src, H, W, mean, std, got, err);
        CHECK(rc == 0, "img_to_input %dx%d: %s", H, W, err);
        char what[64];
        snprintf(what, sizeof what, "img_to_input %dx%d", H, W);
        if (rc == 0) check_close(what, got, want, n, 1e-5);
        if (H == src.h && W == src.w) CHECK(!memcmp(got, want, sizeof(float) * n), "no-resample input is bit-exact");
        free(want);
        free(got);
    }
    CHECK(img_to_input(&src, 0, 3, mean, std, (float[1]){0}, err) == CDAM_EINVAL, "img_to_input H=0: EINVAL");
    img_free(&src);
    st_close(&g);
}

/* ---- the real photos ------------------------------------------------------------- */

static void test_photos(void) {
    struct stat st;
    if (stat(PHOTO_DIR, &st) != 0) {
        printf("  note: %s absent, real-photo checks skipped\n", PHOTO_DIR);
        return;
    }
    // Sizes from ../shared/images/README.md (horn1, horn2, violin1, violin2 measured with
    // PIL: violin1's EXIF orientation is 1, so it displays as stored). Channel means from
    // PIL (libjpeg / libwebp) to within 1.5: stb's IDCT and upsampling differ a little.
    struct { const char *file, *fmt; int w, h; double mean[3]; } photos[] = {
        {"elephant-zebra.jpg", "jpeg", 1000, 667, {164.87, 165.25, 181.03}},
        {"balls.jpg", "jpeg", 1024, 576, {152.85, 131.97, 103.66}},
        {"clocks.jpg", "jpeg", 2048, 1365, {169.15, 146.77, 140.13}},
        {"horn.jpg", "jpeg", 1280, 720, {121.86, 89.33, 63.44}},
        {"hornviolin.jpg", "jpeg", 1280, 720, {155.58, 117.20, 90.97}},
        {"horn1.jpg", "jpeg", 600, 600, {241.68, 238.30, 228.03}},
        {"horn2.jpg", "jpeg", 1200, 770, {229.99, 217.00, 190.06}},
        {"violin1.jpg", "jpeg", 635, 1024, {78.69, 61.37, 44.70}},
        {"violin2.jpg", "webp", 1066, 1600, {198.99, 175.58, 151.35}},  // WebP named .jpg
    };
    for (size_t i = 0; i < sizeof photos / sizeof *photos; i++) {
        char path[256], err[CDAM_ERR_MAX];
        snprintf(path, sizeof path, PHOTO_DIR "%s", photos[i].file);
        size_t len;
        uint8_t *d = slurp(path, &len);
        if (!d) {
            printf("  note: %s missing, skipped\n", path);
            continue;
        }
        const char *fmt = img_sniff(d, len);
        CHECK(fmt && !strcmp(fmt, photos[i].fmt), "%s: format %s, want %s", photos[i].file, fmt ? fmt : "-",
              photos[i].fmt);
        img_rgb8 im;
        int rc = img_decode(d, len, 0, &im, err);
        CHECK(rc == 0 && im.w == photos[i].w && im.h == photos[i].h, "%s: rc %d (%s) %dx%d, want %dx%d",
              photos[i].file, rc, rc ? err : "", im.w, im.h, photos[i].w, photos[i].h);
        if (rc == 0) {
            double m[3];
            quadrant_means(im.px, im.w, 0, im.w, 0, im.h, m);
            CHECK(fabs(m[0] - photos[i].mean[0]) < 1.5 && fabs(m[1] - photos[i].mean[1]) < 1.5 &&
                      fabs(m[2] - photos[i].mean[2]) < 1.5,
                  "%s: channel means %.2f %.2f %.2f, PIL %.2f %.2f %.2f", photos[i].file, m[0], m[1], m[2],
                  photos[i].mean[0], photos[i].mean[1], photos[i].mean[2]);
            printf("  %-20s %-4s %4dx%-4d means %.2f %.2f %.2f\n", photos[i].file, fmt, im.w, im.h, m[0], m[1], m[2]);
        }
        img_free(&im);
        free(d);
    }
}

int main(void) {
    st_file gold;
    char err[CDAM_ERR_MAX];
    if (st_open("tests/data/golden/images.safetensors", &gold, err) == 0) {
        test_expected(&gold);
        st_close(&gold);
    } else {
        CHECK(0, "%s", err);
    }
    test_errors();
    test_exif();
    test_dht_guard();
    test_empty_idat();
    test_robustness();
    test_resize();
    test_photos();
    return check_summary("test_image");
}
