#!/bin/sh
# Installs the Debian packages cdam needs to build and test, and only those that are
# missing (idempotent; a no-op on a machine that has them all). Run as root, or with
# sudo available. Usage: tools/install-deps.sh [--ref] [--container] [--test] [--fuzz]   (--ref adds
# python3-torch etc. for `make test-ref`, regenerating the PyTorch goldens; never needed at
# run time; --container adds podman and debootstrap for `make container-test`, which builds
# and runs the Dockerfile's image without a Docker engine; --test adds Chromium (and
# Node.js if missing) for `make test`'s API and browser tests; --fuzz adds clang and its
# libFuzzer/sanitizer runtime for `make fuzz`).
set -eu
pkgs="gcc make pkg-config libc6-dev libopenblas-dev libstb-dev libwebp-dev libmicrohttpd-dev libcjson-dev libuv1-dev nettle-dev"
for arg in "$@"; do
  case $arg in
    --ref) pkgs="$pkgs python3 python3-torch python3-numpy python3-pil" ;;
    --container) pkgs="$pkgs podman debootstrap tar systemd" ;;
    # make test's end-to-end tests: the API and browser tests run on Node.js (20 or newer;
    # Debian's nodejs only where there is none) and Debian's Chromium
    --test) pkgs="$pkgs chromium"; command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs npm" ;;
    # make fuzz: Debian 12's clang (14) and the runtime holding libFuzzer and the sanitizers
    --fuzz) pkgs="$pkgs clang libclang-rt-14-dev" ;;
    *) echo "install-deps: unknown option $arg (--ref, --container, --test, --fuzz)" >&2; exit 2 ;;
  esac
done
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
