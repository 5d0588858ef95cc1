/* json.h - a small strict JSON parser for the few JSON texts the core reads (the
 * safetensors header and its metadata values such as labels and mean/std arrays).
 *
 * Usage:
 *     json_value *v = json_parse(text, len, err);      // NULL and a reason on error
 *     const json_value *x = json_get(v, "dtype");       // object member or NULL
 *     json_free(v);
 *
 * Strict RFC 8259: no comments, no trailing commas, no NaN; nesting depth limited to
 * JSON_MAX_DEPTH; strings are unescaped to UTF-8 (\u escapes incl. surrogate pairs) and
 * may not contain NUL. Integers that fit in int64 are kept exactly (is_int). Duplicate
 * object keys are an error. Ownership: the returned tree is one allocation graph freed
 * by json_free. Thread-safety: reentrant, no globals.
 */
#ifndef CDAM_JSON_H
#define CDAM_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 32

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    int is_int;               // JSON_NUMBER written as an integer that fits int64
    int64_t i;                // its value when is_int
    double num;               // JSON_NUMBER (also set for integers), JSON_BOOL (0/1)
    char *str;                // JSON_STRING, NUL-terminated
    size_t len;               // string length, or number of items/members
    struct json_value *items; // JSON_ARRAY items / JSON_OBJECT member values
    char **keys;              // JSON_OBJECT member names
} json_value;

json_value *json_parse(const char *text, size_t len, char *err);
void json_free(json_value *v);
const json_value *json_get(const json_value *obj, const char *key);

#endif
