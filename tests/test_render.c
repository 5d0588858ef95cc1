/* test_render.c - colour map, upsampling, overlay, percentile clipping, legend, panels,
 * PNG round trip, hostile scores and bad arguments of core/render.c.
 *
 * With CDAM_RENDER_EXAMPLES=DIR in the environment it also writes two example images,
 * DIR/render_example.png (an overlay with legend) and DIR/render_panel_example.png (a
 * panel), over ../shared/images/elephant-zebra.jpg when that exists, else over a generated
 * gradient, for looking at by eye. Runs from the repository root. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "image.h"
#include "render.h"

static const uint8_t NEG[3] = {RENDER_NEG_R, RENDER_NEG_G, RENDER_NEG_B};
static const uint8_t POS[3] = {RENDER_POS_R, RENDER_POS_G, RENDER_POS_B};
static const uint8_t BLACK[3] = {0, 0, 0};

static int rgb_eq(const uint8_t *a, const uint8_t *b) { return a[0] == b[0] && a[1] == b[1] && a[2] == b[2]; }

static const uint8_t *pix(const img_rgb8 *im, int x, int y) { return im->px + ((size_t)y * im->w + x) * 3; }

// A deterministic test image: a gradient with some texture.
static img_rgb8 make_image(int w, int h) {
    img_rgb8 im = {w, h, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            p[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            p[2] = (uint8_t)((x * 7 + y * 13) % 256);
        }
    return im;
}

static int font_scale(int w) {  // as documented in render.h
    int s = (w + 150) / 300;
    return s < 1 ? 1 : s > 4 ? 4 : s;
}

/* ---- colour map ------------------------------------------------------------------ */

static void test_colormap(void) {
    struct { float t; uint8_t want[3]; } cases[] = {
        {-1.0f, {40, 150, 255}},  {0.0f, {0, 0, 0}},      {1.0f, {255, 140, 0}},
        {0.5f, {128, 70, 0}},     {-0.5f, {20, 75, 128}}, // halves round up: 127.5 -> 128
        {0.25f, {64, 35, 0}},     {-0.25f, {10, 38, 64}}, // 63.75 -> 64, 37.5 -> 38
        {0.75f, {191, 105, 0}},   {-0.75f, {30, 113, 191}},
        {2.0f, {255, 140, 0}},    {-3.0f, {40, 150, 255}}, // clamped
        {NAN, {0, 0, 0}},         {INFINITY, {0, 0, 0}},   {-INFINITY, {0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t c[3];
        render_colormap(cases[i].t, c);
        CHECK(rgb_eq(c, cases[i].want), "colormap(%g) = (%d,%d,%d), want (%d,%d,%d)", cases[i].t, c[0], c[1],
              c[2], cases[i].want[0], cases[i].want[1], cases[i].want[2]);
    }
    uint8_t a[3], b[3];
    render_colormap(-1, a);
    render_colormap(1, b);
    CHECK(rgb_eq(a, NEG) && rgb_eq(b, POS), "endpoints are RENDER_NEG / RENDER_POS");
    render_opts o;
    render_opts_default(&o);
    CHECK(o.mode == RENDER_OVERLAY && o.opacity == 0.6f && o.upsample == RENDER_NEAREST && o.clip_lo == 0 &&
              o.clip_hi == 100 && o.legend == 1 && o.scale == 0 && o.max_side == 0,
          "defaults");
}

/* ---- upsampling ------------------------------------------------------------------ */

static render_opts map_opts(render_upsample up) {
    render_opts o;
    render_opts_default(&o);
    o.mode = RENDER_MAP;
    o.legend = 0;
    o.scale = 1;  // t = score
    o.upsample = up;
    return o;
}

static void check_nearest(int gh, int gw, int W, int H) {
    float map[64];
    for (int i = 0; i < gh * gw; i++) map[i] = -1.0f + 2.0f * (float)i / (float)(gh * gw - 1);
    img_rgb8 im = make_image(W, H), out;
    render_opts o = map_opts(RENDER_NEAREST);
    char err[CDAM_ERR_MAX];
    int rc = render_map(map, gh, gw, &im, &o, &out, NULL, err);
    CHECK(rc == 0, "nearest %dx%d -> %dx%d: %s", gh, gw, W, H, err);
    if (rc == 0) {
        CHECK(out.w == W && out.h == H, "nearest output size %dx%d", out.w, out.h);
        int bad = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t c[3];
                render_colormap(map[(y * gh / H) * gw + x * gw / W], c);
                bad += !rgb_eq(pix(&out, x, y), c);
            }
        CHECK(bad == 0, "nearest %dx%d -> %dx%d: %d pixels outside their patch's block", gh, gw, W, H, bad);
    }
    img_free(&out);
    img_free(&im);
}

static void test_nearest(void) {
    check_nearest(2, 2, 8, 8);    // exact: 4x4 squares
    check_nearest(3, 4, 10, 7);   // not multiples
    check_nearest(5, 3, 13, 17);
    check_nearest(4, 4, 3, 3);    // output smaller than the grid
    // a 2x2 grid in an 8x8 image: the block of patch (0,1) is exactly x 4..7, y 0..3
    float map[4] = {0, 1, -1, 0.5f};
    img_rgb8 im = make_image(8, 8), out;
    render_opts o = map_opts(RENDER_NEAREST);
    char err[CDAM_ERR_MAX];
    if (render_map(map, 2, 2, &im, &o, &out, NULL, err) == 0) {
        CHECK(rgb_eq(pix(&out, 3, 3), BLACK) && rgb_eq(pix(&out, 4, 0), POS) && rgb_eq(pix(&out, 7, 3), POS) &&
                  rgb_eq(pix(&out, 4, 4), (uint8_t[]){128, 70, 0}) && rgb_eq(pix(&out, 0, 4), NEG),
              "nearest 2x2 -> 8x8 block corners");
        img_free(&out);
    }
    img_free(&im);
}

static void test_smooth(void) {
    char err[CDAM_ERR_MAX];
    // 2x2 -> 4x4, align_corners=False: src = (o + 0.5) * 0.5 - 0.5 -> -0.25 (clamped 0), 0.25,
    // 0.75, 1.25 (i0 = 1, i1 = 1). So rows/cols use (i0, i1, w) = (0,1,0) (0,1,.25) (0,1,.75) (1,1,.25).
    float map[4] = {-1, 1, 0.5f, 0};
    img_rgb8 im = make_image(4, 4), out;
    render_opts o = map_opts(RENDER_SMOOTH);
    int rc = render_map(map, 2, 2, &im, &o, &out, NULL, err);
    CHECK(rc == 0, "smooth 2x2 -> 4x4: %s", err);
    if (rc == 0) {
        // (x=1, y=1): top = -1 + 2*.25 = -0.5, bottom = 0.5 - 0.5*.25 = 0.375,
        //   t = -0.5 + 0.875*.25 = -0.28125 -> round(0.28125 * (40,150,255)) = (11, 42, 72)
        CHECK(rgb_eq(pix(&out, 1, 1), (uint8_t[]){11, 42, 72}), "smooth (1,1) = (%d,%d,%d)", pix(&out, 1, 1)[0],
              pix(&out, 1, 1)[1], pix(&out, 1, 1)[2]);
        // (x=2, y=0): t = -1 + 2*.75 = 0.5 -> (128, 70, 0)
        CHECK(rgb_eq(pix(&out, 2, 0), (uint8_t[]){128, 70, 0}), "smooth (2,0)");
        // (x=0, y=2): t = -1 + 1.5*.75 = 0.125 -> round(0.125 * (255,140,0)) = (32, 18, 0)
        CHECK(rgb_eq(pix(&out, 0, 2), (uint8_t[]){32, 18, 0}), "smooth (0,2)");
        // (x=3, y=3): bottom row only, x src 1.25 -> column 1: t = 0 -> black
        CHECK(rgb_eq(pix(&out, 3, 3), BLACK), "smooth (3,3)");
        // (x=0, y=0): the corner patch itself
        CHECK(rgb_eq(pix(&out, 0, 0), NEG), "smooth (0,0)");
        img_free(&out);
    }
    img_free(&im);

    // continuity: 2x2 -> 64x64; neighbouring pixels differ little when smooth and a lot when nearest
    im = make_image(64, 64);
    int worst[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        o = map_opts(k ? RENDER_SMOOTH : RENDER_NEAREST);
        if (render_map(map, 2, 2, &im, &o, &out, NULL, err) != 0) { CHECK(0, "%s", err); continue; }
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                for (int c = 0; c < 3; c++) {
                    int v = pix(&out, x, y)[c];
                    if (x + 1 < 64 && abs(v - pix(&out, x + 1, y)[c]) > worst[k]) worst[k] = abs(v - pix(&out, x + 1, y)[c]);
                    if (y + 1 < 64 && abs(v - pix(&out, x, y + 1)[c]) > worst[k]) worst[k] = abs(v - pix(&out, x, y + 1)[c]);
                }
        img_free(&out);
    }
    // t moves by at most 2/32 per pixel -> at most ~0.0625 * 255 = 16 per channel
    CHECK(worst[1] <= 17, "smooth upsampling jumps by %d between neighbours", worst[1]);
    CHECK(worst[0] >= 200, "nearest upsampling has block edges (%d)", worst[0]);
    img_free(&im);
}

/* ---- overlay ----------------------------------------------------------------------- */

static void test_overlay(void) {
    char err[CDAM_ERR_MAX];
    float map[4] = {0, 2, -1, 0};  // auto scale 2: t = 0, 1, -0.5, 0
    img_rgb8 im = make_image(20, 20), out;
    render_opts o;
    render_opts_default(&o);
    o.legend = 0;
    float s = -1;
    int rc = render_map(map, 2, 2, &im, &o, &out, &s, err);
    CHECK(rc == 0 && s == 2.0f, "overlay: rc %d scale %g %s", rc, s, err);
    if (rc == 0) {
        int bad = 0;
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 20; x++)
                if ((y < 10) == (x < 10)) bad += !rgb_eq(pix(&out, x, y), pix(&im, x, y));  // zero patches
        CHECK(bad == 0, "overlay changed %d pixels under zero scores", bad);
        // t = 1: alpha 0.6 of orange; t = -0.5: alpha 0.3 of blue
        const uint8_t *p = pix(&im, 15, 3), *q = pix(&im, 2, 17);
        uint8_t w1[3], w2[3];
        for (int c = 0; c < 3; c++) {
            w1[c] = (uint8_t)floorf(0.4f * p[c] + 0.6f * POS[c] + 0.5f);
            w2[c] = (uint8_t)floorf(0.7f * q[c] + 0.3f * NEG[c] + 0.5f);
        }
        CHECK(abs(pix(&out, 15, 3)[0] - w1[0]) <= 1 && abs(pix(&out, 15, 3)[1] - w1[1]) <= 1 &&
                  abs(pix(&out, 15, 3)[2] - w1[2]) <= 1,
              "overlay at t=1");
        CHECK(abs(pix(&out, 2, 17)[0] - w2[0]) <= 1 && abs(pix(&out, 2, 17)[1] - w2[1]) <= 1 &&
                  abs(pix(&out, 2, 17)[2] - w2[2]) <= 1,
              "overlay at t=-0.5");
        img_free(&out);
    }
    // opacity 0: the image unchanged everywhere (nearest and smooth)
    for (int k = 0; k < 2; k++) {
        o.opacity = 0;
        o.upsample = k ? RENDER_SMOOTH : RENDER_NEAREST;
        rc = render_map(map, 2, 2, &im, &o, &out, NULL, err);
        CHECK(rc == 0 && memcmp(out.px, im.px, 20 * 20 * 3) == 0, "opacity 0 leaves the image unchanged (%d)", k);
        img_free(&out);
    }
    // max_side: a 64x48 image drawn at 32x24
    img_rgb8 big = make_image(64, 48);
    render_opts_default(&o);
    o.legend = 0;
    o.max_side = 32;
    rc = render_map(map, 2, 2, &big, &o, &out, NULL, err);
    CHECK(rc == 0 && out.w == 32 && out.h == 24, "max_side 32: %dx%d %s", out.w, out.h, err);
    img_free(&out);
    o.max_side = 64;  // already small enough: unchanged size
    rc = render_map(map, 2, 2, &big, &o, &out, NULL, err);
    CHECK(rc == 0 && out.w == 64 && out.h == 48, "max_side 64 keeps 64x48");
    img_free(&out);
    img_free(&big);
    img_free(&im);
}

/* ---- percentiles and clipping ------------------------------------------------------- */

static void test_percentile(void) {
    char err[CDAM_ERR_MAX];
    // Goldens from numpy 1.24 (default method="linear"):
    //   python3 -c "import numpy as np; x = np.array([3,-1,4,1,-5,9,2,-6,5,3,5,-8], np.float32);
    //               print([float(np.percentile(x, p)) for p in (0,0.1,10,25,50,90,99.9,100)])"
    //   -> [-8.0, -7.978, -5.9, -2.0, 2.5, 5.0, 8.956000000000003, 9.0]
    //   python3 -c "import numpy as np; print(np.percentile(np.float32([0.5,-0.25,0.125,2]), [0.1,33,99.9]))"
    //   -> [-0.248875  0.12125   1.9955  ]
    const float x[12] = {3, -1, 4, 1, -5, 9, 2, -6, 5, 3, 5, -8};
    const double ps[8] = {0, 0.1, 10, 25, 50, 90, 99.9, 100};
    const float want[8] = {-8.0f, -7.978f, -5.9f, -2.0f, 2.5f, 5.0f, 8.956f, 9.0f};
    float got[8];
    for (int i = 0; i < 8; i++) CHECK(render_percentile(x, 12, ps[i], &got[i], err) == 0, "percentile: %s", err);
    check_close("percentile vs numpy (12 values)", got, want, 8, 1e-6);
    const float y[4] = {0.5f, -0.25f, 0.125f, 2.0f};
    const double ps2[3] = {0.1, 33, 99.9};
    const float want2[3] = {-0.248875f, 0.12125f, 1.9955f};
    for (int i = 0; i < 3; i++) CHECK(render_percentile(y, 4, ps2[i], &got[i], err) == 0, "percentile: %s", err);
    check_close("percentile vs numpy (4 values)", got, want2, 3, 1e-6);
    float one = 0;
    CHECK(render_percentile((float[]){7}, 1, 50, &one, err) == 0 && one == 7, "percentile of one value");
    // non-finite count as 0: {NaN, 1, -1} -> sorted {-1, 0, 1}, median 0
    CHECK(render_percentile((float[]){NAN, 1, -1}, 3, 50, &one, err) == 0 && one == 0, "NaN counts as 0");

    // clipping at the paper's 0.1 / 99.9: scale max(|-7.978|, 8.956) = 8.956
    float s = 0;
    CHECK(render_auto_scale(x, 3, 4, 0.1f, 99.9f, &s, err) == 0 && fabsf(s - 8.956f) < 1e-5f, "clipped scale %g", s);
    CHECK(render_auto_scale(x, 3, 4, 0, 100, &s, err) == 0 && s == 9.0f, "unclipped scale %g", s);
    // clipping at 10 / 90 -> [-5.9, 5]; scale 5.9: the 9 becomes 5 (t = 5/5.9), the -8 becomes -5.9 (t = -1)
    render_opts o = map_opts(RENDER_NEAREST);
    o.scale = 0;
    o.clip_lo = 10;
    o.clip_hi = 90;
    img_rgb8 im = make_image(4, 3), out;
    float used = 0;
    int rc = render_map(x, 3, 4, &im, &o, &out, &used, err);
    CHECK(rc == 0 && fabsf(used - 5.9f) < 1e-5f, "clip 10/90: scale %g %s", used, err);
    if (rc == 0) {
        uint8_t c9[3], c1[3];
        render_colormap(5.0f / 5.9f, c9);
        render_colormap(1.0f / 5.9f, c1);
        CHECK(rgb_eq(pix(&out, 1, 1), c9), "9 clipped to 5");         // x[5] = 9 at (row 1, col 1)
        CHECK(rgb_eq(pix(&out, 3, 2), NEG), "-8 clipped to -5.9");     // x[11] = -8
        CHECK(rgb_eq(pix(&out, 3, 0), c1), "1 unchanged");             // x[3] = 1
        img_free(&out);
    }
    img_free(&im);
}

/* ---- legend ------------------------------------------------------------------------- */

static int region_has(const img_rgb8 *im, int y0, int y1, const uint8_t c[3]) {
    for (int y = y0; y < y1; y++)
        for (int x = 0; x < im->w; x++)
            if (rgb_eq(pix(im, x, y), c)) return 1;
    return 0;
}

static int light_pixels(const img_rgb8 *im, int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = pix(im, x, y);
            n += p[0] > 200 && p[1] > 200 && p[2] > 200;
        }
    return n;
}

static void test_legend(void) {
    char err[CDAM_ERR_MAX];
    float map[4] = {0.31f, -0.2f, 0.1f, 0};
    int widths[3] = {224, 480, 1000};
    for (int k = 0; k < 3; k++) {
        int W = widths[k], H = W * 3 / 4;
        img_rgb8 im = make_image(W, H), out;
        render_opts o;
        render_opts_default(&o);
        float s = 0;
        int rc = render_map(map, 2, 2, &im, &o, &out, &s, err);
        int lh = render_legend_height(W);
        CHECK(rc == 0 && out.w == W && out.h == H + lh && s == 0.31f, "legend %d: %dx%d %s", W, out.w, out.h, err);
        if (rc != 0) { img_free(&im); continue; }
        CHECK(lh >= 20 && lh <= 200, "legend height %d for width %d", lh, W);
        CHECK(region_has(&out, H, H + lh, NEG) && region_has(&out, H, H + lh, BLACK) &&
                  region_has(&out, H, H + lh, POS),
              "legend %d holds blue, black and orange", W);
        // the ramp: find the row whose first coloured column is NEG; its middle is black, its end POS
        int found = 0;
        for (int y = H; y < H + lh && !found; y++) {
            int x0 = -1, x1 = -1;
            for (int x = 0; x < W; x++) {
                if (rgb_eq(pix(&out, x, y), NEG) && x0 < 0) x0 = x;
                if (rgb_eq(pix(&out, x, y), POS)) x1 = x;
            }
            if (x0 >= 0 && x1 > x0 + 10 && (x1 - x0) % 2 == 0) {
                uint8_t c[3];
                render_colormap(-0.5f, c);
                found = rgb_eq(pix(&out, (x0 + x1) / 2, y), BLACK);
                // a quarter of the way along is close to t = -0.5
                const uint8_t *q = pix(&out, x0 + (x1 - x0) / 4, y);
                found = found && abs(q[0] - c[0]) <= 3 && abs(q[1] - c[1]) <= 3 && abs(q[2] - c[2]) <= 3;
            }
        }
        CHECK(found, "legend %d: ramp NEG .. black .. POS", W);
        CHECK(light_pixels(&out, 0, H, W, H + lh) > 20, "legend %d has tick labels", W);
        img_free(&out);
        img_free(&im);
    }
    // the standalone legend has the same height; tiny widths draw without overflowing
    for (int w = 1; w <= 40; w++) {
        img_rgb8 lg;
        int rc = render_legend(w, 0.5f, &lg, err);
        CHECK(rc == 0 && lg.w == w && lg.h == render_legend_height(w), "legend width %d: %s", w, err);
        img_free(&lg);
    }
    img_rgb8 lg;
    CHECK(render_legend(300, 1e-7f, &lg, err) == 0, "tiny scale label");
    img_free(&lg);
    CHECK(render_legend(300, 3e38f, &lg, err) == 0, "huge scale label");
    img_free(&lg);
    CHECK(render_legend(0, 1, &lg, err) == CDAM_EINVAL && lg.px == NULL, "legend width 0");
    CHECK(render_legend(10, -1, &lg, err) == CDAM_EINVAL, "legend scale < 0");
    CHECK(render_legend(10, NAN, &lg, err) == CDAM_EINVAL, "legend scale NaN");
}

/* ---- panel -------------------------------------------------------------------------- */

static void test_panel(void) {
    char err[CDAM_ERR_MAX];
    float a[4] = {1, -1, 0.5f, 0}, b[9] = {0, 0, 0, 0, 3, 0, 0, 0, -3};
    img_rgb8 im = make_image(40, 30), out;
    render_tile tiles[5] = {
        {NULL, 0, 0, "input"}, {a, 2, 2, "CDAM: zebra"}, {b, 3, 3, "RP: zebra"},
        {a, 2, 2, "a very long caption that cannot fit in forty pixels"}, {b, 3, 3, "caf\xc3\xa9 \x01\x7f"},
    };
    render_opts o;
    render_opts_default(&o);
    int s = font_scale(40), gap = 6 * s, C = 15 * s, L = render_legend_height(40);
    struct { int n, per_row, cols, rows, legend; } cases[] = {
        {5, 0, 4, 2, 1}, {5, 2, 2, 3, 1}, {3, 0, 3, 1, 1}, {1, 0, 1, 1, 1}, {5, 10, 5, 1, 0}, {4, 4, 4, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        o.legend = cases[k].legend;
        int rc = render_panel(&im, tiles, cases[k].n, cases[k].per_row, &o, &out, err);
        int Lk = cases[k].legend ? L : 0;
        int ww = cases[k].cols * 40 + (cases[k].cols + 1) * gap;
        int wh = cases[k].rows * (C + 30 + Lk) + (cases[k].rows + 1) * gap;
        CHECK(rc == 0 && out.w == ww && out.h == wh, "panel %d tiles per_row %d: %dx%d, want %dx%d %s",
              cases[k].n, cases[k].per_row, out.w, out.h, ww, wh, err);
        if (rc == 0) {
            // the plain first tile is the image, pixel for pixel
            int bad = 0;
            for (int y = 0; y < 30; y++) bad += memcmp(pix(&out, gap, gap + C + y), pix(&im, 0, y), 40 * 3) != 0;
            CHECK(bad == 0, "panel: plain tile rows differ (%d)", bad);
            CHECK(light_pixels(&out, gap, gap, gap + 40, gap + C) > 5, "panel: caption drawn");
            if (cases[k].n >= 2) {  // tile 1 is the overlay of a: its zero patch (bottom right) shows the image
                int x1 = gap + 1 * (40 + gap), y1 = gap + C;
                if (cases[k].cols == 1) x1 = gap, y1 = gap + (C + 30 + Lk + gap) + C;
                CHECK(rgb_eq(pix(&out, x1 + 30, y1 + 20), pix(&im, 30, 20)), "panel: overlay tile at zero");
                CHECK(!rgb_eq(pix(&out, x1 + 5, y1 + 5), pix(&im, 5, 5)), "panel: overlay tile coloured");
                if (Lk) CHECK(region_has(&out, y1 + 30, y1 + 30 + Lk, POS), "panel: tile legend");
            }
        }
        img_free(&out);
    }
    // map-only panel of maps only: the image's pixels are not needed
    img_rgb8 sizeonly = {40, 30, NULL};
    o = map_opts(RENDER_NEAREST);
    CHECK(render_panel(&sizeonly, tiles + 1, 2, 0, &o, &out, err) == 0, "map panel without pixels: %s", err);
    img_free(&out);
    CHECK(render_panel(&sizeonly, tiles, 2, 0, &o, &out, err) == CDAM_EINVAL, "plain tile needs pixels");
    // errors
    render_opts_default(&o);
    CHECK(render_panel(&im, tiles, 0, 0, &o, &out, err) == CDAM_EINVAL, "panel n = 0");
    CHECK(render_panel(&im, tiles, 65, 0, &o, &out, err) == CDAM_EINVAL, "panel n = 65");
    CHECK(render_panel(&im, NULL, 2, 0, &o, &out, err) == CDAM_EINVAL, "panel tiles NULL");
    render_tile bad = {a, 0, 2, "x"};
    CHECK(render_panel(&im, &bad, 1, 0, &o, &out, err) == CDAM_EINVAL && out.px == NULL, "panel bad grid");
    img_rgb8 wide = {3000, 10, NULL};
    wide.px = calloc((size_t)3000 * 10 * 3, 1);
    CHECK(render_panel(&wide, tiles, 4, 0, &o, &out, err) == CDAM_ELIMIT, "panel over the limit: %s", err);
    o.max_side = 500;
    CHECK(render_panel(&wide, tiles, 4, 0, &o, &out, err) == 0 && out.w == 4 * 500 + 5 * 6 * font_scale(500),
          "panel with max_side: %dx%d %s", out.w, out.h, err);
    img_free(&out);
    img_free(&wide);
    img_free(&im);
}

/* ---- PNG ---------------------------------------------------------------------------- */

static void test_png(void) {
    char err[CDAM_ERR_MAX];
    float map[6] = {1, -1, 0.3f, NAN, 0, -0.7f};
    img_rgb8 im = make_image(37, 29), out, dec;
    render_opts o;
    render_opts_default(&o);
    o.upsample = RENDER_SMOOTH;
    int rc = render_map(map, 2, 3, &im, &o, &out, NULL, err);
    CHECK(rc == 0, "png: render %s", err);
    uint8_t *png = NULL;
    size_t len = 0;
    rc = render_png_encode(&out, &png, &len, err);
    CHECK(rc == 0 && png && len > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0, "png encode: %s", err);
    if (rc == 0) {
        rc = img_decode(png, len, 0, &dec, err);
        CHECK(rc == 0 && dec.w == out.w && dec.h == out.h &&
                  memcmp(dec.px, out.px, (size_t)out.w * out.h * 3) == 0,
              "png round trip is exact: %s", err);
        img_free(&dec);
    }
    free(png);
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_render_%d.png", (int)getpid());
    CHECK(render_png_write(&out, path, err) == 0, "png write: %s", err);
    rc = img_load_file(path, 0, &dec, err);
    CHECK(rc == 0 && dec.w == out.w && dec.h == out.h && memcmp(dec.px, out.px, (size_t)out.w * out.h * 3) == 0,
          "png file round trip: %s", err);
    img_free(&dec);
    remove(path);
    CHECK(render_png_write(&out, "/nonexistent-dir/x.png", err) == CDAM_EIO && strstr(err, "nonexistent"),
          "png write to a missing folder: %s", err);
    CHECK(render_png_write(&out, NULL, err) == CDAM_EINVAL, "png write NULL path");
    img_rgb8 empty = {0, 0, NULL};
    CHECK(render_png_encode(&empty, &png, &len, err) == CDAM_EINVAL && png == NULL && len == 0, "png empty image");
    CHECK(render_png_encode(NULL, &png, &len, err) == CDAM_EINVAL, "png NULL image");
    CHECK(render_png_encode(&out, NULL, &len, err) == CDAM_EINVAL, "png NULL output");
    img_free(&out);
    img_free(&im);
}

/* ---- hostile scores, bad arguments -------------------------------------------------- */

static void test_nonfinite(void) {
    char err[CDAM_ERR_MAX];
    float map[4] = {NAN, INFINITY, -INFINITY, 0.5f};
    img_rgb8 im = make_image(16, 16), out;
    for (int k = 0; k < 4; k++) {
        render_opts o;
        render_opts_default(&o);
        o.mode = k & 1 ? RENDER_MAP : RENDER_OVERLAY;
        o.upsample = k & 2 ? RENDER_SMOOTH : RENDER_NEAREST;
        o.clip_lo = 0.1f;
        o.clip_hi = 99.9f;
        float s = 0;
        int rc = render_map(map, 2, 2, &im, &o, &out, &s, err);
        // sanitised {0, 0, 0, 0.5}: clip at 0.1/99.9 -> [0, 0.4985], scale 0.4985
        CHECK(rc == 0 && fabsf(s - 0.4985f) < 1e-5f, "non-finite scores (%d): scale %g %s", k, s, err);
        if (rc == 0 && !(k & 2))
            CHECK(o.mode == RENDER_MAP ? rgb_eq(pix(&out, 2, 2), BLACK) : rgb_eq(pix(&out, 2, 2), pix(&im, 2, 2)),
                  "NaN patch drawn as zero (%d)", k);
        img_free(&out);
    }
    float s = -1;
    CHECK(render_auto_scale(map, 2, 2, 0, 100, &s, err) == 0 && s == 0.5f, "auto scale skips non-finite");
    // all zero: overlay = the image, map = black, legend still drawn, scale 0
    float zero[9] = {0};
    render_opts o;
    render_opts_default(&o);
    int rc = render_map(zero, 3, 3, &im, &o, &out, &s, err);
    CHECK(rc == 0 && s == 0 && memcmp(out.px, im.px, 16 * 16 * 3) == 0, "all-zero overlay is the image");
    img_free(&out);
    o.mode = RENDER_MAP;
    o.legend = 0;
    o.upsample = RENDER_SMOOTH;
    rc = render_map(zero, 3, 3, &im, &o, &out, &s, err);
    int black = rc == 0;
    for (int i = 0; black && i < 16 * 16 * 3; i++) black = out.px[i] == 0;
    CHECK(black, "all-zero map is black");
    img_free(&out);
    // all NaN, with clipping: zero too
    float nan4[4] = {NAN, NAN, NAN, NAN};
    o.clip_lo = 1;
    o.clip_hi = 99;
    CHECK(render_map(nan4, 2, 2, &im, &o, &out, &s, err) == 0 && s == 0, "all-NaN map");
    img_free(&out);
    // a fixed scale smaller than the scores saturates
    render_opts_default(&o);
    o.mode = RENDER_MAP;
    o.legend = 0;
    o.scale = 0.1f;
    float big[1] = {5};
    CHECK(render_map(big, 1, 1, &im, &o, &out, &s, err) == 0 && s == 0.1f && rgb_eq(pix(&out, 7, 7), POS),
          "fixed scale saturates");
    img_free(&out);
    img_free(&im);
}

static void test_bad_args(void) {
    char err[CDAM_ERR_MAX];
    float map[4] = {1, 2, 3, 4};
    img_rgb8 im = make_image(8, 8), out = {1, 1, (uint8_t *)1};
    render_opts o;
#define BAD(code, call, what)                                                                    \
    do {                                                                                         \
        err[0] = 0;                                                                              \
        int rc_ = (call);                                                                        \
        CHECK(rc_ == (code) && err[0] != 0, "%s: rc %d, want %d (%s)", what, rc_, code, err);   \
    } while (0)
    BAD(CDAM_EINVAL, render_map(NULL, 2, 2, &im, NULL, &out, NULL, err), "NULL map");
    CHECK(out.px == NULL && out.w == 0, "output zeroed on error");
    BAD(CDAM_EINVAL, render_map(map, 0, 2, &im, NULL, &out, NULL, err), "gh 0");
    BAD(CDAM_EINVAL, render_map(map, 2, -1, &im, NULL, &out, NULL, err), "gw -1");
    BAD(CDAM_ELIMIT, render_map(map, 9000, 1, &im, NULL, &out, NULL, err), "grid over the limit");
    BAD(CDAM_EINVAL, render_map(map, 2, 2, NULL, NULL, &out, NULL, err), "NULL image");
    img_rgb8 e = {0, 8, im.px};
    BAD(CDAM_EINVAL, render_map(map, 2, 2, &e, NULL, &out, NULL, err), "image width 0");
    img_rgb8 nopx = {8, 8, NULL};
    BAD(CDAM_EINVAL, render_map(map, 2, 2, &nopx, NULL, &out, NULL, err), "overlay without pixels");
    render_opts_default(&o);
    o.mode = RENDER_MAP;
    CHECK(render_map(map, 2, 2, &nopx, &o, &out, NULL, err) == 0 && out.w == 8, "map mode needs only the size");
    img_free(&out);
    img_rgb8 huge = {9000, 8, NULL};
    BAD(CDAM_ELIMIT, render_map(map, 2, 2, &huge, &o, &out, NULL, err), "image over the limit");
    o.max_side = 1000;
    CHECK(render_map(map, 2, 2, &huge, &o, &out, NULL, err) == 0 && out.w == 1000 && out.h >= 1,
          "max_side shrinks a huge image (size only)");
    img_free(&out);
    img_rgb8 tall = {8, 8180, NULL};
    render_opts_default(&o);
    o.mode = RENDER_MAP;
    BAD(CDAM_ELIMIT, render_map(map, 2, 2, &tall, &o, &out, NULL, err), "image + legend over the limit");
    BAD(CDAM_EINVAL, render_map(map, 2, 2, &im, NULL, NULL, NULL, err), "NULL output");
    const char *bad_opts[] = {
        "opacity 1.5", "opacity -0.1", "opacity NaN", "clip lo > hi", "clip hi 101", "clip lo -1",  "clip NaN",
        "scale -1",    "scale NaN",    "scale Inf",   "mode 7",       "upsample 9",  "max_side -1", "max_side 8193",
    };
    for (int k = 0; k < (int)(sizeof bad_opts / sizeof bad_opts[0]); k++) {
        render_opts_default(&o);
        switch (k) {
        case 0: o.opacity = 1.5f; break;
        case 1: o.opacity = -0.1f; break;
        case 2: o.opacity = NAN; break;
        case 3: o.clip_lo = 60; o.clip_hi = 40; break;
        case 4: o.clip_hi = 101; break;
        case 5: o.clip_lo = -1; break;
        case 6: o.clip_lo = NAN; break;
        case 7: o.scale = -1; break;
        case 8: o.scale = NAN; break;
        case 9: o.scale = INFINITY; break;
        case 10: o.mode = (render_mode)7; break;
        case 11: o.upsample = (render_upsample)9; break;
        case 12: o.max_side = -1; break;
        case 13: o.max_side = RENDER_MAX_SIDE + 1; break;
        }
        BAD(CDAM_EINVAL, render_map(map, 2, 2, &im, &o, &out, NULL, err), bad_opts[k]);
        render_tile t = {map, 2, 2, "x"};
        BAD(CDAM_EINVAL, render_panel(&im, &t, 1, 0, &o, &out, err), bad_opts[k]);
    }
    float s;
    BAD(CDAM_EINVAL, render_auto_scale(map, 2, 2, 50, 10, &s, err), "auto scale clip lo > hi");
    BAD(CDAM_EINVAL, render_auto_scale(NULL, 2, 2, 0, 100, &s, err), "auto scale NULL map");
    BAD(CDAM_EINVAL, render_auto_scale(map, 2, 2, 0, 100, NULL, err), "auto scale NULL output");
    BAD(CDAM_EINVAL, render_percentile(map, 0, 50, &s, err), "percentile n 0");
    BAD(CDAM_EINVAL, render_percentile(map, 4, 100.5, &s, err), "percentile 100.5");
    BAD(CDAM_EINVAL, render_percentile(map, 4, NAN, &s, err), "percentile NaN");
    BAD(CDAM_EINVAL, render_percentile(NULL, 4, 50, &s, err), "percentile NULL");
    // err may be NULL
    CHECK(render_map(NULL, 2, 2, &im, NULL, &out, NULL, NULL) == CDAM_EINVAL, "err NULL");
    render_opts_default(NULL);  // harmless
    img_free(&im);
#undef BAD
}

/* ---- examples for the eye ----------------------------------------------------------- */

// A synthetic explanation on a (g, g) grid: a positive blob right of centre, a negative one
// lower left, faint noise.
static void synth_map(float *m, int g, float amp) {
    for (int y = 0; y < g; y++)
        for (int x = 0; x < g; x++) {
            float u = (x + 0.5f) / g, v = (y + 0.5f) / g;
            float p = expf(-((u - 0.62f) * (u - 0.62f) + (v - 0.45f) * (v - 0.45f)) / 0.02f);
            float n = expf(-((u - 0.25f) * (u - 0.25f) + (v - 0.75f) * (v - 0.75f)) / 0.01f);
            float noise = 0.05f * sinf(13.0f * x + 7.0f * y);
            m[y * g + x] = amp * (0.9f * p - 0.6f * n + noise);
        }
}

static void write_examples(const char *dir) {
    char err[CDAM_ERR_MAX], path[512];
    img_rgb8 photo;
    if (img_load_file("../shared/images/elephant-zebra.jpg", 0, &photo, err) != 0) photo = make_image(640, 480);
    float m[28 * 28], m2[28 * 28];
    synth_map(m, 28, 0.31f);
    synth_map(m2, 28, -0.0042f);
    render_opts o;
    render_opts_default(&o);
    o.max_side = 640;
    o.clip_lo = 0.1f;
    o.clip_hi = 99.9f;
    img_rgb8 out;
    if (render_map(m, 28, 28, &photo, &o, &out, NULL, err) == 0) {
        snprintf(path, sizeof path, "%s/render_example.png", dir);
        if (render_png_write(&out, path, err) == 0) printf("  wrote %s (%dx%d)\n", path, out.w, out.h);
        img_free(&out);
    } else {
        printf("  example failed: %s\n", err);
    }
    // the model's view: 224 x 224
    img_rgb8 small = {224, 224, malloc(224 * 224 * 3)};
    float *f = malloc(sizeof(float) * 224 * 224 * 3);
    if (small.px && f && img_resize_bilinear_aa(&photo, 224, 224, f, err) == 0) {
        for (int i = 0; i < 224 * 224 * 3; i++) small.px[i] = (uint8_t)(f[i] + 0.5f);
        render_tile tiles[4] = {{NULL, 0, 0, "input"}, {m, 28, 28, "CDAM: zebra"}, {m2, 28, 28, "RP: zebra"},
                                {m, 28, 28, "CDAM: a caption too long to fit in one tile"}};
        render_opts_default(&o);  // overlay, nearest, a legend per map tile
        if (render_panel(&small, tiles, 4, 0, &o, &out, err) == 0) {
            snprintf(path, sizeof path, "%s/render_panel_example.png", dir);
            if (render_png_write(&out, path, err) == 0) printf("  wrote %s (%dx%d)\n", path, out.w, out.h);
            img_free(&out);
        }
        o.mode = RENDER_MAP;  // map only, smooth, two per row
        o.upsample = RENDER_SMOOTH;
        if (render_panel(&small, tiles + 1, 2, 2, &o, &out, err) == 0) {
            snprintf(path, sizeof path, "%s/render_panel_map_example.png", dir);
            if (render_png_write(&out, path, err) == 0) printf("  wrote %s (%dx%d)\n", path, out.w, out.h);
            img_free(&out);
        }
    }
    free(f);
    img_free(&small);
    img_free(&photo);
}

int main(void) {
    test_colormap();
    test_nearest();
    test_smooth();
    test_overlay();
    test_percentile();
    test_legend();
    test_panel();
    test_png();
    test_nonfinite();
    test_bad_args();
    const char *dir = getenv("CDAM_RENDER_EXAMPLES");
    if (dir && *dir) write_examples(dir);
    return check_summary("test_render");
}
