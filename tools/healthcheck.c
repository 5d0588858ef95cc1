/* cdam-healthcheck - the container's health probe (the image has no curl or wget).
 *
 *   cdam-healthcheck [--host H] [--port P] [--path /healthz] [--timeout-ms N]
 *
 * Sends "GET /healthz" over a plain TCP socket to the local cdam-server and exits 0 when
 * the answer's status is 200, 1 otherwise (refused, timed out, 503 while loading, ...),
 * printing one line that says which. The host and port default to CDAM_HOST and
 * CDAM_PORT, as the server reads them (a wildcard address such as 0.0.0.0 or :: means the
 * loopback address of that family), else 127.0.0.1 and 8080; the whole exchange is bounded
 * by --timeout-ms (default 3000). /healthz needs no API key even with --api-key.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int usage(void) {
    fprintf(stderr, "usage: cdam-healthcheck [--host H] [--port P] [--path /healthz] [--timeout-ms N]\n"
                    "exit 0 when GET PATH answers 200; host/port default to CDAM_HOST/CDAM_PORT\n");
    return 2;
}

// Waits for `events` on fd until the deadline; 1 ready, 0 timed out, -1 error.
static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)left + 1);
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

// One attempt on one address: 1 healthy, 0 answered but not 200, -1 no answer.
static int probe(const struct addrinfo *ai, const char *host, const char *path, double deadline, char *why, size_t whyn) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(why, whyn, "socket: %s", strerror(errno));
        return -1;
    }
    int rc = -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            snprintf(why, whyn, "connect: %s", strerror(errno));
            goto out;
        }
        int w = wait_fd(fd, POLLOUT, deadline), err = 0;
        socklen_t len = sizeof err;
        if (w <= 0) {
            snprintf(why, whyn, "connect: %s", w == 0 ? "timed out" : strerror(errno));
            goto out;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            snprintf(why, whyn, "connect: %s", strerror(err ? err : errno));
            goto out;
        }
    }
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: cdam-healthcheck\r\nConnection: close\r\n\r\n",
                     path, host);
    if (n < 0 || (size_t)n >= sizeof req) {
        snprintf(why, whyn, "path too long");
        goto out;
    }
    for (int sent = 0; sent < n;) {
        ssize_t k = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (k > 0) {
            sent += (int)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) > 0) continue;
            snprintf(why, whyn, "send: timed out");
        } else {
            snprintf(why, whyn, "send: %s", k < 0 ? strerror(errno) : "closed");
        }
        goto out;
    }
    char buf[256];
    size_t got = 0;
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
        ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (k > 0) {
            got += (size_t)k;
            continue;
        }
        if (k == 0) break;
        if (errno == EAGAIN || errno == EINTR) {
            if (wait_fd(fd, POLLIN, deadline) > 0) continue;
            snprintf(why, whyn, "no answer in time");
            goto out;
        }
        snprintf(why, whyn, "recv: %s", strerror(errno));
        goto out;
    }
    buf[got] = 0;
    char *eol = strpbrk(buf, "\r\n");
    if (eol) *eol = 0;
    int major, minor, status;
    if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
        snprintf(why, whyn, "not an HTTP answer: \"%.60s\"", buf);
        goto out;
    }
    snprintf(why, whyn, "%.100s", buf);
    rc = status == 200 ? 1 : 0;
out:
    close(fd);
    return rc;
}

int main(int argc, char **argv) {
    const char *host = getenv("CDAM_HOST"), *port = getenv("CDAM_PORT"), *path = "/healthz";
    long timeout_ms = 3000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        if (i + 1 >= argc) return usage();
        if (!strcmp(a, "--host")) host = argv[++i];
        else if (!strcmp(a, "--port")) port = argv[++i];
        else if (!strcmp(a, "--path")) path = argv[++i];
        else if (!strcmp(a, "--timeout-ms")) {
            char *end;
            timeout_ms = strtol(argv[++i], &end, 10);
            if (*end || timeout_ms < 1 || timeout_ms > 600000) return usage();
        } else return usage();
    }
    if (!host || !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "*")) host = "127.0.0.1";
    else if (!strcmp(host, "::") || !strcmp(host, "[::]")) host = "::1";
    if (!port || !*port) port = "8080";
    if (path[0] != '/') return usage();
    // a hard stop in case a resolver or kernel call ignores the deadline: SIGALRM kills us (non-zero)
    alarm((unsigned)(timeout_ms / 1000 + 2));
    double deadline = now_ms() + (double)timeout_ms;

    char h[256];
    snprintf(h, sizeof h, "%s", host);
    size_t hl = strlen(h);
    if (hl > 2 && h[0] == '[' && h[hl - 1] == ']') memmove(h, h + 1, hl - 2), h[hl - 2] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(h, port, &hints, &res);
    if (e) {
        printf("unhealthy: %s:%s: %s\n", h, port, gai_strerror(e));
        return 1;
    }
    char why[160] = "no address";
    int rc = -1;
    for (struct addrinfo *ai = res; ai && rc < 0; ai = ai->ai_next) rc = probe(ai, h, path, deadline, why, sizeof why);
    freeaddrinfo(res);
    int v6 = strchr(h, ':') != NULL;
    printf("%s: GET http://%s%s%s:%s%s: %s\n", rc == 1 ? "healthy" : "unhealthy", v6 ? "[" : "", h, v6 ? "]" : "", port, path,
           why);
    return rc == 1 ? 0 : 1;
}
