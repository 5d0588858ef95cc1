/* request.h - parsing and validation of the server's request bodies (no HTTP, no I/O).
 *
 * Usage:
 *     cJSON *root = cJSON_ParseWithLength(body, len);         // a JSON body, or
 *     cJSON *root = srv_fields_new(); srv_fields_add(root, "methods", "cdam,am"); ...
 *                                                             // multipart fields
 *     srv_explain_req r; srv_error e;
 *     if (srv_parse_explain(root, model, max_size, &r, &e) < 0) reply(e.status, e.code, e.msg);
 *     ...
 *     srv_explain_req_free(&r);
 *
 * Everything a client sends is validated here against the model (class indices and
 * labels, embedding length, sizes), so the workers only ever see valid requests. Both
 * body kinds go through the same validator: multipart fields are first turned into the
 * JSON value they stand for (srv_fields_add).
 *
 * Ownership: srv_explain_req owns its embedding (free with srv_explain_req_free).
 * Thread-safety: pure functions; any thread.
 */
#ifndef CDAM_SRV_REQUEST_H
#define CDAM_SRV_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "explain.h"
#include "model.h"

#define SRV_MAX_TARGETS 64    // classes + concept + embedding in one request
#define SRV_MAX_IMAGES 32     // images of one concept

// An HTTP error: status, machine code ("bad_json", ...), human message.
typedef struct {
    int status;
    const char *code;
    char msg[320];
} srv_error;

// Fills e and returns -1 (for `return srv_fail(e, 400, "bad_json", "...")`).
int srv_fail(srv_error *e, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

typedef struct {
    int methods[EXPLAIN_NMETHODS];  // explain_method values, request order, no repeats
    int nmethods;
    int classes[SRV_MAX_TARGETS];   // class indices, request order
    int nclasses;
    int default_class;              // classes absent: the top-1 prediction comes first
    int has_concept;                // a stored concept id (looked up by the caller)
    char concept_id[33];
    int has_embedding;
    float *embedding;               // (D) concept_embedding, malloc'd
    int H, W;                       // input size the model runs at
    int top_k;
    int head;                       // AM head, -1 = mean
    float threshold;                // AM mass threshold, 0 = off
    int samples;                    // Smooth samples / Integrated steps
    float sigma;
    uint64_t seed;
    int png;                        // format png
    int async;
} srv_explain_req;

// Validates root (a JSON object) as the fields of POST /explain (all but the image) for
// model m, sizes up to max_h x max_w. 0, or -1 with e filled (the request is then freed).
int srv_parse_explain(const cJSON *root, const vit_model *m, int max_h, int max_w, srv_explain_req *r, srv_error *e);
void srv_explain_req_free(srv_explain_req *r);

// Multipart form fields as a JSON object: srv_fields_add converts a field's text to the
// JSON value it stands for: "methods", "classes" (comma-separated or repeated fields;
// numbers become indices), "size" ("[224,224]", "224,224", "224x224"),
// "concept_embedding" (JSON array text), numbers, "async" (true/false/1/0), strings.
// A field it cannot convert is kept as a string, so the validator reports it.
// 0 or -1 (out of memory).
cJSON *srv_fields_new(void);
int srv_fields_add(cJSON *obj, const char *key, const char *text);

// Decodes base64 (standard or URL alphabet, padding optional, whitespace ignored, an
// optional "data:...;base64," prefix) into a malloc'd buffer. 0 or -1 (e filled:
// 400 bad_base64, or 500 on out of memory).
int srv_base64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len, srv_error *e);

#endif
