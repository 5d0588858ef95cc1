/* fuzz_request.c - libFuzzer target: the request parsers of server/request.c against a
 * small model (tests/data/models/tiny.safetensors, loaded once).
 *
 * The first byte selects what the rest of the input is (byte % 4, so '0'..'3' in text seeds):
 *   0  a JSON body of POST /explain or POST /concepts: cJSON_ParseWithLength, the
 *      base64 "image" / "images" strings through srv_base64_decode, srv_parse_explain
 *   1  multipart form fields, one "key=value" a line, through srv_fields_new /
 *      srv_fields_add (repeated keys as the server sees them), then srv_parse_explain
 *   2  base64 text through srv_base64_decode (data: URLs, URL alphabet, padding, spaces);
 *      a decoded result must re-encode and decode to the same bytes
 *   3  one form field: the second byte picks the key (size, classes, methods, async,
 *      top_k, ...), the rest is its text; srv_fields_add then srv_parse_explain
 * Invariants: a request srv_parse_explain accepts is within the model's bounds (methods,
 * class indices, size a multiple of the patch size up to the maximum, top_k, head,
 * samples, sigma, threshold, a finite embedding of D floats); a refused one has a 4xx/5xx
 * status, a code and nothing left allocated.
 */
#include <math.h>
#include <string.h>

#include <nettle/base64.h>

#include "fuzz.h"
#include "model.h"
#include "request.h"

#define MAX_SIDE 480  // cdam-server's default --max-size for a small model: max(480, native)

static vit_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("CDAM_FUZZ_MODEL");
    if (!path || !*path) path = FUZZ_DEFAULT_MODEL;
    char err[CDAM_ERR_MAX];
    if (vit_model_load(&path, 1, NULL, &model, err) < 0) {
        fprintf(stderr, "fuzz_request: cannot load %s (run from the repository root): %s\n", path, err);
        exit(2);
    }
    return 0;
}

static void check_explain(const cJSON *root) {
    const vit_config *c = &model->cfg;
    srv_explain_req r;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (srv_parse_explain(root, model, MAX_SIDE, MAX_SIDE, &r, &e) < 0) {
        FUZZ_CHECK(e.status >= 400 && e.status < 600 && e.code && memchr(e.msg, 0, sizeof e.msg), "error status %d", e.status);
        FUZZ_CHECK(r.embedding == NULL, "refused request kept its embedding");
        return;
    }
    FUZZ_CHECK(r.nmethods >= 1 && r.nmethods <= EXPLAIN_NMETHODS, "nmethods %d", r.nmethods);
    for (int i = 0; i < r.nmethods; i++) {
        FUZZ_CHECK(r.methods[i] >= 0 && r.methods[i] < EXPLAIN_NMETHODS, "method %d", r.methods[i]);
        for (int j = 0; j < i; j++) FUZZ_CHECK(r.methods[i] != r.methods[j], "repeated method");
    }
    FUZZ_CHECK(r.nclasses >= 0 && r.nclasses + r.has_concept + r.has_embedding <= SRV_MAX_TARGETS, "%d targets", r.nclasses);
    for (int i = 0; i < r.nclasses; i++) FUZZ_CHECK(r.classes[i] >= 0 && r.classes[i] < c->C, "class %d", r.classes[i]);
    FUZZ_CHECK(r.nclasses + r.has_concept + r.has_embedding + r.default_class > 0, "no target");
    FUZZ_CHECK(r.H >= c->P && r.W >= c->P && r.H % c->P == 0 && r.W % c->P == 0 && r.H <= MAX_SIDE && r.W <= MAX_SIDE,
               "size %dx%d", r.H, r.W);
    FUZZ_CHECK(r.top_k >= 0 && r.top_k <= c->C, "top_k %d", r.top_k);
    FUZZ_CHECK(r.head >= -1 && r.head < c->H, "head %d", r.head);
    FUZZ_CHECK(r.samples >= 1 && r.samples <= 256, "samples %d", r.samples);
    FUZZ_CHECK(r.sigma > 0 && r.sigma <= 100, "sigma %g", r.sigma);
    FUZZ_CHECK(r.threshold >= 0 && r.threshold <= 1, "threshold %g", r.threshold);
    FUZZ_CHECK(r.seed <= 9007199254740991ULL, "seed");
    if (r.has_concept) FUZZ_CHECK(strlen(r.concept_id) < sizeof r.concept_id, "concept id");
    FUZZ_CHECK(!r.has_embedding == !r.embedding, "embedding");
    for (int i = 0; r.has_embedding && i < c->D; i++) FUZZ_CHECK(isfinite(r.embedding[i]), "embedding[%d]", i);
    srv_explain_req_free(&r);
}

static void check_base64(const char *s, size_t len) {
    unsigned char *out;
    size_t n;
    srv_error e;
    if (srv_base64_decode(s, len, &out, &n, &e) < 0) {
        FUZZ_CHECK(out == NULL && n == 0 && e.status >= 400, "refused base64 status %d", e.status);
        return;
    }
    FUZZ_CHECK(out != NULL && n <= len / 4 * 3 + 3, "%zu bytes from %zu characters", n, len);
    // re-encode (standard alphabet, padded) and decode again: the same bytes
    char *enc = malloc(BASE64_ENCODE_RAW_LENGTH(n) + 1);
    FUZZ_CHECK(enc != NULL, "out of memory");
    base64_encode_raw(enc, n, out);
    size_t elen = BASE64_ENCODE_RAW_LENGTH(n);
    unsigned char *back = NULL;
    size_t m = 0;
    if (n > 0) {
        FUZZ_CHECK(srv_base64_decode(enc, elen, &back, &m, &e) == 0, "re-encoded base64 refused: %s", e.msg);
        FUZZ_CHECK(m == n && !memcmp(back, out, n), "round trip changed the bytes");
    }
    free(back);
    free(enc);
    free(out);
}

// POST /explain and POST /concepts with a JSON body, as server/http.c body_fields reads it.
static void json_body(const char *text, size_t len) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return;
    const char *keys[2] = {"image", "images"};
    for (int k = 0; k < 2; k++) {
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(root, keys[k]), *it;
        if (cJSON_IsString(im)) check_base64(im->valuestring, strlen(im->valuestring));
        if (cJSON_IsArray(im) && cJSON_GetArraySize(im) <= SRV_MAX_IMAGES)
            cJSON_ArrayForEach(it, im) if (cJSON_IsString(it)) check_base64(it->valuestring, strlen(it->valuestring));
    }
    check_explain(root);
    cJSON_Delete(root);
}

// "key=value" lines as multipart text fields.
static void form_fields(const char *text, size_t len) {
    cJSON *obj = srv_fields_new();
    FUZZ_CHECK(obj != NULL, "out of memory");
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = malloc(n + 1);
        FUZZ_CHECK(line != NULL, "out of memory");
        memcpy(line, p, n);
        line[n] = 0;  // a NUL inside cuts the value, as the C string the server passes on
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = 0;
            FUZZ_CHECK(srv_fields_add(obj, line, eq + 1) == 0, "srv_fields_add");
        }
        free(line);
        p += n + 1;
    }
    check_explain(obj);
    cJSON_Delete(obj);
}

static void one_field(const uint8_t *data, size_t size) {
    static const char *const keys[] = {"size", "classes", "methods", "async", "top_k", "head", "samples", "seed",
                                       "sigma", "threshold", "concept_embedding", "concept", "format", "name"};
    if (size < 1) return;
    const char *key = keys[data[0] % (sizeof keys / sizeof *keys)];
    char *text = malloc(size);
    FUZZ_CHECK(text != NULL, "out of memory");
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    cJSON *obj = srv_fields_new();
    FUZZ_CHECK(obj != NULL && srv_fields_add(obj, key, text) == 0, "srv_fields_add");
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(obj, key) != NULL, "field %s missing after srv_fields_add", key);
    check_explain(obj);
    cJSON_Delete(obj);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: json_body(text, len); break;
    case 1: form_fields(text, len); break;
    case 2: check_base64(text, len); break;
    default: one_field(data + 1, len); break;
    }
    return 0;
}
