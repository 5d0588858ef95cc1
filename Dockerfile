# cdam-server as a container image (deploy/README.md; tested by `make container-test`).
#
#   docker build -t cdam .             (or: podman build --format docker -t cdam .)
#   docker run -p 8080:8080 -v cdam-data:/data cdam
#   docker run -p 8080:8080 -v cdam-data:/data -v "$PWD/models/dino:/models:ro" \
#     -e CDAM_MODEL="/models/dino-vits8.safetensors /models/cdam-head-imagenet.safetensors" cdam
#
# Two stages on debian:bookworm-slim: `build` has the compiler and the -dev packages and
# builds the binaries from core/, server/ and tools/healthcheck.c; the runtime stage has
# only the shared libraries they link, the stripped binaries, static/ and the demo model:
# no compiler, no headers, no curl. It runs as the unprivileged user cdam (uid/gid 10001),
# serves on 0.0.0.0:8080 and is configured by the CDAM_* variables (`cdam-server --help`
# lists them all; arguments after the image name are passed to cdam-server and win).
# Volumes: /data (--data-dir: the stored concepts; must be writable by uid 10001) and
# /models (extra safetensors files, read-only is fine: point CDAM_MODEL at them).
# Build with podman: --format docker, or the OCI format drops the HEALTHCHECK.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc make pkg-config libc6-dev libopenblas-dev libstb-dev libwebp-dev \
      libmicrohttpd-dev libcjson-dev libuv1-dev nettle-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# only what the binaries are built from, so that a change to the page, the model, the
# tests or the docs reuses the compiled layer
COPY Makefile ./
COPY core/ core/
COPY server/ server/
COPY tools/healthcheck.c tools/
RUN make -j"$(nproc)" build/cdam-server build/cdam build/cdam-healthcheck \
 && strip --strip-unneeded build/cdam-server build/cdam build/cdam-healthcheck

FROM ${DEBIAN_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# the shared libraries of `ldd build/cdam-server` (and what they pull in), nothing else
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libopenblas0-pthread libwebp7 libmicrohttpd12 libcjson1 libuv1 libnettle8 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
 && groupadd --system --gid 10001 cdam \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cdam \
 && mkdir -p /data /models \
 && chown 10001:10001 /data \
 && chmod 0750 /data
LABEL org.opencontainers.image.title="cdam" \
      org.opencontainers.image.description="Class-discriminative attention maps (CDAM) for vision transformers: HTTP service (cdam-server), demo page and demo model"
ENV CDAM_HOST=0.0.0.0 \
    CDAM_PORT=8080 \
    CDAM_MODEL=/app/models/fashion-vit.safetensors \
    CDAM_STATIC=/app/static \
    CDAM_DATA_DIR=/data
VOLUME ["/data", "/models"]
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/cdam-healthcheck", "--timeout-ms", "4000"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cdam-server"]
# the files last, the most often changed last: a new page or model rebuilds one layer
COPY --from=build /src/build/cdam-server /src/build/cdam /src/build/cdam-healthcheck /usr/local/bin/
COPY models/imagenet-labels.txt models/fashion-vit.safetensors /app/models/
COPY static/ /app/static/
