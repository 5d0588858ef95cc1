/* render.h - explanation maps as images people can read: colour map, overlay, legend,
 * side-by-side panels, PNG encoding.
 *
 * Usage:
 *     render_opts o;
 *     render_opts_default(&o);                  // overlay, opacity 0.6, nearest, legend
 *     o.clip_lo = 0.1f; o.clip_hi = 99.9f;      // the paper's percentile clipping
 *     img_rgb8 out;
 *     char err[CDAM_ERR_MAX];
 *     if (render_map(scores, gh, gw, &image, &o, &out, err) < 0) { report(err); }
 *     uint8_t *png; size_t len;
 *     render_png_encode(&out, &png, &len, err); // or render_png_write(&out, path, err)
 *     free(png); img_free(&out);
 *
 * Scores: a (gh, gw) row-major float map, signed: > 0 is evidence for the target,
 * < 0 counter-evidence. Non-finite scores (NaN, +-Inf) are treated as 0 everywhere
 * (percentiles, scale, colour). The map is drawn over / at the size of whatever image
 * the caller passes: the model's resized input or the original photo (optionally shrunk
 * first, see render_opts.max_side); the map is upsampled to that size.
 *
 * Pipeline, per map: non-finite -> 0; clip to [P(clip_lo), P(clip_hi)] (percentiles, see
 * render_percentile) unless the range is 0..100; scale = opts.scale if > 0, else the map's
 * max |clipped score|; t = clamp(score / scale, -1, 1) (t = 0 everywhere when the scale
 * is 0, e.g. an all-zero map: no division by zero); upsample t to the image size; colour.
 *
 * Colour map (render_colormap), diverging, black at zero, linear in sRGB values, which
 * makes lightness grow roughly evenly with |t|:
 *     t = -1 : RENDER_NEG = (40, 150, 255)  blue   (counter-evidence)
 *     t =  0 : (0, 0, 0)                    black
 *     t = +1 : RENDER_POS = (255, 140, 0)   orange (evidence)
 *     in between: channel = round(|t| * endpoint channel), halves rounded up; e.g.
 *     t = 0.5 -> (128, 70, 0), t = -0.5 -> (20, 75, 128).
 * Modes:
 *     RENDER_MAP      each pixel is render_colormap(t) (black at zero).
 *     RENDER_OVERLAY  the endpoint colour of t's sign alpha-blended over the image with
 *                     alpha = opacity * |t|: out = round((1 - alpha) * image + alpha * colour).
 *                     A zero score, or opacity 0, leaves the image pixel unchanged; the
 *                     strength of the tint reads like the legend's ramp.
 * Upsampling from (gh, gw) to (H, W):
 *     RENDER_NEAREST  pixel (y, x) takes patch (floor(y*gh/H), floor(x*gw/W)): each patch is
 *                     a block (exact squares when H, W are multiples of the grid).
 *     RENDER_SMOOTH   bilinear, align_corners=False (PyTorch's F.interpolate arithmetic):
 *                     src = (y + 0.5) * gh / H - 0.5, clamped at 0; y0 = floor(src),
 *                     y1 = min(y0 + 1, gh - 1), weight src - y0; likewise for x.
 * Legend (opts.legend, default on): a strip of render_legend_height(W) rows appended below
 * the image (dark background) holding the words "counter-evidence" (left) and "evidence"
 * (right), the ramp from t = -1 through 0 to +1 (an odd number of columns: the first is
 * exactly RENDER_NEG, the middle exactly black, the last exactly RENDER_POS, with a grey
 * frame), and the tick labels "-s", "0", "+s" for the scale s printed with "%.2g"
 * ("-0.31", "0", "+0.31"). Text is stb_easy_font's bitmap font (glyphs 9 rows high),
 * scaled by the font scale s = clamp((W + 150) / 300, 1, 4) (integer division: 1 below
 * 450 px, 2 up to 749, ...); the words, or the tick labels, that do not fit are left out,
 * and nothing is ever drawn outside the buffer.
 * Panel (render_panel): tiles of the image's size W x H in a grid (default up to 4 per row),
 * a caption centred above each tile, and each map tile with ITS OWN legend below it (maps
 * of different methods have very different magnitudes; with opts.scale > 0 they share one
 * scale and their legends show the same numbers). A tile with map == NULL shows the plain
 * image (e.g. as the first tile, caption "input"), with blank space where a legend would be.
 * With s the font scale of W, gap = 6s, caption strip C = 15s, legend L =
 * render_legend_height(W) (0 without legend), the panel is
 * (cols*W + (cols+1)*gap) x (rows*(C + H + L) + (rows+1)*gap) on a dark background, and
 * tile i's image area starts at x = gap + (i % cols)*(W + gap),
 * y = gap + (i / cols)*(C + H + L + gap) + C.
 *
 * Limits: grids and outputs at most RENDER_MAX_SIDE (8192) per side; larger requests return
 * CDAM_ELIMIT (use opts.max_side to shrink a big photo first).
 * Ownership: every img_rgb8 output is malloc'ed and released by the caller with img_free;
 * PNG bytes are malloc'ed and released with free. On error outputs are zeroed / NULL and
 * nothing needs freeing. Inputs are never modified.
 * Thread-safety: every function is reentrant (no mutable globals; stb's globals are only
 * read).
 * Errors: functions return 0 or a negative CDAM_E* code and, when err is non-NULL, write a
 * one-line reason (CDAM_ERR_MAX bytes): CDAM_EINVAL for bad arguments, CDAM_ELIMIT for
 * sizes over RENDER_MAX_SIDE, CDAM_ENOMEM, CDAM_EIO (render_png_write).
 */
#ifndef CDAM_RENDER_H
#define CDAM_RENDER_H

#include <stddef.h>
#include <stdint.h>
#include "errors.h"
#include "image.h"

#define RENDER_MAX_SIDE 8192

// Colour-map endpoints (sRGB) for t = -1 and t = +1.
#define RENDER_NEG_R 40
#define RENDER_NEG_G 150
#define RENDER_NEG_B 255
#define RENDER_POS_R 255
#define RENDER_POS_G 140
#define RENDER_POS_B 0

typedef enum { RENDER_OVERLAY = 0, RENDER_MAP = 1 } render_mode;
typedef enum { RENDER_NEAREST = 0, RENDER_SMOOTH = 1 } render_upsample;

typedef struct {
    render_mode mode;         // RENDER_OVERLAY (default) or RENDER_MAP
    float opacity;            // overlay alpha at |t| = 1, 0..1 (default 0.6)
    render_upsample upsample; // RENDER_NEAREST (default) or RENDER_SMOOTH
    float clip_lo, clip_hi;   // percentiles 0..100, lo <= hi (default 0, 100 = no clipping)
    int legend;               // nonzero: legend strip below each map (default 1)
    float scale;              // > 0: fixed colour scale (shared by several maps);
                              // 0: auto, max |clipped score| of each map (default 0)
    int max_side;             // 1..RENDER_MAX_SIDE: shrink the image (antialiased bilinear,
                              // img_resize_bilinear_aa) so its longer side is <= max_side
                              // before drawing (never enlarged); 0: keep (default 0)
} render_opts;

// Fills the defaults listed above.
void render_opts_default(render_opts *o);

// Colour of t (clamped to -1..1; non-finite counts as 0), see the table above.
void render_colormap(float t, uint8_t rgb[3]);

// The p-th percentile (0..100) of x[0..n), numpy's default ("linear") definition: with the
// values sorted ascending as v[0..n), pos = p/100 * (n-1), i = floor(pos),
// P = v[i] + (pos - i) * (v[min(i+1, n-1)] - v[i]) (computed in double). Non-finite values
// count as 0. CDAM_EINVAL for n < 1 or p outside 0..100; CDAM_ENOMEM.
int render_percentile(const float *x, long n, double p, float *out, char *err);

// The auto scale of a map: max |score| after non-finite -> 0 and percentile clipping to
// [P(clip_lo), P(clip_hi)] (no clipping for 0, 100). 0 for an all-zero map. The max over
// several maps is a shared scale for opts.scale.
int render_auto_scale(const float *map, int gh, int gw, float clip_lo, float clip_hi,
                      float *scale, char *err);

// Renders map over (RENDER_OVERLAY) or at the size of (RENDER_MAP) image. out is
// W x (H + legend height) where W x H is the image size (after max_side). In RENDER_MAP mode
// only the image's size is used and image->px may be NULL. opts NULL means the defaults.
// If scale_out is non-NULL it receives the scale used.
int render_map(const float *map, int gh, int gw, const img_rgb8 *image, const render_opts *opts,
               img_rgb8 *out, float *scale_out, char *err);

// Height in rows of the legend strip drawn under an image of width w.
int render_legend_height(int w);

// The legend strip alone: w x render_legend_height(w), labels for the given scale (>= 0).
int render_legend(int w, float scale, img_rgb8 *out, char *err);

typedef struct {
    const float *map;     // (gh, gw) scores, or NULL for the plain image
    int gh, gw;
    const char *caption;  // e.g. "CDAM: zebra"; NULL for none. Printable ASCII; other
                          // bytes show as '?'; too long captions are cut with ".."
} render_tile;

// n tiles (1..64) of image in a grid of per_row columns (<= 0: min(n, 4)): see above. The
// image is shrunk first when opts->max_side asks for it. opts NULL means the defaults.
int render_panel(const img_rgb8 *image, const render_tile *tiles, int n, int per_row,
                 const render_opts *opts, img_rgb8 *out, char *err);

// PNG-encodes im (stb_image_write, RGB8) into a malloc'ed buffer *png of *len bytes.
int render_png_encode(const img_rgb8 *im, uint8_t **png, size_t *len, char *err);

// render_png_encode then writes the file (CDAM_EIO with the path and strerror on failure).
int render_png_write(const img_rgb8 *im, const char *path, char *err);

#endif
