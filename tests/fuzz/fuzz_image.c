/* fuzz_image.c - libFuzzer target: image decoding of every format (JPEG, PNG, BMP, GIF,
 * WebP) exactly as cdam-server decodes an upload, then the model-input preprocessing.
 *
 * Path under test (server/work.c run_explain / run_concept): img_decode(bytes, len,
 * cfg.max_pixels) with the server's default limit (--max-megapixels 40), then
 * img_to_input(&im, H, W, mean, std) to a model input size (for images up to 1 megapixel). Also img_sniff and img_probe
 * (same header reader), with their results cross-checked against the decode.
 * Invariants: a decoded image has 1 <= w, h, w*h within the limit, the size img_probe
 * announced, and every preprocessed value is finite and within the normalised range.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "image.h"

#define SERVER_MAX_PIXELS (40 * 1000000L)  // cdam-server --max-megapixels default
#define RESIZE_MAX_PIXELS (1L << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[CDAM_ERR_MAX];
    const char *sniffed = img_sniff(data, size);
    int pw = 0, ph = 0;
    const char *fmt = NULL;
    int prc = img_probe(data, size, &pw, &ph, &fmt, err);
    if (prc == 0) FUZZ_CHECK(pw > 0 && ph > 0 && fmt && sniffed && !strcmp(fmt, sniffed), "probe %dx%d %s", pw, ph, fmt ? fmt : "-");

    img_rgb8 im;
    int rc = img_decode(data, size, SERVER_MAX_PIXELS, &im, err);
    FUZZ_CHECK(memchr(err, 0, sizeof err) != NULL || rc == 0, "unterminated error message");
    if (rc < 0) {
        FUZZ_CHECK(im.px == NULL && im.w == 0 && im.h == 0, "failed decode left a buffer");
        FUZZ_CHECK(rc == CDAM_EFORMAT || rc == CDAM_ELIMIT || rc == CDAM_EUNSUPPORTED || rc == CDAM_ENOMEM, "rc %d: %s", rc, err);
        img_free(&im);
        return 0;
    }
    FUZZ_CHECK(prc == 0 && im.w == pw && im.h == ph, "decoded %dx%d, probe said %dx%d (rc %d)", im.w, im.h, pw, ph, prc);
    FUZZ_CHECK(im.px && im.w > 0 && im.h > 0 && (long)im.w * im.h <= SERVER_MAX_PIXELS, "decoded %dx%d", im.w, im.h);

    // Preprocess as the server: to the model's native size (32 for the test model) and to
    // a size the request may choose (multiples of the patch size), here taken from the
    // data so both up- and downsampling of every shape are reached. The sizes are kept
    // small (at most 96) and images over RESIZE_MAX_PIXELS are decoded but not resized:
    // the resize is the same code at any size, and large ones under ASan+UBSan would slow
    // fuzzing to a crawl (a 224x224 resize alone takes about 9 ms there).
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    int sizes[2][2] = {{32, 32}, {8 * (1 + data[size - 1] % 12), 8 * (1 + data[size / 2] % 12)}};
    for (int s = 0; s < 2 && (long)im.w * im.h <= RESIZE_MAX_PIXELS; s++) {
        int H = sizes[s][0], W = sizes[s][1];
        float *x = malloc(sizeof(float) * 3 * (size_t)H * W);  // exact size: ASan sees any overrun
        FUZZ_CHECK(x != NULL, "out of memory");
        rc = img_to_input(&im, H, W, mean, std, x, err);
        FUZZ_CHECK(rc == 0, "img_to_input %dx%d -> %dx%d: %s", im.w, im.h, W, H, err);
        for (long i = 0; i < 3L * H * W; i++) {
            int c = (int)(i / ((long)H * W));
            float lo = (0 - mean[c]) / std[c] - 1e-3f, hi = (1 - mean[c]) / std[c] + 1e-3f;
            FUZZ_CHECK(isfinite(x[i]) && x[i] >= lo && x[i] <= hi, "input[%ld] = %g", i, x[i]);
        }
        free(x);
    }
    img_free(&im);
    return 0;
}
