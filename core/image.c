/* image.c - decoding (stb_image + libwebp), EXIF orientation, pixel limits,
 * PyTorch-exact antialiased bilinear resize and model-input normalisation.
 * See image.h for the contracts. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <webp/decode.h>

#include <stb/stb_image.h>  // declarations only; the implementation is in stb_impl.c

extern _Thread_local unsigned long img_stb_oom;  // stb_impl.c: allocation failures in stb

enum { F_JPEG, F_PNG, F_BMP, F_GIF, F_WEBP };
static const char *const fmt_names[] = {"jpeg", "png", "bmp", "gif", "webp"};
static const char *const fmt_upper[] = {"JPEG", "PNG", "BMP", "GIF", "WebP"};

// What the header says, before any pixel is decoded.
typedef struct {
    int fmt;
    int w, h;          // as stored
    int orient;        // EXIF orientation 1..8 (JPEG only; 1 otherwise)
    size_t sos;        // JPEG: offset of the first SOS marker, 0 if not found
    int anim, alpha;   // WebP features
} img_header;

static int sniff(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return F_JPEG;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return F_PNG;
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return F_GIF;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return F_WEBP;
    if (n >= 18 && d[0] == 'B' && d[1] == 'M') {  // "BM" alone is too weak: check the DIB size
        uint32_t dib = d[14] | d[15] << 8 | d[16] << 16 | (uint32_t)d[17] << 24;
        if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 108 || dib == 124) return F_BMP;
    }
    return -1;
}

const char *img_sniff(const uint8_t *data, size_t len) {
    int f = data ? sniff(data, len) : -1;
    return f < 0 ? NULL : fmt_names[f];
}

/* ---- EXIF orientation ------------------------------------------------------------ */

static uint32_t rd16(const uint8_t *p, int be) { return be ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0]; }
static uint32_t rd32(const uint8_t *p, int be) {
    return be ? rd16(p, 1) << 16 | rd16(p + 2, 1) : rd16(p + 2, 0) << 16 | rd16(p, 0);
}

// Orientation tag (0x0112) of IFD0 of the TIFF structure t[0..n); 1 when absent or
// malformed. Every read is bounds-checked against n.
static int exif_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int be;
    if (t[0] == 'I' && t[1] == 'I') be = 0;
    else if (t[0] == 'M' && t[1] == 'M') be = 1;
    else return 1;
    if (rd16(t + 2, be) != 42) return 1;
    size_t ifd = rd32(t + 4, be);
    if (ifd < 8 || ifd > n - 2) return 1;
    uint32_t count = rd16(t + ifd, be);
    for (uint32_t i = 0; i < count; i++) {
        size_t e = ifd + 2 + (size_t)i * 12;
        if (e > n || n - e < 12) break;
        if (rd16(t + e, be) != 0x0112) continue;
        uint32_t type = rd16(t + e + 2, be), cnt = rd32(t + e + 4, be);
        uint32_t v = type == 3 ? rd16(t + e + 8, be) : type == 4 ? rd32(t + e + 8, be) : 0;
        return cnt == 1 && v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* ---- JPEG marker walk -----------------------------------------------------------
 * stb_image 2.27 (Debian 12's libstb) has a heap overflow: a DHT table whose 16 code
 * counts add up to more than 256 makes stbi__build_huffman write past its 257-entry
 * arrays, into the rest of the decoder. stbi_info already parses the DHTs before SOF, so every
 * DHT stb could ever read is checked here before stb sees the data: the segments before
 * the first SOS by walking the markers exactly as stb does, and after it (where stb's
 * position depends on its entropy decoder) every FF C4 pair in the rest of the file. */

typedef struct { const uint8_t *d; size_t n, p; } jrd;  // reads past the end give 0, as stb

static int jget8(jrd *r) { return r->p < r->n ? r->d[r->p++] : (r->p++, 0); }
static int jget16(jrd *r) { int hi = jget8(r); return hi << 8 | jget8(r); }

// stbi__get_marker: a marker byte after one or more 0xFF, or -1 (STBI__MARKER_none).
static int jmarker(jrd *r) {
    int x = jget8(r);
    if (x != 0xFF) return -1;
    while (x == 0xFF) x = jget8(r);  // ends: past the end reads 0
    return x;
}

// Reads one DHT segment body as stb does; 1 if some table declares over 256 codes.
static int dht_overflows(jrd *r) {
    long L = jget16(r) - 2;
    while (L > 0 && r->p < r->n) {  // past the end every table reads as 16 zero counts
        int q = jget8(r), count = 0;
        if ((q >> 4) > 1 || (q & 15) > 3) return 0;  // stb refuses the segment itself
        for (int i = 0; i < 16; i++) count += jget8(r);
        if (count > 256) return 1;
        r->p += (size_t)count;
        L -= 17 + count;
    }
    return 0;
}

#define JPEG_MAX_LATE_DHT 256  // FF C4 pairs after the first SOS (a real file has ~10)

/* Walks a JPEG as stb does up to the first SOS. Sets *orient from the first Exif APP1
 * (1 if none), *sos to the first SOS offset (0 if not reached). Returns -1 if some DHT
 * would overflow stb (or there are too many to check), else 0. */
static int jpeg_scan(const uint8_t *d, size_t n, int *orient, size_t *sos) {
    jrd r = {d, n, 2};
    int seen_sof = 0, seen_exif = 0;
    *orient = 1, *sos = 0;
    for (int m = jmarker(&r), first = 1; r.p <= n; first = 0) {
        if (m < 0) {  // stb: an error right after SOI or after SOF, padding to skip before SOF
            if (first || seen_sof) return 0;
            m = jmarker(&r);
            continue;
        }
        size_t at = r.p;  // just after the marker
        if (m == 0xDA) {
            if (seen_sof) *sos = at - 2;
            break;
        }
        if (m == 0xC4) {
            if (dht_overflows(&r)) return -1;
        } else if (m == 0xC0 || m == 0xC1 || m == 0xC2 || (m >= 0xE0 && m <= 0xEF) || m == 0xFE || m == 0xDB) {
            size_t L = (size_t)jget16(&r);
            if (L < 2) return 0;  // stb refuses
            if (m == 0xE1 && !seen_exif && L >= 8 && L <= n - at && !memcmp(d + at + 2, "Exif\0\0", 6)) {
                *orient = exif_orientation(d + at + 8, L - 8);
                seen_exif = 1;
            }
            r.p = at + L;  // DQT and SOF consume exactly L or make stb fail
            if (m <= 0xC2) seen_sof = 1;
        } else if (m == 0xDD || (m == 0xDC && seen_sof)) {
            r.p = at + 4;  // DRI, DNL
        } else {
            return 0;  // EOI or a marker stb refuses ("unknown marker")
        }
        m = jmarker(&r);
    }
    if (!*sos) return 0;
    int late = 0;
    for (const uint8_t *q = d + *sos; (q = memchr(q, 0xFF, (size_t)(d + n - q))) && q + 1 < d + n; q++) {
        if (q[1] != 0xC4) continue;
        jrd t = {d, n, (size_t)(q - d) + 2};
        if (++late > JPEG_MAX_LATE_DHT || dht_overflows(&t)) return -1;
    }
    return 0;
}

/* ---- header ---------------------------------------------------------------------- */

static const char *webp_status(VP8StatusCode s) {
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
    default: return "decoding failed";
    }
}

static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();  // thread-local in stb v2.27 (see stb_impl.c)
    return r && *r ? r : "corrupt data";
}

// Fills *hd from the magic bytes and the header. CDAM_EFORMAT on failure.
static int read_header(const uint8_t *d, size_t n, img_header *hd, char *err) {
    memset(hd, 0, sizeof *hd);
    hd->orient = 1;
    hd->fmt = d ? sniff(d, n) : -1;
    if (hd->fmt < 0) return cdam_fail(err, CDAM_EFORMAT, "not an image");
    const char *name = fmt_upper[hd->fmt];
    if (hd->fmt == F_WEBP) {
        WebPBitstreamFeatures f;
        VP8StatusCode s = WebPGetFeatures(d, n, &f);
        if (s != VP8_STATUS_OK) return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt WebP: %s", webp_status(s));
        hd->w = f.width, hd->h = f.height, hd->anim = f.has_animation, hd->alpha = f.has_alpha;
    } else if (n > INT_MAX) {  // stb_image takes an int length
        return cdam_fail(err, CDAM_EFORMAT, "%s data over 2 GiB", name);
    } else if (hd->fmt == F_PNG) {
        // Read IHDR directly: stbi_info refuses to report sizes over 2^30 bytes of pixels,
        // and those are exactly the ones whose size the limit message must name.
        if (n < 33 || memcmp(d + 8, "\0\0\0\x0dIHDR", 8) || rd32(d + 16, 1) > INT_MAX || rd32(d + 20, 1) > INT_MAX ||
            !memchr("\1\2\4\x08\x10", d[24], 5) || !memchr("\0\2\3\4\6", d[25], 5))
            return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt PNG: bad IHDR chunk");
        hd->w = (int)rd32(d + 16, 1), hd->h = (int)rd32(d + 20, 1);
    } else {
        if (hd->fmt == F_JPEG && jpeg_scan(d, n, &hd->orient, &hd->sos) < 0)  // before stb parses it
            return cdam_fail(err, CDAM_EFORMAT, "corrupt JPEG: bad Huffman table");
        // stbi_info tries every format, so its failure reason is always "unknown image type".
        unsigned long oom0 = img_stb_oom;
        int comp, ok = stbi_info_from_memory(d, (int)n, &hd->w, &hd->h, &comp);
        if (!ok && img_stb_oom != oom0) return cdam_fail(err, CDAM_ENOMEM, "out of memory reading a %s header", name);
        if (!ok)
            return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt %s: unreadable header", name);
    }
    if (hd->w <= 0 || hd->h <= 0) return cdam_fail(err, CDAM_EFORMAT, "%s has no pixels (%dx%d)", name, hd->w, hd->h);
    return 0;
}

int img_probe(const uint8_t *data, size_t len, int *w, int *h, const char **fmt, char *err) {
    img_header hd;
    int rc = read_header(data, len, &hd, err);
    if (rc < 0) return rc;
    int swap = hd.orient >= 5;
    if (w) *w = swap ? hd.h : hd.w;
    if (h) *h = swap ? hd.w : hd.h;
    if (fmt) *fmt = fmt_names[hd.fmt];
    return 0;
}

/* ---- decoding -------------------------------------------------------------------- */

// Composites n-channel samples (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; 8 or 16 bit) on
// black into 8-bit RGB. 16-bit samples are rounded to 8 bits first.
static void to_rgb(const void *src, int is16, int n, size_t npix, uint8_t *dst) {
    const uint8_t *s8 = src;
    const uint16_t *s16 = src;
    for (size_t i = 0; i < npix; i++, dst += 3) {
        uint32_t v[4] = {0, 0, 0, 0};  // (n >= 1 always fills what is read; GCC 12 -O3 cannot tell)
        for (int c = 0; c < n; c++) {
            size_t k = i * n + c;
            v[c] = is16 ? ((uint32_t)s16[k] * 255 + 32767) / 65535 : s8[k];
        }
        uint32_t a = (n == 2 || n == 4) ? v[n - 1] : 255;
        for (int c = 0; c < 3; c++) {
            uint32_t x = v[n < 3 ? 0 : c];
            dst[c] = (uint8_t)((x * a + 127) / 255);  // exact rounding: x*a/255 is never .5
        }
    }
}

// Returns the (W, H) = displayed image of src (w, h) under EXIF orientation o (2..8).
static uint8_t *orient_rgb(const uint8_t *src, int w, int h, int o) {
    int swap = o >= 5, W = swap ? h : w, H = swap ? w : h;
    uint8_t *dst = malloc((size_t)w * h * 3);
    if (!dst) return NULL;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;          // mirror horizontally
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;  // rotate 180
            case 4: sx = x, sy = h - 1 - y; break;          // mirror vertically
            case 5: sx = y, sy = x; break;                  // transpose
            case 6: sx = y, sy = h - 1 - x; break;          // rotate 90 clockwise
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;  // transverse
            default: sx = w - 1 - y, sy = x; break;         // 8: rotate 90 counter-clockwise
            }
            memcpy(dst + ((size_t)y * W + x) * 3, src + ((size_t)sy * w + sx) * 3, 3);
        }
    return dst;
}

// An uncompressed BMP must hold all its rows (stb would silently pad them with zeros).
static int bmp_truncated(const uint8_t *d, size_t n, int w, int h) {
    uint32_t off = rd32(d + 10, 0), dib = rd32(d + 14, 0), bpp, comp = 0;
    if (dib == 12) {
        if (n < 26) return 1;
        bpp = rd16(d + 24, 0);
    } else {
        if (n < 34) return 1;
        bpp = rd16(d + 28, 0), comp = rd32(d + 30, 0);
    }
    if (comp != 0 && comp != 3 && comp != 6) return 0;  // RLE etc.: stb refuses those itself
    uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4;
    return off > n || (stride && (n - off) / stride < (uint64_t)h);
}

// Whether the first frame's data runs past the end (stb would decode the rest as zeros).
static int gif_truncated(const uint8_t *d, size_t n) {
    if (n < 13) return 1;
    size_t p = 13 + ((d[10] & 0x80) ? 3u << ((d[10] & 7) + 1) : 0);  // global colour table
    while (p < n) {
        int image = d[p] == 0x2C;
        if (image) {  // descriptor (10 bytes), local colour table, LZW code size
            if (n - p < 11) return 1;
            p += 11 + ((d[p + 9] & 0x80) ? 3u << ((d[p + 9] & 7) + 1) : 0);
        } else if (d[p] == 0x21) {  // extension introducer, label
            p += 2;
        } else {
            return 0;  // trailer or garbage: stb reports those
        }
        while (p < n && d[p]) p += 1 + (size_t)d[p];  // data sub-blocks
        if (p >= n) return 1;                         // no terminating empty sub-block
        p++;
        if (image) return 0;
    }
    return 1;
}

static int decode_webp(const uint8_t *d, size_t n, const img_header *hd, uint8_t *px, char *err) {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) return cdam_fail(err, CDAM_EUNSUPPORTED, "libwebp version mismatch");
    size_t npix = (size_t)hd->w * hd->h, bpp = hd->alpha ? 4 : 3;
    uint8_t *buf = hd->alpha ? malloc(npix * 4) : px;
    if (!buf) return cdam_fail(err, CDAM_ENOMEM, "out of memory decoding a %dx%d WebP", hd->w, hd->h);
    cfg.output.colorspace = hd->alpha ? MODE_RGBA : MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = buf;
    cfg.output.u.RGBA.stride = (int)(hd->w * bpp);
    cfg.output.u.RGBA.size = npix * bpp;
    VP8StatusCode s = WebPDecode(d, n, &cfg);
    WebPFreeDecBuffer(&cfg.output);  // no-op for external memory, but the documented pairing
    if (s == VP8_STATUS_OK && (cfg.output.width != hd->w || cfg.output.height != hd->h))
        s = VP8_STATUS_BITSTREAM_ERROR;
    if (s == VP8_STATUS_OK && hd->alpha) to_rgb(buf, 0, 4, npix, px);
    if (buf != px) free(buf);
    if (s != VP8_STATUS_OK) return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt WebP: %s", webp_status(s));
    return 0;
}

/* stb 2.27 computes z->idata + ioff while idata is still NULL when a PNG has an empty IDAT
 * chunk before its first non-empty one: NULL + 0, undefined behaviour that clang's UBSan
 * reports (found by tests/fuzz; stb_impl.c avoids the memcpy(NULL, src, 0) that follows).
 * An empty IDAT carries no data, so stb gets a copy without them. 0 with *copy NULL
 * (none to drop), 0 with *copy malloc'ed (*copy_len bytes), or -1 when out of memory. */
static int png_drop_empty_idat(const uint8_t *d, size_t n, uint8_t **copy, size_t *copy_len) {
    *copy = NULL;
    int found = 0;
    for (size_t p = 8; n - p >= 12;) {  // chunks: length, type, data, CRC (n >= 33: IHDR read)
        uint32_t len = rd32(d + p, 1);
        if (len > n - p - 12) break;
        found |= len == 0 && !memcmp(d + p + 4, "IDAT", 4);
        p += 12 + (size_t)len;
    }
    if (!found) return 0;
    uint8_t *c = malloc(n);
    if (!c) return -1;
    size_t p = 8, q = 8;
    memcpy(c, d, 8);
    while (n - p >= 12) {
        uint32_t len = rd32(d + p, 1);
        if (len > n - p - 12) break;
        if (len || memcmp(d + p + 4, "IDAT", 4)) memcpy(c + q, d + p, 12 + (size_t)len), q += 12 + (size_t)len;
        p += 12 + (size_t)len;
    }
    memcpy(c + q, d + p, n - p);  // whatever follows the last whole chunk, as it was
    *copy = c;
    *copy_len = q + (n - p);
    return 0;
}

// Decodes with stb_image into *px (malloc'ed, stored orientation).
static int decode_stb(const uint8_t *d, size_t n, const img_header *hd, uint8_t **px, char *err) {
    const char *name = fmt_upper[hd->fmt];
    // stb decodes a JPEG without scans, or cut short, into grey: refuse those instead.
    if (hd->fmt == F_JPEG && !hd->sos) return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt JPEG: no scan");
    if (hd->fmt == F_JPEG && !memmem(d + hd->sos, n - hd->sos, "\xFF\xD9", 2))
        return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt JPEG: no end-of-image marker");
    if (hd->fmt == F_BMP && bmp_truncated(d, n, hd->w, hd->h))
        return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt BMP: pixel data is truncated");
    if (hd->fmt == F_GIF && gif_truncated(d, n))
        return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt GIF: first frame is truncated");
    unsigned long oom0 = img_stb_oom;
    int w, h, comp, is16 = hd->fmt == F_PNG && stbi_is_16_bit_from_memory(d, (int)n);
    void *raw = is16 ? (void *)stbi_load_16_from_memory(d, (int)n, &w, &h, &comp, 0)
                     : (void *)stbi_load_from_memory(d, (int)n, &w, &h, &comp, 0);
    if (!raw && img_stb_oom != oom0) return cdam_fail(err, CDAM_ENOMEM, "out of memory decoding a %s", name);
    if (!raw) return cdam_fail(err, CDAM_EFORMAT, "truncated or corrupt %s: %s", name, stb_reason());
    if (w != hd->w || h != hd->h || comp < 1 || comp > 4) {
        stbi_image_free(raw);
        return cdam_fail(err, CDAM_EFORMAT, "corrupt %s: inconsistent header", name);
    }
    if (comp == 3 && !is16) {  // already RGB: take stb's buffer over (STBI_MALLOC is calloc)
        *px = raw;
        return 0;
    }
    *px = malloc((size_t)w * h * 3);
    if (*px) to_rgb(raw, is16, comp, (size_t)w * h, *px);
    stbi_image_free(raw);
    return *px ? 0 : cdam_fail(err, CDAM_ENOMEM, "out of memory decoding a %dx%d %s", w, h, name);
}

int img_decode(const uint8_t *data, size_t len, long max_pixels, img_rgb8 *out, char *err) {
    memset(out, 0, sizeof *out);
    img_header hd;
    int rc = read_header(data, len, &hd, err);
    if (rc < 0) return rc;
    if (hd.anim) return cdam_fail(err, CDAM_EUNSUPPORTED, "WebP animation not supported");
    int swap = hd.orient >= 5, W = swap ? hd.h : hd.w, H = swap ? hd.w : hd.h;
    if (max_pixels <= 0) max_pixels = IMG_DEFAULT_MAX_PIXELS;
    if ((int64_t)W * H > max_pixels)
        return cdam_fail(err, CDAM_ELIMIT, "image is %dx%d, limit is %ld pixels", W, H, max_pixels);
    if ((size_t)hd.w > SIZE_MAX / 4 / (size_t)hd.h)
        return cdam_fail(err, CDAM_ELIMIT, "image is %dx%d, too large for this machine", W, H);

    uint8_t *px = NULL;
    if (hd.fmt == F_WEBP) {
        px = malloc((size_t)hd.w * hd.h * 3);
        if (!px) return cdam_fail(err, CDAM_ENOMEM, "out of memory decoding a %dx%d WebP", W, H);
        rc = decode_webp(data, len, &hd, px, err);
    } else {
        uint8_t *copy = NULL;
        size_t clen = 0;
        if (hd.fmt == F_PNG && png_drop_empty_idat(data, len, &copy, &clen) < 0)
            return cdam_fail(err, CDAM_ENOMEM, "out of memory decoding a %dx%d PNG", W, H);
        rc = decode_stb(copy ? copy : data, copy ? clen : len, &hd, &px, err);
        free(copy);
    }
    if (rc < 0) {
        free(px);
        return rc;
    }
    if (hd.orient != 1) {
        uint8_t *o = orient_rgb(px, hd.w, hd.h, hd.orient);
        free(px);
        if (!o) return cdam_fail(err, CDAM_ENOMEM, "out of memory rotating a %dx%d image", W, H);
        px = o;
    }
    out->w = W, out->h = H, out->px = px;
    return 0;
}

int img_load_file(const char *path, long max_pixels, img_rgb8 *out, char *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cdam_fail(err, CDAM_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    const char *why = fstat(fd, &st) < 0 ? strerror(errno) : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
    if (why) {
        close(fd);
        return cdam_fail(err, CDAM_EIO, "cannot read %s: %s", path, why);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return cdam_fail(err, CDAM_ENOMEM, "out of memory reading %s (%zu bytes)", path, n);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            free(buf);
            close(fd);
            return cdam_fail(err, CDAM_EIO, "cannot read %s: %s", path, e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    int rc = img_decode(buf, n, max_pixels, out, err);
    free(buf);
    return rc;
}

void img_free(img_rgb8 *im) {
    if (!im) return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

/* ---- resize ---------------------------------------------------------------------- */

/* Weights of one axis, computed as PyTorch (aten/src/ATen/native/cpu/UpSampleKernel.cpp,
 * HelperInterpBase::_compute_weights_aa, v1.13) does, float for float including where it
 * mixes float and double: scale = in/out (float), support = scale >= 1 ? scale : 1, for
 * output i: center = scale*(i+0.5), taps xmin..xmin+xsize-1 with
 * xmin = max(int(center-support+0.5), 0), xsize = min(int(center+support+0.5), in)-xmin,
 * w_j = tri((j+xmin-center+0.5)*invscale) normalised by their float sum. */
typedef struct {
    int taps;     // stride of w: ceil(support)*2+1
    int *xmin, *xsize;
    float *w;     // (out, taps)
} aa_axis;

static float tri(float x) {
    if (x < 0) x = -x;
    return x < 1 ? (float)(1.0 - x) : 0.0f;
}

static int aa_axis_init(aa_axis *a, int in, int out) {
    float scale = (float)in / (float)out;
    float support = scale >= 1.0f ? (float)(1.0 * scale) : 1.0f;  // (interp_size/2)*scale
    float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;
    a->taps = (int)ceilf(support) * 2 + 1;
    a->xmin = malloc(sizeof(int) * (size_t)out * 2);
    a->w = malloc(sizeof(float) * (size_t)out * (size_t)a->taps);
    if (!a->xmin || !a->w) return -1;
    a->xsize = a->xmin + out;
    for (int i = 0; i < out; i++) {
        float center = (float)(scale * (i + 0.5));
        int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
        int xmin = lo > 0 ? (int)lo : 0, xsize = (int)((hi < in ? hi : in) - xmin);
        if (xsize > a->taps) xsize = a->taps;  // cannot happen; keeps the writes in bounds
        if (xsize < 1) xsize = 1, xmin = xmin < in ? xmin : in - 1;  // likewise
        float *w = a->w + (size_t)i * a->taps, total = 0;
        for (int j = 0; j < xsize; j++) total += w[j] = tri((float)(((float)(j + xmin) - center + 0.5) * invscale));
        for (int j = 0; j < xsize; j++)
            if (total != 0.0f) w[j] /= total;
        a->xmin[i] = xmin, a->xsize[i] = xsize;
    }
    return 0;
}

static void aa_axis_free(aa_axis *a) {
    free(a->xmin);
    free(a->w);
}

/* Both passes accumulate exactly as torch does for each output value: acc = s0*w0, then
 * acc += sj*wj for j = 1.., in float. Sources are 8-bit pixels (u8 != NULL; exact in
 * float) or floats. */

// Horizontal: rows of w RGB pixels -> rows of ow.
static void aa_horizontal(const aa_axis *a, const uint8_t *u8, const float *f, int h, int w, int ow, float *dst) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < ow; x++) {
            const float *wt = a->w + (size_t)x * a->taps;
            size_t s = ((size_t)y * w + a->xmin[x]) * 3;
            float *d = dst + ((size_t)y * ow + x) * 3;
            for (int c = 0; c < 3; c++) {
                float acc = (u8 ? u8[s + c] : f[s + c]) * wt[0];
                for (int j = 1; j < a->xsize[x]; j++) acc += (u8 ? u8[s + j * 3 + c] : f[s + j * 3 + c]) * wt[j];
                d[c] = acc;
            }
        }
}

// Vertical: rows of n floats (w RGB pixels) -> oh rows, a whole row per tap (cache-friendly).
static void aa_vertical(const aa_axis *a, const uint8_t *u8, const float *f, size_t n, int oh, float *dst) {
    for (int y = 0; y < oh; y++) {
        const float *wt = a->w + (size_t)y * a->taps;
        float *d = dst + (size_t)y * n;
        size_t s = (size_t)a->xmin[y] * n;
        for (size_t i = 0; i < n; i++) d[i] = (u8 ? u8[s + i] : f[s + i]) * wt[0];
        for (int j = 1; j < a->xsize[y]; j++) {
            s += n;
            for (size_t i = 0; i < n; i++) d[i] += (u8 ? u8[s + i] : f[s + i]) * wt[j];
        }
    }
}

int img_resize_bilinear_aa(const img_rgb8 *in, int oh, int ow, float *out, char *err) {
    if (!in || !in->px || in->w <= 0 || in->h <= 0 || !out || oh <= 0 || ow <= 0)
        return cdam_fail(err, CDAM_EINVAL, "resize: bad arguments (%dx%d to %dx%d)", in ? in->w : 0,
                         in ? in->h : 0, ow, oh);
    int w = in->w, h = in->h;
    // Horizontal pass first (torch interpolates the last dimension first), then vertical.
    // An axis whose size does not change is skipped: its weights would be exactly 1 and 0.
    if (ow == w && oh == h) {
        for (size_t i = 0; i < (size_t)w * h * 3; i++) out[i] = in->px[i];
        return 0;
    }
    float *tmp = NULL;
    aa_axis ax = {0}, ay = {0};
    int rc = CDAM_ENOMEM;
    if (ow != w && oh != h && !(tmp = malloc(sizeof(float) * (size_t)h * ow * 3))) goto done;
    if (ow != w) {
        if (aa_axis_init(&ax, w, ow) < 0) goto done;
        aa_horizontal(&ax, in->px, NULL, h, w, ow, tmp ? tmp : out);
    }
    if (oh != h) {
        if (aa_axis_init(&ay, h, oh) < 0) goto done;
        aa_vertical(&ay, tmp ? NULL : in->px, tmp, (size_t)ow * 3, oh, out);
    }
    rc = 0;
done:
    free(tmp);
    aa_axis_free(&ax);
    aa_axis_free(&ay);
    return rc < 0 ? cdam_fail(err, rc, "out of memory resizing %dx%d to %dx%d", w, h, ow, oh) : 0;
}

int img_to_input(const img_rgb8 *im, int H, int W, const float mean[3], const float std[3], float *out,
                 char *err) {
    if (!im || !im->px || H <= 0 || W <= 0 || !out)
        return cdam_fail(err, CDAM_EINVAL, "to_input: bad arguments");
    size_t plane = (size_t)H * W;
    if (im->h == H && im->w == W) {
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++) out[c * plane + i] = ((float)im->px[i * 3 + c] / 255.0f - mean[c]) / std[c];
        return 0;
    }
    float *rs = malloc(sizeof(float) * plane * 3);
    if (!rs) return cdam_fail(err, CDAM_ENOMEM, "out of memory resizing to %dx%d", W, H);
    int rc = img_resize_bilinear_aa(im, H, W, rs, err);
    if (rc == 0)
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++) out[c * plane + i] = (rs[i * 3 + c] / 255.0f - mean[c]) / std[c];
    free(rs);
    return rc;
}
