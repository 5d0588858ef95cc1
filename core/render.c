/* render.c - colour map, overlay, legend, panels and PNG output (see render.h).
 *
 * Third-party code compiled here (Debian's libstb-dev, /usr/include/stb/):
 *   stb_easy_font.h v1.1  - the bitmap font (it emits axis-aligned quads with integer
 *                           corners, which draw_text fills at an integer scale). It reads
 *                           charinfo[c - 32] and charinfo[c - 32 + 1], so only bytes
 *                           32..126 may reach it (others become '?'). Its only global,
 *                           the letter spacing, is never written here.
 *   stb_image_write.h v1.16 - PNG encoding to memory (stbi_write_png_to_func) with
 *                           STB_IMAGE_WRITE_STATIC, so its symbols stay private to this
 *                           file; its globals (compression level, flip flag) are only read.
 *                           Not STBI_WRITE_NO_STDIO: v1.16 then leaves the static
 *                           stbi_write_hdr_to_func declared but undefined (-Werror).
 */
#include "render.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wcast-align"
#include <stb/stb_easy_font.h>
// stb_image_write's deflate does not survive an allocation failure (it asserts, then
// writes through NULL): its allocations go through png_malloc & co. below, which keep
// every live block of the running encode on a per-thread list and, when an allocation
// fails, longjmp back to png_guarded (render_png_encode), which frees them all.
static void *png_malloc(size_t n);
static void *png_realloc(void *p, size_t n);
static void png_free(void *p);
#define STBIW_MALLOC(sz) png_malloc(sz)
#define STBIW_REALLOC(p, sz) png_realloc(p, sz)
#define STBIW_FREE(p) png_free(p)
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

static const uint8_t NEG[3] = {RENDER_NEG_R, RENDER_NEG_G, RENDER_NEG_B};
static const uint8_t POS[3] = {RENDER_POS_R, RENDER_POS_G, RENDER_POS_B};
static const uint8_t BG[3] = {28, 28, 28};          // legend and panel background
static const uint8_t FG[3] = {232, 232, 232};       // text
static const uint8_t FRAME[3] = {120, 120, 120};    // ramp frame

void render_opts_default(render_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->mode = RENDER_OVERLAY;
    o->opacity = 0.6f;
    o->upsample = RENDER_NEAREST;
    o->clip_lo = 0;
    o->clip_hi = 100;
    o->legend = 1;
    o->scale = 0;
    o->max_side = 0;
}

static inline uint8_t round_u8(float v) {
    if (!(v > 0)) return 0;  // also NaN
    if (v >= 255) return 255;
    return (uint8_t)(int)floorf(v + 0.5f);
}

static inline float clamp_t(float t) {
    if (!isfinite(t)) return 0;
    return t < -1 ? -1 : t > 1 ? 1 : t;
}

void render_colormap(float t, uint8_t rgb[3]) {
    t = clamp_t(t);
    const uint8_t *e = t < 0 ? NEG : POS;
    float a = fabsf(t);
    for (int c = 0; c < 3; c++) rgb[c] = round_u8(a * e[c]);
}

/* ---- scores: sanitising, percentiles, scale ------------------------------------- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// numpy's "linear" percentile of sorted v[0..n).
static float percentile_sorted(const float *v, long n, double p) {
    double pos = p / 100.0 * (double)(n - 1);
    if (pos < 0) pos = 0;
    if (pos > (double)(n - 1)) pos = (double)(n - 1);
    long i = (long)floor(pos);
    long j = i + 1 < n ? i + 1 : n - 1;
    double f = pos - (double)i, a = v[i], b = v[j];
    // numpy's _lerp: a + (b - a) * f, or b - (b - a) * (1 - f) for f >= 0.5 (exact at f = 1)
    double r = f >= 0.5 ? b - (b - a) * (1 - f) : a + (b - a) * f;
    return (float)r;
}

static float *sorted_copy(const float *x, long n) {
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return NULL;
    for (long i = 0; i < n; i++) v[i] = isfinite(x[i]) ? x[i] : 0.0f;
    qsort(v, (size_t)n, sizeof(float), cmp_float);
    return v;
}

int render_percentile(const float *x, long n, double p, float *out, char *err) {
    if (!x || !out || n < 1) return cdam_fail(err, CDAM_EINVAL, "percentile: empty input");
    if (!(p >= 0 && p <= 100)) return cdam_fail(err, CDAM_EINVAL, "percentile %g outside 0..100", p);
    float *v = sorted_copy(x, n);
    if (!v) return cdam_fail(err, CDAM_ENOMEM, "percentile: out of memory (%ld values)", n);
    *out = percentile_sorted(v, n, p);
    free(v);
    return 0;
}

static int check_clip(float lo, float hi, char *err) {
    if (!(lo >= 0 && lo <= 100 && hi >= 0 && hi <= 100 && lo <= hi))
        return cdam_fail(err, CDAM_EINVAL, "clip percentiles %g..%g: need 0 <= lo <= hi <= 100", lo, hi);
    return 0;
}

static int check_grid(const float *map, int gh, int gw, char *err) {
    if (!map) return cdam_fail(err, CDAM_EINVAL, "no map");
    if (gh < 1 || gw < 1) return cdam_fail(err, CDAM_EINVAL, "map grid %dx%d is empty", gh, gw);
    if (gh > RENDER_MAX_SIDE || gw > RENDER_MAX_SIDE)
        return cdam_fail(err, CDAM_ELIMIT, "map grid %dx%d over the limit %d", gh, gw, RENDER_MAX_SIDE);
    return 0;
}

// Sanitised, clipped copy of the map in *vals (malloc'ed) and its max |value|.
static int clipped_scores(const float *map, long n, float lo, float hi, float **vals, float *maxabs,
                          char *err) {
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return cdam_fail(err, CDAM_ENOMEM, "out of memory (map of %ld scores)", n);
    for (long i = 0; i < n; i++) v[i] = isfinite(map[i]) ? map[i] : 0.0f;
    if (lo > 0 || hi < 100) {
        float *s = sorted_copy(map, n);
        if (!s) { free(v); return cdam_fail(err, CDAM_ENOMEM, "out of memory (map of %ld scores)", n); }
        float plo = percentile_sorted(s, n, lo), phi = percentile_sorted(s, n, hi);
        free(s);
        for (long i = 0; i < n; i++) v[i] = v[i] < plo ? plo : v[i] > phi ? phi : v[i];
    }
    float m = 0;
    for (long i = 0; i < n; i++) m = fmaxf(m, fabsf(v[i]));
    *vals = v;
    *maxabs = m;
    return 0;
}

int render_auto_scale(const float *map, int gh, int gw, float clip_lo, float clip_hi, float *scale,
                      char *err) {
    int rc;
    if (!scale) return cdam_fail(err, CDAM_EINVAL, "no output");
    if ((rc = check_grid(map, gh, gw, err)) < 0 || (rc = check_clip(clip_lo, clip_hi, err)) < 0) return rc;
    float *v, m;
    if ((rc = clipped_scores(map, (long)gh * gw, clip_lo, clip_hi, &v, &m, err)) < 0) return rc;
    free(v);
    *scale = m;
    return 0;
}

// t = clamp(score / scale, -1, 1) for the whole grid (malloc'ed), per the pipeline in render.h.
static int normalised(const float *map, int gh, int gw, const render_opts *o, float **t, float *used,
                      char *err) {
    long n = (long)gh * gw;
    float *v, m;
    int rc = clipped_scores(map, n, o->clip_lo, o->clip_hi, &v, &m, err);
    if (rc < 0) return rc;
    float s = o->scale > 0 ? o->scale : m;
    for (long i = 0; i < n; i++) v[i] = s > 0 ? clamp_t(v[i] / s) : 0.0f;
    *t = v;
    *used = s;
    return 0;
}

/* ---- drawing primitives --------------------------------------------------------- */

static void fill_rect(img_rgb8 *im, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > im->w) x1 = im->w;
    if (y1 > im->h) y1 = im->h;
    for (int y = y0; y < y1; y++) {
        uint8_t *p = im->px + ((size_t)y * im->w + x0) * 3;
        for (int x = x0; x < x1; x++, p += 3) { p[0] = c[0]; p[1] = c[1]; p[2] = c[2]; }
    }
}

// Font scale for a strip of width w: clamp((w + 150) / 300, 1, 4).
static int font_scale(int w) {
    int s = (w + 150) / 300;
    return s < 1 ? 1 : s > 4 ? 4 : s;
}

// Printable ASCII copy of text (other bytes -> '?'), at most cap - 1 bytes.
static void sanitize(const char *text, char *buf, size_t cap) {
    size_t i = 0;
    for (; text && text[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        buf[i] = c >= 32 && c <= 126 ? (char)c : '?';
    }
    buf[i] = 0;
}

// Advance width in pixels of sanitised text at scale s, without the trailing letter gap.
static int text_width(const char *text, int s) {
    if (!*text) return 0;
    int w = stb_easy_font_width((char *)text);
    return (w > 1 ? w - 1 : w) * s;
}

// Glyph rows 0..9 (capitals 0..7, descenders to 9).
#define TEXT_H 9

// Draws sanitised text with its top-left corner at (x, y) in pixels, clipped to the box
// [cx0, cx1) x [cy0, cy1) (and the image).
static int draw_text(img_rgb8 *im, int x, int y, int s, const char *text, const uint8_t col[3],
                     int cx0, int cy0, int cx1, int cy1, char *err) {
    size_t len = strlen(text);
    if (!len) return 0;
    size_t bytes = (len + 1) * 16 * 64;  // <= 11 quads of 64 bytes per glyph
    float *vb = malloc(bytes);
    if (!vb) return cdam_fail(err, CDAM_ENOMEM, "out of memory (text)");
    int nq = stb_easy_font_print(0, 0, (char *)text, NULL, vb, (int)bytes);
    if (cx0 < 0) cx0 = 0;
    if (cy0 < 0) cy0 = 0;
    if (cx1 > im->w) cx1 = im->w;
    if (cy1 > im->h) cy1 = im->h;
    for (int q = 0; q < nq; q++) {
        const float *v = vb + q * 16;  // 4 vertices of (x, y, z, rgba) = 16 floats
        int x0 = x + (int)v[0] * s, y0 = y + (int)v[1] * s;
        int x1 = x + (int)v[8] * s, y1 = y + (int)v[9] * s;
        if (x0 < cx0) x0 = cx0;
        if (y0 < cy0) y0 = cy0;
        if (x1 > cx1) x1 = cx1;
        if (y1 > cy1) y1 = cy1;
        if (x0 < x1 && y0 < y1) fill_rect(im, x0, y0, x1, y1, col);
    }
    free(vb);
    return 0;
}

/* ---- legend --------------------------------------------------------------------- */

// Layout of the legend strip of width w (rows relative to the strip's top).
typedef struct {
    int s, words_y, bar_x, bar_w, bar_y, bar_h, ticks_y, h;
} legend_geom;

static legend_geom legend_geometry(int w) {
    legend_geom g;
    int s = font_scale(w);
    g.s = s;
    g.words_y = 4 * s;
    g.bar_y = g.words_y + (TEXT_H + 3) * s + 1;  // +1: the frame row above the bar
    g.bar_h = 8 * s;
    g.ticks_y = g.bar_y + g.bar_h + 1 + 3 * s;
    g.h = g.ticks_y + TEXT_H * s + 4 * s;
    int m = 6 * s + 1;  // margin incl. the frame column
    if (m > (w - 1) / 2) m = (w - 1) / 2;
    if (m < 0) m = 0;
    g.bar_x = m;
    g.bar_w = w - 2 * m;
    if (g.bar_w % 2 == 0) g.bar_w--;  // odd: a middle column at exactly t = 0
    if (g.bar_w < 1) g.bar_w = w > 0 ? 1 : 0;
    return g;
}

int render_legend_height(int w) { return legend_geometry(w < 1 ? 1 : w).h; }

static void fmt_scale(char *buf, size_t cap, float s, char sign) {
    char num[48];
    snprintf(num, sizeof num, "%.2g", (double)s);
    snprintf(buf, cap, "%c%s", sign, num);
}

// Draws the legend into the rows [y, y + height) of im, across columns [x, x + w).
static int draw_legend(img_rgb8 *im, int x, int y, int w, float scale, char *err) {
    legend_geom g = legend_geometry(w);
    int s = g.s, rc;
    fill_rect(im, x, y, x + w, y + g.h, BG);
    // ramp with a 1-pixel frame
    int bx = x + g.bar_x, by = y + g.bar_y;
    if (g.bar_x >= 1 && g.bar_x + g.bar_w + 1 <= w)  // the frame stays inside the strip
        fill_rect(im, bx - 1, by - 1, bx + g.bar_w + 1, by + g.bar_h + 1, FRAME);
    for (int i = 0; i < g.bar_w; i++) {
        float t = g.bar_w > 1 ? -1.0f + 2.0f * (float)i / (float)(g.bar_w - 1) : 0.0f;
        if (2 * i + 1 == g.bar_w) t = 0;  // exact middle
        uint8_t c[3];
        render_colormap(t, c);
        fill_rect(im, bx + i, by, bx + i + 1, by + g.bar_h, c);
    }
    int cx0 = x, cx1 = x + w, cy0 = y, cy1 = y + g.h;
    // words, if both fit with a gap
    const char *wl = "counter-evidence", *wr = "evidence";
    int wlw = text_width(wl, s), wrw = text_width(wr, s);
    if (wlw + wrw + 4 * s <= g.bar_w) {
        if ((rc = draw_text(im, bx, y + g.words_y, s, wl, NEG, cx0, cy0, cx1, cy1, err)) < 0) return rc;
        if ((rc = draw_text(im, bx + g.bar_w - wrw, y + g.words_y, s, wr, POS, cx0, cy0, cx1, cy1, err)) < 0)
            return rc;
    }
    // ticks: "-s" left, "0" centre, "+s" right; all three if they fit, else the ends, else none
    char tl[64], tr[64];
    fmt_scale(tl, sizeof tl, scale, '-');
    fmt_scale(tr, sizeof tr, scale, '+');
    int tlw = text_width(tl, s), trw = text_width(tr, s), t0w = text_width("0", s);
    int mid = bx + g.bar_w / 2;
    int ends = tlw + trw + 4 * s <= g.bar_w;
    int centre = ends && bx + tlw + 3 * s <= mid - t0w / 2 && mid - t0w / 2 + t0w + 3 * s <= bx + g.bar_w - trw;
    if (ends) {
        if ((rc = draw_text(im, bx, y + g.ticks_y, s, tl, FG, cx0, cy0, cx1, cy1, err)) < 0) return rc;
        if ((rc = draw_text(im, bx + g.bar_w - trw, y + g.ticks_y, s, tr, FG, cx0, cy0, cx1, cy1, err)) < 0)
            return rc;
    }
    if (centre && (rc = draw_text(im, mid - t0w / 2, y + g.ticks_y, s, "0", FG, cx0, cy0, cx1, cy1, err)) < 0)
        return rc;
    return 0;
}

static int alloc_img(img_rgb8 *out, int w, int h, char *err) {
    out->w = out->h = 0;
    out->px = NULL;
    if (w < 1 || h < 1) return cdam_fail(err, CDAM_EINVAL, "empty output %dx%d", w, h);
    if (w > RENDER_MAX_SIDE || h > RENDER_MAX_SIDE)
        return cdam_fail(err, CDAM_ELIMIT, "output %dx%d over the limit %dx%d", w, h, RENDER_MAX_SIDE,
                         RENDER_MAX_SIDE);
    out->px = malloc((size_t)w * h * 3);
    if (!out->px) return cdam_fail(err, CDAM_ENOMEM, "out of memory (output %dx%d)", w, h);
    out->w = w;
    out->h = h;
    return 0;
}

int render_legend(int w, float scale, img_rgb8 *out, char *err) {
    if (!out) return cdam_fail(err, CDAM_EINVAL, "no output");
    out->w = out->h = 0;
    out->px = NULL;
    if (w < 1) return cdam_fail(err, CDAM_EINVAL, "legend width %d", w);
    if (!(scale >= 0) || !isfinite(scale)) return cdam_fail(err, CDAM_EINVAL, "legend scale %g", scale);
    int rc = alloc_img(out, w, render_legend_height(w), err);
    if (rc < 0) return rc;
    if ((rc = draw_legend(out, 0, 0, w, scale, err)) < 0) img_free(out);
    return rc;
}

/* ---- map drawing ---------------------------------------------------------------- */

static int check_opts(const render_opts *o, char *err) {
    if (o->mode != RENDER_OVERLAY && o->mode != RENDER_MAP)
        return cdam_fail(err, CDAM_EINVAL, "unknown render mode %d", (int)o->mode);
    if (o->upsample != RENDER_NEAREST && o->upsample != RENDER_SMOOTH)
        return cdam_fail(err, CDAM_EINVAL, "unknown upsampling %d", (int)o->upsample);
    if (!(o->opacity >= 0 && o->opacity <= 1)) return cdam_fail(err, CDAM_EINVAL, "opacity %g outside 0..1", o->opacity);
    if (!(o->scale >= 0) || !isfinite(o->scale)) return cdam_fail(err, CDAM_EINVAL, "scale %g: need >= 0", o->scale);
    if (o->max_side < 0 || o->max_side > RENDER_MAX_SIDE)
        return cdam_fail(err, CDAM_EINVAL, "max_side %d outside 0..%d", o->max_side, RENDER_MAX_SIDE);
    return check_clip(o->clip_lo, o->clip_hi, err);
}

// The image to draw on: *im itself, or a shrunk copy in *tmp when max_side asks for it.
// need_px: the pixels are needed (not only the size).
static int working_image(const img_rgb8 *image, const render_opts *o, int need_px, img_rgb8 *tmp,
                         const img_rgb8 **use, char *err) {
    tmp->w = tmp->h = 0;
    tmp->px = NULL;
    if (!image || image->w < 1 || image->h < 1 || (need_px && !image->px))
        return cdam_fail(err, CDAM_EINVAL, "empty image");
    int w = image->w, h = image->h, big = w > h ? w : h;
    if (o->max_side > 0 && big > o->max_side) {
        int nw = (int)floor((double)w * o->max_side / big + 0.5), nh = (int)floor((double)h * o->max_side / big + 0.5);
        if (nw < 1) nw = 1;
        if (nh < 1) nh = 1;
        if (!need_px || !image->px) {  // size only
            tmp->w = nw;
            tmp->h = nh;
            *use = tmp;
            return 0;
        }
        float *f = malloc(sizeof(float) * 3 * (size_t)nw * nh);
        if (!f) return cdam_fail(err, CDAM_ENOMEM, "out of memory (resize to %dx%d)", nw, nh);
        int rc = img_resize_bilinear_aa(image, nh, nw, f, err);
        if (rc < 0) { free(f); return rc; }
        tmp->px = malloc((size_t)3 * nw * nh);
        if (!tmp->px) { free(f); return cdam_fail(err, CDAM_ENOMEM, "out of memory (resize to %dx%d)", nw, nh); }
        for (size_t i = 0; i < (size_t)3 * nw * nh; i++) tmp->px[i] = round_u8(f[i]);
        free(f);
        tmp->w = nw;
        tmp->h = nh;
        *use = tmp;
        return 0;
    }
    if (w > RENDER_MAX_SIDE || h > RENDER_MAX_SIDE)
        return cdam_fail(err, CDAM_ELIMIT, "image %dx%d over the limit %dx%d (see max_side)", w, h,
                         RENDER_MAX_SIDE, RENDER_MAX_SIDE);
    *use = image;
    return 0;
}

// Source index tables for upsampling n_in -> n_out: nearest (i0 only) or bilinear.
static void axis_tables(int n_in, int n_out, int smooth, int *i0, int *i1, float *wt) {
    for (int o = 0; o < n_out; o++) {
        if (!smooth) {
            i0[o] = (int)((long)o * n_in / n_out);
            continue;
        }
        float src = ((float)o + 0.5f) * ((float)n_in / (float)n_out) - 0.5f;
        if (src < 0) src = 0;
        int a = (int)src;
        if (a > n_in - 1) a = n_in - 1;
        i0[o] = a;
        i1[o] = a < n_in - 1 ? a + 1 : a;
        wt[o] = src - (float)a;
    }
}

// Draws the map's t values (gh, gw) over / instead of im into dst at (dx, dy), im's size.
static int draw_map(img_rgb8 *dst, int dx, int dy, const img_rgb8 *im, const float *t, int gh, int gw,
                    const render_opts *o, char *err) {
    int W = im->w, H = im->h, smooth = o->upsample == RENDER_SMOOTH;
    int *xi0 = malloc(sizeof(int) * (size_t)W * 2), *yi0 = malloc(sizeof(int) * (size_t)H * 2);
    float *xw = malloc(sizeof(float) * (size_t)W), *yw = malloc(sizeof(float) * (size_t)H);
    if (!xi0 || !yi0 || !xw || !yw) {
        free(xi0); free(yi0); free(xw); free(yw);
        return cdam_fail(err, CDAM_ENOMEM, "out of memory (upsampling tables)");
    }
    int *xi1 = xi0 + W, *yi1 = yi0 + H;
    axis_tables(gw, W, smooth, xi0, xi1, xw);
    axis_tables(gh, H, smooth, yi0, yi1, yw);
    for (int y = 0; y < H; y++) {
        const float *r0 = t + (size_t)yi0[y] * gw, *r1 = smooth ? t + (size_t)yi1[y] * gw : r0;
        float wy = smooth ? yw[y] : 0;
        uint8_t *p = dst->px + ((size_t)(dy + y) * dst->w + dx) * 3;
        const uint8_t *q = im->px ? im->px + (size_t)y * W * 3 : NULL;
        for (int x = 0; x < W; x++, p += 3) {
            float v;
            if (smooth) {
                float wx = xw[x];
                float top = r0[xi0[x]] + (r0[xi1[x]] - r0[xi0[x]]) * wx;
                float bot = r1[xi0[x]] + (r1[xi1[x]] - r1[xi0[x]]) * wx;
                v = top + (bot - top) * wy;
            } else {
                v = r0[xi0[x]];
            }
            v = clamp_t(v);
            if (o->mode == RENDER_MAP) {
                render_colormap(v, p);
            } else {
                const uint8_t *e = v < 0 ? NEG : POS;
                float a = o->opacity * fabsf(v);
                for (int c = 0; c < 3; c++) p[c] = round_u8((1.0f - a) * q[3 * x + c] + a * e[c]);
            }
        }
    }
    free(xi0); free(yi0); free(xw); free(yw);
    return 0;
}

int render_map(const float *map, int gh, int gw, const img_rgb8 *image, const render_opts *opts,
               img_rgb8 *out, float *scale_out, char *err) {
    if (!out) return cdam_fail(err, CDAM_EINVAL, "no output");
    out->w = out->h = 0;
    out->px = NULL;
    render_opts def;
    if (!opts) { render_opts_default(&def); opts = &def; }
    int rc;
    if ((rc = check_opts(opts, err)) < 0 || (rc = check_grid(map, gh, gw, err)) < 0) return rc;
    img_rgb8 tmp;
    const img_rgb8 *im;
    if ((rc = working_image(image, opts, opts->mode == RENDER_OVERLAY, &tmp, &im, err)) < 0) return rc;
    float *t = NULL, s = 0;
    int lh = opts->legend ? render_legend_height(im->w) : 0;
    if ((rc = normalised(map, gh, gw, opts, &t, &s, err)) < 0) goto done;
    if ((rc = alloc_img(out, im->w, im->h + lh, err)) < 0) goto done;
    if ((rc = draw_map(out, 0, 0, im, t, gh, gw, opts, err)) < 0) goto done;
    if (lh && (rc = draw_legend(out, 0, im->h, im->w, s, err)) < 0) goto done;
    if (scale_out) *scale_out = s;
done:
    if (rc < 0) img_free(out);
    free(t);
    img_free(&tmp);
    return rc;
}

/* ---- panel ---------------------------------------------------------------------- */

// Caption cut to fit width px at scale s ("..": marks a cut).
static void fit_caption(const char *caption, int width, int s, char *buf, size_t cap) {
    sanitize(caption, buf, cap);
    size_t len = strlen(buf);
    if (text_width(buf, s) <= width) return;
    while (len > 0) {
        len--;
        buf[len] = 0;
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s..", buf);
        if (text_width(tmp, s) <= width || len == 0) {
            snprintf(buf, cap, "%s", tmp);
            return;
        }
    }
}

int render_panel(const img_rgb8 *image, const render_tile *tiles, int n, int per_row,
                 const render_opts *opts, img_rgb8 *out, char *err) {
    if (!out) return cdam_fail(err, CDAM_EINVAL, "no output");
    out->w = out->h = 0;
    out->px = NULL;
    render_opts def;
    if (!opts) { render_opts_default(&def); opts = &def; }
    if (!tiles || n < 1 || n > 64) return cdam_fail(err, CDAM_EINVAL, "panel of %d tiles: need 1..64", n);
    int rc, need_px = opts->mode == RENDER_OVERLAY;  // plain tiles need pixels too
    if ((rc = check_opts(opts, err)) < 0) return rc;
    for (int i = 0; i < n; i++) {
        if (!tiles[i].map) need_px = 1;
        else if ((rc = check_grid(tiles[i].map, tiles[i].gh, tiles[i].gw, err)) < 0) return rc;
    }
    img_rgb8 tmp;
    const img_rgb8 *im;
    if ((rc = working_image(image, opts, need_px, &tmp, &im, err)) < 0) return rc;
    int W = im->w, H = im->h, cols = per_row > 0 ? per_row : 4;
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols, s = font_scale(W), gap = 6 * s;
    int cap_h = (TEXT_H + 6) * s, leg_h = opts->legend ? render_legend_height(W) : 0;
    int cell_h = cap_h + H + leg_h;
    long pw = (long)cols * W + (long)(cols + 1) * gap, ph = (long)rows * cell_h + (long)(rows + 1) * gap;
    float *t = NULL;
    if (pw > RENDER_MAX_SIDE || ph > RENDER_MAX_SIDE) {
        rc = cdam_fail(err, CDAM_ELIMIT, "panel %ldx%ld over the limit %dx%d (see max_side)", pw, ph,
                       RENDER_MAX_SIDE, RENDER_MAX_SIDE);
        goto done;
    }
    if ((rc = alloc_img(out, (int)pw, (int)ph, err)) < 0) goto done;
    fill_rect(out, 0, 0, out->w, out->h, BG);
    for (int i = 0; i < n; i++) {
        int x = gap + (i % cols) * (W + gap), y = gap + (i / cols) * (cell_h + gap);
        if (tiles[i].caption && tiles[i].caption[0]) {
            char c[512];
            fit_caption(tiles[i].caption, W, s, c, sizeof c);
            int cw = text_width(c, s);
            if ((rc = draw_text(out, x + (W - cw) / 2, y + 2 * s, s, c, FG, x, y, x + W, y + cap_h, err)) < 0)
                goto done;
        }
        y += cap_h;
        if (!tiles[i].map) {
            for (int r = 0; r < H; r++)
                memcpy(out->px + ((size_t)(y + r) * out->w + x) * 3, im->px + (size_t)r * W * 3, (size_t)W * 3);
            continue;
        }
        float sc;
        if ((rc = normalised(tiles[i].map, tiles[i].gh, tiles[i].gw, opts, &t, &sc, err)) < 0) goto done;
        if ((rc = draw_map(out, x, y, im, t, tiles[i].gh, tiles[i].gw, opts, err)) < 0) goto done;
        free(t);
        t = NULL;
        if (leg_h && (rc = draw_legend(out, x, y + H, W, sc, err)) < 0) goto done;
    }
done:
    if (rc < 0) img_free(out);
    free(t);
    img_free(&tmp);
    return rc;
}

/* ---- PNG ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
    int oom;
} mem_sink;

static void sink_write(void *ctx, void *data, int size) {
    mem_sink *m = ctx;
    if (m->oom || size <= 0) return;
    if (m->len + (size_t)size > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + (size_t)size) cap *= 2;
        uint8_t *b = realloc(m->buf, cap);
        if (!b) { m->oom = 1; return; }
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

typedef union png_blk {  // the header of each block (keeps malloc's alignment)
    struct {
        union png_blk *prev, *next;
    } l;
    max_align_t align;
} png_blk;

typedef struct {
    png_blk live;   // circular list of the blocks not yet freed
    jmp_buf out;
} png_arena;

static _Thread_local png_arena *png_cur;

static void png_link(png_blk *b) {
    png_blk *h = &png_cur->live;
    b->l.prev = h, b->l.next = h->l.next;
    h->l.next->l.prev = b, h->l.next = b;
}

static void png_unlink(png_blk *b) { b->l.prev->l.next = b->l.next, b->l.next->l.prev = b->l.prev; }

static void *png_malloc(size_t n) {
    png_blk *b = malloc(sizeof *b + n);
    if (!b) longjmp(png_cur->out, 1);
    png_link(b);
    return b + 1;
}

static void *png_realloc(void *p, size_t n) {
    if (!p) return png_malloc(n);
    png_blk *b = (png_blk *)p - 1;
    png_unlink(b);
    png_blk *q = realloc(b, sizeof *q + n);
    if (!q) {
        png_link(b);  // still live: freed with the rest
        longjmp(png_cur->out, 1);
    }
    png_link(q);
    return q + 1;
}

static void png_free(void *p) {
    if (!p) return;
    png_blk *b = (png_blk *)p - 1;
    png_unlink(b);
    free(b);
}

// stbi_write_png_to_func into m; 0 when it failed or memory ran out (nothing leaked).
static int png_guarded(const img_rgb8 *im, mem_sink *m) {
    png_arena a;
    a.live.l.prev = a.live.l.next = &a.live;
    png_cur = &a;
    volatile int ok = 0;
    if (setjmp(a.out) == 0) {
        ok = stbi_write_png_to_func(sink_write, m, im->w, im->h, 3, im->px, im->w * 3);
    } else {
        while (a.live.l.next != &a.live) png_free(a.live.l.next + 1);
        ok = 0;
    }
    png_cur = NULL;
    return ok;
}

int render_png_encode(const img_rgb8 *im, uint8_t **png, size_t *len, char *err) {
    if (!png || !len) return cdam_fail(err, CDAM_EINVAL, "no output");
    *png = NULL;
    *len = 0;
    if (!im || !im->px || im->w < 1 || im->h < 1) return cdam_fail(err, CDAM_EINVAL, "empty image");
    // stb_image_write counts bytes in int: the filtered rows ((3w + 1) * h) must fit
    if (im->w > 65535 || im->h > 65535 || ((long)im->w * 3 + 1) * im->h > INT_MAX / 2)
        return cdam_fail(err, CDAM_ELIMIT, "image %dx%d too large for PNG encoding", im->w, im->h);
    mem_sink m = {0};
    int ok = png_guarded(im, &m);
    if (!ok || m.oom || !m.len) {
        free(m.buf);
        return cdam_fail(err, CDAM_ENOMEM, "PNG encoding failed (out of memory)");
    }
    *png = m.buf;
    *len = m.len;
    return 0;
}

int render_png_write(const img_rgb8 *im, const char *path, char *err) {
    if (!path || !*path) return cdam_fail(err, CDAM_EINVAL, "no path");
    uint8_t *png;
    size_t len;
    int rc = render_png_encode(im, &png, &len, err);
    if (rc < 0) return rc;
    FILE *f = fopen(path, "wb");
    if (!f) {
        rc = cdam_fail(err, CDAM_EIO, "%s: %s", path, strerror(errno));
        free(png);
        return rc;
    }
    size_t wr = fwrite(png, 1, len, f);
    int e = errno;
    int cl = fclose(f);
    if (wr != len || cl != 0) {
        if (cl != 0 && wr == len) e = errno;
        rc = cdam_fail(err, CDAM_EIO, "%s: write failed: %s", path, strerror(e));
    }
    free(png);
    return rc;
}
