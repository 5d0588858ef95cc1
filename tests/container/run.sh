#!/bin/sh
# Builds the Dockerfile's image with podman (no Docker engine) from a clean copy of the
# tree and runs it as the image says, then validates deploy/ and openapi.yaml.
#
#   tests/container/run.sh          (as root; `make container-test`)
#
# Steps (tests/container/README.md): the schema checks of check.mjs; the base image
# debian:bookworm-slim made offline by base-image.sh (cached in podman's store); a build
# context of the files git lists (tracked, and untracked unless ignored) plus static/ and
# the demo model; `podman build` (layers cached between runs); the image's configuration;
# its file system exported and started with `chroot --userspec=<the image's USER>` in a
# private mount namespace (read-only root, /data and /tmp writable, as in deploy/k8s);
# HTTP checks on a loopback port; the image's HEALTHCHECK command; SIGTERM.
# Environment: CDAM_IMAGE (tag, default localhost/cdam:test); CDAM_DEV_MODEL (demo model
# used while models/fashion-vit.safetensors is missing, default
# /tmp/devmodel/fashion-vit.safetensors); CDAM_KEEP_TMP=1 keeps the work folder.
# The last line is "container: N passed, N failed"; the exit status is 1 on any failure.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
IMAGE=${CDAM_IMAGE:-localhost/cdam:test}
BUILD_IMAGE=${IMAGE%:*}-build:${IMAGE##*:}
DEV_MODEL=${CDAM_DEV_MODEL:-/tmp/devmodel/fashion-vit.safetensors}
SIZE_LIMIT_MB=250   # MiB; the runtime image: ~74 MiB base + ~45 MiB libraries + binaries, page, model
pass=0; fail=0
work=""; ctr=""; srv_pid=""
t_start=$(date +%s)

podman() { command podman --storage-driver vfs "$@"; }
ok() { pass=$((pass + 1)); echo "ok - $*"; }
bad() { fail=$((fail + 1)); echo "not ok - $*"; }
note() { echo "# $*"; }
# check DESC COMMAND...: ok when the command succeeds; its output goes to the log, and
# its tail to the report when it fails
check() {
  desc=$1; shift
  if "$@" >"$work/check.log" 2>&1; then ok "$desc"; else bad "$desc"; sed 's/^/#   /' "$work/check.log" | tail -n 15; fi
}
cleanup() {
  if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then kill -KILL "$srv_pid" 2>/dev/null; fi
  [ -z "$ctr" ] || podman rm -f "$ctr" >/dev/null 2>&1
  if [ -n "$work" ] && [ "${CDAM_KEEP_TMP:-0}" != 1 ]; then rm -rf "$work"; fi
  [ "${CDAM_KEEP_TMP:-0}" != 1 ] || [ -z "$work" ] || echo "# kept $work"
}
finish() {
  cleanup
  note "took $(( $(date +%s) - t_start )) s"
  echo "container: $pass passed, $fail failed"
  [ "$fail" -eq 0 ] && exit 0
  exit 1
}
trap 'cleanup; exit 1' INT TERM
secs() { echo "$(( $(date +%s) - $1 )) s"; }

# ---- preflight -------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/cdam-container.XXXXXX") || { bad "mktemp"; finish; }
missing=""
for t in podman debootstrap node npm git tar chroot unshare mount awk; do
  command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
  bad "tools present (missing:$missing; tools/install-deps.sh --container installs podman and debootstrap; Node 20+ and npm are needed for the validators)"
  finish
fi
if [ "$(id -u)" -ne 0 ]; then
  bad "running as root (podman's vfs store, chroot and mount namespaces need it)"
  finish
fi
major=$(node -e 'process.stdout.write(process.versions.node.split(".")[0])')
[ "$major" -ge 20 ] 2>/dev/null || { bad "node $(node --version) is 20 or newer"; finish; }
ok "tools present: $(podman --version), debootstrap $(debootstrap --version | cut -d' ' -f2), node $(node --version)"

# ---- validators (deploy/, openapi.yaml) -------------------------------------------------
if [ ! -d "$here/node_modules" ]; then
  note "installing the pinned validators (npm ci in tests/container)"
  if ! (cd "$here" && npm ci --no-audit --no-fund >"$work/npm.log" 2>&1); then
    tail -n 20 "$work/npm.log" | sed 's/^/#   /'
    bad "npm ci of the validators (tests/container/package-lock.json)"
    finish
  fi
fi
(cd "$here" && node check.mjs validate "$root") >"$work/validate.out" 2>"$work/validate.err"
vrc=$?
cat "$work/validate.out"
p=$(grep -c '^ok - ' "$work/validate.out"); f=$(grep -c '^not ok - ' "$work/validate.out")
pass=$((pass + p)); fail=$((fail + f))
if [ "$vrc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "check.mjs validate exited $vrc"; sed 's/^/#   /' "$work/validate.err" | tail -n 15; fi

# ---- the base image, offline -----------------------------------------------------------
t0=$(date +%s)
if "$here/base-image.sh" >"$work/base.log" 2>&1; then
  ok "base image docker.io/library/debian:bookworm-slim in the local store ($(secs "$t0"))"
  sed 's/^/# /' "$work/base.log"
else
  bad "base image docker.io/library/debian:bookworm-slim (tests/container/base-image.sh)"
  sed 's/^/#   /' "$work/base.log" | tail -n 20
  finish
fi

# ---- a clean build context -------------------------------------------------------------
ctx=$work/context
mkdir -p "$ctx"
(
  set -e
  cd "$root"
  # the files git would commit: tracked ones that exist, and untracked ones not ignored
  git ls-files -z --cached --others --exclude-standard >"$work/files0"
  tr '\0' '\n' <"$work/files0" | while IFS= read -r f; do [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\0' "$f"; done >"$work/files"
  # static/ even where untracked, and the demo model
  [ ! -d static ] || find static -type f -print0 >>"$work/files"
  [ ! -f models/fashion-vit.safetensors ] || printf '%s\0' models/fashion-vit.safetensors >>"$work/files"
  tar --null -T "$work/files" -c | tar -x -C "$ctx"
)
rc=$?
if [ ! -f "$ctx/models/fashion-vit.safetensors" ] && [ -f "$DEV_MODEL" ]; then
  mkdir -p "$ctx/models" && cp -p "$DEV_MODEL" "$ctx/models/fashion-vit.safetensors"
  note "WARNING: models/fashion-vit.safetensors is missing: building with $DEV_MODEL in its place"
fi
chmod -R u+rwX,go+rX,go-w "$ctx"
if [ "$rc" -eq 0 ] && [ -f "$ctx/Dockerfile" ] && [ -f "$ctx/models/fashion-vit.safetensors" ]; then
  ok "build context: $(tr -cd '\0' <"$work/files" | wc -c) files of the work tree + the demo model ($(du -sm "$ctx" | cut -f1) MB), no build output"
else
  bad "build context (exit $rc; Dockerfile $( [ -f "$ctx/Dockerfile" ] && echo present || echo missing); models/fashion-vit.safetensors $( [ -f "$ctx/models/fashion-vit.safetensors" ] && echo present || echo "missing: neither in the tree nor at $DEV_MODEL"))"
  finish
fi

# ---- build ------------------------------------------------------------------------------
t0=$(date +%s)
if nice -n 19 podman build --format docker --network host --isolation chroot --layers \
     -t "$IMAGE" -f "$ctx/Dockerfile" "$ctx" >"$work/build.log" 2>&1; then
  cached=$(grep -c -- '--> Using cache' "$work/build.log")
  ok "podman build --format docker --network host --isolation chroot -t $IMAGE ($(secs "$t0"), $cached cached steps)"
  # keep the build stage's image (tagged, so that its compiled layer is reused next time),
  # then drop the images that no tag reaches any more: the vfs store copies every layer
  # whole, so old builds would pile up
  build_id=$(awk '/^\[2\/[0-9]+\] STEP 1\//{ print last; exit } /^--> [0-9a-f]+$/{ last = $2 }' "$work/build.log")
  [ -z "$build_id" ] || podman tag "$build_id" "$BUILD_IMAGE" >/dev/null 2>&1 || note "could not tag the build stage $build_id"
  t1=$(date +%s)
  pruned=$(podman image prune -f 2>/dev/null | grep -c .)
  note "pruned $pruned dangling image(s) in $(secs "$t1"); podman's store: $(du -sh "$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers/storage)" 2>/dev/null | cut -f1)"
else
  bad "podman build -t $IMAGE ($(secs "$t0"))"
  sed 's/^/#   /' "$work/build.log" | tail -n 40
  finish
fi

# ---- the image's configuration ------------------------------------------------------------
podman image inspect "$IMAGE" >"$work/inspect.json" 2>"$work/inspect.err" || { bad "podman image inspect"; finish; }
j() { node -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0]; const v = (new Function("c", "return " + process.argv[2]))(c); process.stdout.write(v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v));' "$work/inspect.json" "$1"; }
size=$(j 'c.Size')
size_mb=$(( (size + 524287) / 1048576 ))
layers=$(j 'c.RootFS.Layers.length')
note "image $IMAGE: $size_mb MiB ($size bytes), $layers layers"
user=$(j 'c.Config.User')
uid=${user%%:*}; gid=${user#*:}; [ "$gid" != "$user" ] || gid=$uid
case $uid in ''|*[!0-9]*) bad "USER is numeric uid:gid (got '$user')" ;; 0) bad "USER is not root (got '$user')" ;; *) ok "USER $user: numeric and not root" ;; esac
check "size $size_mb MiB is under $SIZE_LIMIT_MB MiB" test "$size_mb" -lt "$SIZE_LIMIT_MB"
check "EXPOSE 8080/tcp" test "$(j 'Object.keys(c.Config.ExposedPorts || {}).join(" ")')" = "8080/tcp"
# podman keeps the health check beside Config, docker inside it
hc_json=$(j '(c.Config.Healthcheck || c.Healthcheck || {})')
note "HEALTHCHECK $hc_json"
check "HEALTHCHECK runs cdam-healthcheck (needs --format docker)" sh -c "printf '%s' '$hc_json' | grep -q '\"CMD\",\"/usr/local/bin/cdam-healthcheck\"'"
check "VOLUME /data and /models" test "$(j 'Object.keys(c.Config.Volumes || {}).sort().join(" ")')" = "/data /models"
env_list=$(j 'c.Config.Env.join("\n")')
check "configured by CDAM_* variables (host 0.0.0.0, port 8080, model, static, data dir)" sh -c "
  for v in CDAM_HOST=0.0.0.0 CDAM_PORT=8080 CDAM_MODEL=/app/models/fashion-vit.safetensors CDAM_STATIC=/app/static CDAM_DATA_DIR=/data; do
    printf '%s\n' \"\$1\" | grep -qx \"\$v\" || { echo \"\$v not in: \$1\"; exit 1; }
  done" sh "$env_list"

# ---- its file system ----------------------------------------------------------------------
rootfs=$work/rootfs
mkdir -p "$rootfs"
if ctr=$(podman create "$IMAGE" 2>"$work/create.err") && podman export "$ctr" 2>"$work/export.err" | tar -x -C "$rootfs" 2>"$work/tar.err"; then
  ok "podman create + export: the image's file system ($(du -sm "$rootfs" | cut -f1) MB)"
else
  bad "podman create + export"; cat "$work/create.err" "$work/export.err" "$work/tar.err" | sed 's/^/#   /' | tail -n 10
  finish
fi
podman rm -f "$ctr" >/dev/null 2>&1; ctr=""
check "no compiler, binutils, make or headers in the runtime image" sh -c "
  for f in usr/bin/gcc usr/bin/cc usr/bin/cpp usr/bin/ld usr/bin/as usr/bin/make usr/lib/gcc usr/include/stdio.h; do
    [ ! -e '$rootfs/'\$f ] && [ ! -L '$rootfs/'\$f ] || { echo \"/\$f is in the image\"; exit 1; }
  done
  pk=\$(chroot '$rootfs' dpkg-query -W -f '\${Package}\n' | grep -E -- '^(gcc(-[0-9]+)?|cpp(-[0-9]+)?|binutils.*|make|libc6-dev|pkg-config|pkgconf|libgcc-[0-9]+-dev)\$|-dev\$') && { echo \"packages: \$pk\"; exit 1; }
  exit 0"
check "cdam-server, cdam and cdam-healthcheck find all their libraries in the image (ldd)" sh -c "
  for b in cdam-server cdam cdam-healthcheck; do
    out=\$(chroot '$rootfs' /usr/bin/ldd /usr/local/bin/\$b) || { echo \"\$b: ldd failed\"; exit 1; }
    echo \"\$out\" | grep -q 'not found' && { echo \"\$b: \$out\"; exit 1; }
  done; exit 0"
check "binaries are stripped" sh -c "! grep -q -a '.debug_info' '$rootfs/usr/local/bin/cdam-server'"
check "static/ and the demo model are the build context's" sh -c "
  cmp '$ctx/models/fashion-vit.safetensors' '$rootfs/app/models/fashion-vit.safetensors' &&
  diff -r '$ctx/static' '$rootfs/app/static' >/dev/null"
check "/data belongs to the image user ($uid:$gid)" test "$(stat -c %u:%g "$rootfs/data")" = "$uid:$gid"
# the systemd unit (no containers): systemd's own parser, ExecStart pointed at the image's binary
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$work/unit"
  sed "s|^ExecStart=/usr/local/bin/|ExecStart=$rootfs/usr/local/bin/|" "$root/deploy/systemd/cdam.service" >"$work/unit/cdam.service"
  check "deploy/systemd/cdam.service passes systemd-analyze verify" sh -c "out=\$(systemd-analyze verify '$work/unit/cdam.service' 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
  note "$(systemd-analyze security --offline=yes "$work/unit/cdam.service" 2>/dev/null | tail -n 1 | sed 's/^[^A-Za-z]*//')"
else
  bad "deploy/systemd/cdam.service passes systemd-analyze verify (systemd-analyze is not installed: apt-get install systemd)"
fi

# ---- run it: chroot as the image user, read-only root, writable /data and /tmp -----------------
scene=$(ls "$root"/static/examples/*.png 2>/dev/null | head -n 1)
[ -n "$scene" ] || scene=$root/tests/data/images/rgb8.png
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { process.stdout.write(String(s.address().port)); s.close(); })')
data=$work/data
mkdir -p "$data" && chown "$uid:$gid" "$data" && chmod 0750 "$data"
# the image's command line and environment (Entrypoint + Cmd; Env), with a loopback port
node -e '
const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0].Config;
const q = (s) => "\x27" + String(s).replace(/\x27/g, "\x27\\\x27\x27") + "\x27";
const env = (c.Env || []).filter((e) => !/^CDAM_(HOST|PORT)=/.test(e)).concat(["CDAM_HOST=127.0.0.1", "CDAM_PORT=" + process.argv[2]]);
console.log("img_env=" + q(env.map(q).join(" ")));
console.log("img_cmd=" + q([...(c.Entrypoint || []), ...(c.Cmd || [])].map(q).join(" ")));
const hc = (c.Healthcheck || JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0].Healthcheck || {}).Test || [];
console.log("img_hc=" + q((hc[0] === "CMD-SHELL" ? ["/bin/sh", "-c", hc[1]] : hc.slice(1)).map(q).join(" ")));
console.log("img_wd=" + q(c.WorkingDir || "/"));
' "$work/inspect.json" "$port" >"$work/cmd.sh"
. "$work/cmd.sh"
note "starting in $rootfs as $uid:$gid on 127.0.0.1:$port: $img_cmd"
# unshare -m without --fork: sh and chroot exec, so $! is the server's pid. Mounts made in
# the private namespace vanish with it.
unshare --mount --propagation private sh -c '
  set -e
  r=$1
  mount --bind "$r" "$r"
  mount -t proc proc "$r/proc"
  mount --rbind /dev "$r/dev"
  mount --rbind /sys "$r/sys"
  mount --bind "$2" "$r/data"
  mount -t tmpfs -o size=64m,mode=1777 tmpfs "$r/tmp"
  mount -o remount,bind,ro "$r"
  eval "exec chroot --userspec=$3 \"\$r\" /usr/bin/env -i -C $4 $5 $6"
' sh "$rootfs" "$data" "$uid:$gid" "$img_wd" "$img_env" "$img_cmd" >"$work/server.log" 2>&1 &
srv_pid=$!
# the image's HEALTHCHECK command, run in the image as its user (as the engine would)
healthcheck() {
  eval "chroot --userspec=$uid:$gid \"$rootfs\" /usr/bin/env -i -C $img_wd $img_env $img_hc"
}
t0=$(date +%s); up=0
while [ $(( $(date +%s) - t0 )) -lt 60 ] && kill -0 "$srv_pid" 2>/dev/null; do
  if healthcheck >"$work/hc.log" 2>&1; then up=1; break; fi
  sleep 0.2
done
if [ "$up" -eq 1 ]; then
  ok "the image's HEALTHCHECK command reports healthy ($(secs "$t0") after start): $(cat "$work/hc.log")"
else
  bad "the server came up and the HEALTHCHECK command reported healthy within 60 s"
  sed 's/^/#   /' "$work/server.log" "$work/hc.log" | tail -n 20
  finish
fi
sed 's/^/# server: /' "$work/server.log" | head -n 5
check "the server process runs as $uid:$gid (not root): /proc/$srv_pid/status" sh -c "
  grep -E '^Uid:' /proc/$srv_pid/status | grep -qE '^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid\$' &&
  grep -E '^Gid:' /proc/$srv_pid/status | grep -qE '^Gid:[[:space:]]+$gid[[:space:]]+$gid[[:space:]]+$gid[[:space:]]+$gid\$' &&
  grep -E '^Groups:' /proc/$srv_pid/status | grep -qE '^Groups:[[:space:]]*($gid)?[[:space:]]*\$' || { grep -E '^(Uid|Gid|Groups):' /proc/$srv_pid/status; exit 1; }"
check "its root file system is read-only, /data and /tmp writable" sh -c "
  awk '\$5 == \"/\" && \$6 !~ /^ro(,|\$)/ { bad = 1 } \$5 == \"/\" { root = 1 }
       (\$5 == \"/data\" || \$5 == \"/tmp\") && \$6 ~ /^rw(,|\$)/ { w++ }
       END { exit !(root && !bad && w == 2) }' /proc/$srv_pid/mountinfo || { cat /proc/$srv_pid/mountinfo; exit 1; }"

(cd "$here" && node check.mjs http "http://127.0.0.1:$port" "$scene" "$root") >"$work/http.out" 2>"$work/http.err"
hrc=$?
grep -v '^concept_id=' "$work/http.out"
p=$(grep -c '^ok - ' "$work/http.out"); f=$(grep -c '^not ok - ' "$work/http.out")
pass=$((pass + p)); fail=$((fail + f))
if [ "$hrc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "check.mjs http exited $hrc"; sed 's/^/#   /' "$work/http.err" | tail -n 15; fi
cid=$(sed -n 's/^concept_id=//p' "$work/http.out")
if [ -n "$cid" ]; then
  check "the concept is a file in the data volume, owned by $uid:$gid" test "$(stat -c %u:%g "$data/$cid.json" 2>&1)" = "$uid:$gid"
fi

# ---- SIGTERM: drains and exits 0; then the health check fails ------------------------------
kill -TERM "$srv_pid"
t0=$(date +%s); while kill -0 "$srv_pid" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt 20 ]; do sleep 0.1; done
if kill -0 "$srv_pid" 2>/dev/null; then
  bad "SIGTERM: the server exits within 20 s"
else
  wait "$srv_pid"; src=$?
  check "SIGTERM: the server drains and exits 0 ($(secs "$t0"))" test "$src" -eq 0
fi
srv_pid=""
check "the HEALTHCHECK command reports unhealthy (exit 1) once the server is gone" sh -c "
  $(command -v chroot) --userspec=$uid:$gid '$rootfs' /usr/bin/env -i -C $img_wd $img_env $img_hc; test \$? -eq 1"
grep -q 'shutdown: done' "$work/server.log" || { sed 's/^/# server: /' "$work/server.log" | tail -n 5; }

note "image $IMAGE: $size_mb MiB"
finish
