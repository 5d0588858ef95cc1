/* safetensors.h - strict reader of the safetensors format (mmap, bounds-checked).
 *
 * Usage:
 *     st_file f;
 *     char err[CDAM_ERR_MAX];
 *     if (st_open("m.safetensors", &f, err) < 0) { report(err); }
 *     const st_tensor *t = st_find(&f, "blocks.0.attn.qkv.weight");
 *     float *w = malloc(st_numel(t) * sizeof(float));
 *     st_to_f32(t, w);
 *     const char *heads = st_meta_get(&f, "num_heads");   // NULL if absent
 *     st_close(&f);
 *
 * Format: 8-byte little-endian header length n, n bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string", ...}}, then the byte buffer; offsets are relative
 * to the buffer. Checked: header length within the file, valid JSON of that shape,
 * known dtype, shape product * dtype size == end - begin, begin <= end <= buffer size,
 * no two tensors overlapping, no duplicate names, every byte of the buffer used. Any
 * violation is CDAM_EFORMAT with a message naming the file (label) and the tensor.
 *
 * Ownership: st_file owns its mapping (st_open) or borrows the caller's buffer
 * (st_parse: buf must outlive f), plus its parsed names; st_close releases them.
 * Tensor data pointers point into the mapping/buffer and may be unaligned.
 * Thread-safety: an opened st_file is read-only and may be shared.
 */
#ifndef CDAM_SAFETENSORS_H
#define CDAM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "errors.h"

#define ST_MAX_DIMS 8

typedef enum { ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const uint8_t *data;  // nbytes bytes, unaligned
    size_t nbytes;
} st_tensor;

typedef struct {
    char *key, *value;
} st_meta;

typedef struct {
    char *label;          // the path (or the label given to st_parse), for messages
    void *map;            // mmap'ed file, or NULL for st_parse
    size_t map_size;
    int ntensors;
    st_tensor *t;
    int nmeta;
    st_meta *meta;
} st_file;

int st_open(const char *path, st_file *f, char *err);
int st_parse(const uint8_t *buf, size_t len, const char *label, st_file *f, char *err);
void st_close(st_file *f);  // safe on a zeroed st_file

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta_get(const st_file *f, const char *key);
const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);
int64_t st_numel(const st_tensor *t);

// Converts a floating tensor (F64, F32, F16, BF16) to float32; CDAM_EUNSUPPORTED for
// other dtypes. out holds st_numel(t) floats.
int st_to_f32(const st_tensor *t, float *out);

#endif
