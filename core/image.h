/* image.h - decode, limits, EXIF orientation, antialiased resize, normalisation.
 *
 * Usage:
 *     img_rgb8 im;
 *     char err[CDAM_ERR_MAX];
 *     if (img_decode(bytes, len, IMG_DEFAULT_MAX_PIXELS, &im, err) < 0) { report(err); }
 *     float *x = malloc(sizeof(float) * 3 * H * W);          // (3, H, W)
 *     img_to_input(&im, H, W, mean, std, x, err);             // resize + normalise
 *     img_free(&im);
 *
 * Formats: JPEG (baseline, progressive; EXIF orientation honoured), PNG (8/16 bit,
 * grey, palette, alpha), BMP, GIF (first frame) through stb_image, WebP (still
 * images; animations refused) through libwebp. Grey becomes RGB; alpha is
 * composited on black. Dimensions are read from the header first, and an image whose
 * width*height exceeds max_pixels is refused before any pixel buffer is allocated.
 *
 * Ownership: img_decode fills *out with a malloc'ed buffer that the caller releases
 * with img_free (safe on a zeroed or already-freed img_rgb8). On error *out is zeroed
 * and nothing needs freeing. Thread-safety: every function is reentrant; no globals.
 * Errors: functions return 0 or a negative CDAM_E* code and, when err is non-NULL,
 * write a one-line reason (at most CDAM_ERR_MAX bytes incl. NUL) such as
 * "not an image", "WebP animation not supported",
 * "image is 30000x20000, limit is 40000000 pixels", "truncated or corrupt JPEG: ...".
 */
#ifndef CDAM_IMAGE_H
#define CDAM_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "errors.h"

#define IMG_DEFAULT_MAX_PIXELS 40000000L

typedef struct {
    int w, h;        // width, height in pixels (after EXIF orientation)
    uint8_t *px;     // (h, w, 3) row-major RGB, malloc'ed, owned
} img_rgb8;

// Names the format from the magic bytes: "jpeg", "png", "bmp", "gif", "webp", or NULL.
const char *img_sniff(const uint8_t *data, size_t len);

// Reads the format and the displayed size (EXIF orientation applied: a 90-degree
// rotation swaps w and h) without decoding pixels. Returns 0 or CDAM_EFORMAT.
int img_probe(const uint8_t *data, size_t len, int *w, int *h, const char **fmt, char *err);

// Decodes data into 8-bit RGB. Refuses (CDAM_ELIMIT) images over max_pixels
// (<= 0 means IMG_DEFAULT_MAX_PIXELS) before allocating; CDAM_EFORMAT for data that is
// not an image, corrupt or truncated; CDAM_EUNSUPPORTED for animated WebP.
int img_decode(const uint8_t *data, size_t len, long max_pixels, img_rgb8 *out, char *err);

// Reads a whole file then img_decode. CDAM_EIO (with the path and strerror) on read errors.
int img_load_file(const char *path, long max_pixels, img_rgb8 *out, char *err);

void img_free(img_rgb8 *im);

// Antialiased bilinear resize of 8-bit RGB into float RGB in 0..255, (oh, ow, 3).
// Same arithmetic as PyTorch's F.interpolate(x, (oh, ow), mode="bilinear",
// antialias=True, align_corners=False) on a float tensor: a triangle filter whose
// support is widened by the scale factor when downsampling. Returns 0 or CDAM_EINVAL /
// CDAM_ENOMEM (it allocates one temporary row buffer of oh*... floats internally).
int img_resize_bilinear_aa(const img_rgb8 *in, int oh, int ow, float *out, char *err);

// Model input: resizes im to (H, W) (no resampling at all when it already is H x W),
// then x[c][y][x] = (pixel / 255 - mean[c]) / std[c]. out: (3, H, W) floats.
int img_to_input(const img_rgb8 *im, int H, int W, const float mean[3], const float std[3],
                 float *out, char *err);

#endif
