/* stb_impl.c - the one translation unit that compiles stb_image (Debian's libstb-dev,
 * /usr/include/stb/stb_image.h, v2.27).
 *
 * Only the formats cdam accepts are compiled in: JPEG, PNG, BMP, GIF. TGA has no magic
 * bytes (random data could decode as TGA) and PSD/HDR/PIC/PNM are not wanted, so they
 * are disabled. Decoding is from memory only (STBI_NO_STDIO). STBI_MAX_DIMENSIONS caps
 * either side at 65536; image.c applies the real pixel-count limit before decoding.
 *
 * stbi_failure_reason(): in v2.27 the reason is a thread-local (_Thread_local with C11,
 * __thread otherwise) unless STBI_NO_THREAD_LOCALS is defined, so reading it right after
 * a failed call is reentrant. It only affects the wording of error messages anyway.
 *
 * Known stb 2.27 bug worked around in image.c (jpeg_scan): a DHT table declaring more than
 * 256 codes overflows stbi__build_huffman's arrays; such JPEGs never reach stb.
 */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_PSD
#define STBI_NO_TGA
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STBI_NO_PNM
#define STBI_NO_LINEAR
#define STBI_MAX_DIMENSIONS (1 << 16)
// Zeroed allocations: on hostile JPEGs (e.g. a scan using a Huffman or quantisation table
// that was never defined) stb reads parts of its decoder state that nothing wrote, and the
// pixels would then depend on old heap contents (found with valgrind on mutated files).
// calloc makes that deterministic and leaks nothing; its cost is negligible next to decoding.
#include <stdlib.h>
// Allocation failures inside stb on this thread: image.c tells "out of memory" from
// "corrupt data" with it (stbi_info's failure reason is always "unknown image type").
_Thread_local unsigned long img_stb_oom;
static void *stb_calloc(size_t n) {
    void *p = calloc(1, n);
    if (!p) img_stb_oom++;
    return p;
}
__attribute__((noinline)) static void *stb_realloc(void *p, size_t n) {  // (inlined, GCC 12 misreads stb's failure path as use-after-free)
    void *q = realloc(p, n);
    if (!q && n) img_stb_oom++;
    return q;
}
#define STBI_MALLOC(sz) stb_calloc(sz)
#define STBI_REALLOC(p, newsz) stb_realloc(p, newsz)
#define STBI_FREE(p) free(p)
// stbi__getn does memcpy(NULL, src, 0) for a PNG whose first IDAT chunk is empty: harmless
// with glibc, but undefined behaviour that `make SANITIZE=undefined` aborts on.
#include <string.h>
static inline void *stb_memcpy(void *dst, const void *src, size_t n) { return n ? memcpy(dst, src, n) : dst; }
#define memcpy stb_memcpy

// GCC shows no warnings for v2.27 from /usr/include (a system header); these keep -Werror
// builds working with another stb version or a copy of the header outside system paths.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
