#!/bin/sh
# Makes sure the local podman store (vfs driver) has docker.io/library/debian:bookworm-slim
# without reaching Docker Hub: a minimal Debian 12 from the Debian mirror that apt already
# uses on this machine (debootstrap --variant=minbase, about 30 s), slimmed like the
# official -slim image, imported under that name, so that the Dockerfile's
# `FROM debian:bookworm-slim` resolves locally. Cached: a no-op when the image exists.
#
#   tests/container/base-image.sh            # CDAM_BASE_REBUILD=1 forces a new one
#
# Needs root, podman and debootstrap (tools/install-deps.sh --container installs them).
set -eu
IMAGE=docker.io/library/debian:bookworm-slim
SUITE=bookworm
podman() { command podman --storage-driver vfs "$@"; }

if [ "${CDAM_BASE_REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
  echo "base-image: $IMAGE is cached ($(podman image inspect --format '{{.Created}}' "$IMAGE" | cut -c1-19))"
  exit 0
fi

# The mirror (and security mirror) apt uses here, from apt's own view of its sources
# (works for sources.list and deb822 .sources alike).
targets=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null | sort -u)
mirror=$(printf '%s\n' "$targets" | awk -v s="$SUITE" '$2 == s && $3 == "main" { print $1; exit }')
security=$(printf '%s\n' "$targets" | awk -v s="$SUITE-security" '$2 == s && $3 == "main" { print $1; exit }')
updates=$(printf '%s\n' "$targets" | awk -v s="$SUITE-updates" '$2 == s && $3 == "main" { print $1; exit }')
if [ -z "$mirror" ]; then
  echo "base-image: apt has no '$SUITE main' source on this machine (apt-get update first?)" >&2
  exit 1
fi
mirror=${mirror%/}; security=${security%/}; updates=${updates%/}

dir=$(mktemp -d "${TMPDIR:-/tmp}/cdam-debootstrap.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
echo "base-image: debootstrap --variant=minbase $SUITE from $mirror"
t0=$(date +%s)
if ! nice -n 19 debootstrap --variant=minbase "$SUITE" "$dir/root" "$mirror" >"$dir/log" 2>&1; then
  tail -n 30 "$dir/log" >&2
  echo "base-image: debootstrap failed" >&2
  exit 1
fi
r=$dir/root
# apt sources as in the official image (deb822), on this machine's mirrors
{
  printf 'Types: deb\nURIs: %s\nSuites: %s%s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$SUITE" "$( [ -n "$updates" ] && printf ' %s-updates' "$SUITE")"
  [ -z "$security" ] || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$security" "$SUITE"
} >"$r/etc/apt/sources.list.d/debian.sources"
rm -f "$r/etc/apt/sources.list"
# slim it as the official -slim image does: no docs, man pages or locales now or later
cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' >"$r/etc/apt/apt.conf.d/docker-gzip-indexes"
printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$r/usr/share/man/"* "$r/usr/share/info/"* "$r/usr/share/groff/"* "$r/usr/share/lintian/"*
find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/"*.bin "$r/var/cache/apt/archives/"*.deb "$r/var/log/"*.log \
       "$r/var/log/apt/"* "$r/var/cache/debconf/"*-old "$r/dev/"* "$r/proc/"* "$r/sys/"* "$r/tmp/"* "$r/run/"*
: >"$r/etc/machine-id"
echo "base-image: importing $(du -sm "$r" | cut -f1) MB as $IMAGE"
tar --numeric-owner -C "$r" -c . | podman import --quiet --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $SUITE $mirror" - "$IMAGE" >/dev/null
echo "base-image: $IMAGE ready in $(( $(date +%s) - t0 )) s"
