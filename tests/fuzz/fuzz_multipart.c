/* fuzz_multipart.c - libFuzzer target: a raw multipart/form-data body through the
 * server's own HTTP handlers and libmicrohttpd's real post processor.
 *
 * server/http.c is compiled into this file (#include), so its static handlers run
 * unchanged: an in-process libmicrohttpd daemon without a listen socket (driven by
 * MHD_run from this thread) gets one end of a socketpair per request through
 * MHD_add_connection; the other end writes
 *     POST /explain (then POST /concepts) HTTP/1.1
 *     Content-Type: multipart/form-data; boundary=cdamfuzzboundary
 *     Content-Length: <input size>
 * and the input as the body, then reads the answer until the connection closes. The
 * handlers parse the body with MHD_create_post_processor / post_iter (fields, image
 * parts, repeated and over-long fields, too many images), turn the fields into JSON
 * (srv_fields_add) and validate them (srv_parse_explain against the small test model,
 * the concept name). The work queue has no room (cfg.queue = 0), so a valid request is
 * answered 503 without decoding or running the model: image decoding is fuzz_image's.
 * An input that starts with '{' is sent as application/json instead, through the same
 * handlers (body_fields' JSON half: the "image" / "images" base64 strings).
 * Invariants: every request gets an answer (no hang; no 5xx other than 503) and the
 * connection closes.
 */
#include "../../server/http.c"

#include <sys/socket.h>
#include <time.h>

#include "fuzz.h"

#define BOUNDARY "cdamfuzzboundary"
#define MAX_ROUNDS 20000  // MHD_run calls per request before it counts as a hang

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double srv_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void srv_log(const char *fmt, ...) { (void)fmt; }  // quiet: one line per request otherwise

static srv S;
static struct MHD_Daemon *D;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("CDAM_FUZZ_MODEL");
    if (!path || !*path) path = FUZZ_DEFAULT_MODEL;
    char err[CDAM_ERR_MAX];
    if (vit_model_load(&path, 1, NULL, &S.model, err) < 0) {
        fprintf(stderr, "fuzz_multipart: cannot load %s (run from the repository root): %s\n", path, err);
        exit(2);
    }
    S.max_h = S.max_w = 480;  // cdam-server's default --max-size for a small model
    S.cfg.max_body_mb = 32;
    S.cfg.queue = 0;          // every task is refused: 503, nothing decoded
    S.cfg.job_ttl_s = 600;
    S.cfg.tam_sync_gflop = 50;
    S.cfg.max_pixels = 40000000L;
    atomic_store(&S.ready, 1);
    uv_mutex_init(&S.qlock);
    uv_cond_init(&S.qcond);
    if (!(S.metrics = srv_metrics_create()) || !(S.jobs = srv_jobs_create(16, 600))) {
        fprintf(stderr, "fuzz_multipart: out of memory\n");
        exit(2);
    }
    D = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, &S,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &S,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                         MHD_OPTION_END);
    if (!D) {
        fprintf(stderr, "fuzz_multipart: cannot start libmicrohttpd\n");
        exit(2);
    }
    return 0;
}

// Sends one request with body and returns the answer's HTTP status (0 if none came).
static int one_request(const char *path, const char *type, const uint8_t *body, size_t n) {
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0, "socketpair: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(MHD_add_connection(D, sv[1], (struct sockaddr *)&a, sizeof a) == MHD_YES, "MHD_add_connection");
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                      path, type, n);
    size_t total = (size_t)hn + n, sent = 0, got = 0;
    char *req = malloc(total ? total : 1), answer[64] = "";
    FUZZ_CHECK(req != NULL, "out of memory");
    memcpy(req, head, (size_t)hn);
    if (n) memcpy(req + hn, body, n);
    int closed = 0;
    for (int round = 0; round < MAX_ROUNDS && !closed; round++) {
        while (sent < total) {
            ssize_t k = write(sv[0], req + sent, total - sent);
            if (k <= 0) break;  // EAGAIN: MHD has to read first; EPIPE: it closed early
            sent += (size_t)k;
        }
        MHD_run(D);
        for (;;) {
            char buf[4096];
            ssize_t k = read(sv[0], buf, sizeof buf);
            if (k == 0) closed = 1;
            if (k <= 0) break;
            size_t keep = got < sizeof answer - 1 ? sizeof answer - 1 - got : 0;
            if (keep > (size_t)k) keep = (size_t)k;
            memcpy(answer + got, buf, keep);
            got += keep;
            answer[got] = 0;
        }
    }
    FUZZ_CHECK(closed, "%s: the connection is still open after %d rounds (sent %zu of %zu bytes, answer \"%.40s\")", path,
               MAX_ROUNDS, sent, total, answer);
    close(sv[0]);
    free(req);
    int status = 0;
    if (sscanf(answer, "HTTP/1.1 %d", &status) != 1) status = 0;
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const paths[] = {"/explain", "/concepts"};
    // a body that starts with '{' goes in as JSON (body_fields' other half: base64 images)
    const char *type = size && data[0] == '{' ? "application/json" : "multipart/form-data; boundary=" BOUNDARY;
    for (int i = 0; i < 2; i++) {
        int status = one_request(paths[i], type, data, size);
        FUZZ_CHECK(status == 400 || status == 413 || status == 503, "%s answered %d", paths[i], status);
    }
    return 0;
}
