#!/bin/sh
# The demo page (static/) end to end in headless Chromium, and the lint of its JavaScript.
#
#   tests/web/run.sh [BUILD_DIR]      # default: build (relative to the repository root)
#
# Installs the pinned dev dependencies (npm ci, package-lock.json: playwright-core, eslint)
# when node_modules is missing, and Debian's chromium when /usr/bin/chromium is missing
# (as root, apt-get; playwright never downloads a browser). Then ESLint over static/ (and
# these tests), counted as one test case, and every tests/web/*.test.js file: each starts
# BUILD_DIR/cdam-server on a free loopback port with --static static, a temporary
# --data-dir and the demo model (models/fashion-vit.safetensors, else
# /tmp/devmodel/fashion-vit.safetensors, else tests/data/models/tiny.safetensors;
# CDAM_WEB_MODEL overrides). Screenshots and downloads are kept in tests/web/artifacts/.
# The last line is always "web: N passed, N failed"; the exit status is non-zero when
# anything failed or could not run.
# Environment: CDAM_CHROMIUM (default /usr/bin/chromium), CDAM_WEB_MODEL, CDAM_KEEP_TMP=1,
# CDAM_WEB_GREP=PATTERN (only the tests whose name matches; a development aid).
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
chromium=${CDAM_CHROMIUM:-/usr/bin/chromium}

fail_setup() {
  echo "web: $1" >&2
  echo "web: 0 passed, 1 failed"
  exit 1
}

command -v node >/dev/null 2>&1 || fail_setup "node is not installed (Node 20 or newer is needed: apt-get install nodejs npm)"
major=$(node -e 'process.stdout.write(String(process.versions.node.split(".")[0]))' 2>/dev/null)
[ "${major:-0}" -ge 20 ] 2>/dev/null || fail_setup "node $(node --version 2>/dev/null) is too old (Node 20 or newer is needed)"
[ -x "$build/cdam-server" ] || echo "web: warning: $build/cdam-server does not exist (make $(basename "$build")/cdam-server); the page tests will fail" >&2

if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "$CDAM_CHROMIUM" ]; then
    echo "web: installing Debian's chromium (apt-get install chromium)"
    log=$(mktemp "${TMPDIR:-/tmp}/cdam-web-apt.XXXXXX")
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >"$log" 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >>"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; rm -f "$log"; fail_setup "apt-get install chromium failed"; }
    fi
    rm -f "$log"
  fi
  [ -x "$chromium" ] || fail_setup "$chromium is missing (apt-get install chromium, or set CDAM_CHROMIUM)"
fi

cd "$here" || fail_setup "cannot enter $here"
if [ ! -d node_modules ]; then
  command -v npm >/dev/null 2>&1 || fail_setup "npm is not installed (apt-get install npm)"
  echo "web: installing the pinned dev dependencies (npm ci)"
  npm ci --no-audit --no-fund >npm-ci.log 2>&1 || { cat npm-ci.log >&2; fail_setup "npm ci failed"; }
  rm -f npm-ci.log
fi
mkdir -p artifacts && rm -f artifacts/*.png artifacts/*.json artifacts/*.txt

# 1. lint (one test case)
lint_pass=0; lint_fail=0
if (cd "$root" && node "$here/node_modules/eslint/bin/eslint.js" --max-warnings 0 \
      -c tests/web/eslint.config.js static tests/web); then
  echo "web: lint ok (eslint: static/, tests/web/)"
  lint_pass=1
else
  echo "web: lint FAILED (eslint: static/, tests/web/)"
  lint_fail=1
fi

# 2. the page in the browser
tap=$(mktemp "${TMPDIR:-/tmp}/cdam-web-tap.XXXXXX")
trap 'rm -f "$tap"' EXIT INT TERM
set -- ./*.test.js
[ -n "$CDAM_WEB_GREP" ] && set -- --test-name-pattern="$CDAM_WEB_GREP" "$@"
CDAM_BUILD="$build" CDAM_CHROMIUM="$chromium" node --test --test-concurrency=1 --test-timeout=120000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" "$@"
rc=$?

count() { sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" "$tap" | tail -n 1; }
pass=$(count pass); failed=$(count fail); cancelled=$(count cancelled); skipped=$(count skipped); todo=$(count todo)
pass=${pass:-0}; failed=${failed:-0}; cancelled=${cancelled:-0}; skipped=${skipped:-0}; todo=${todo:-0}
[ -s "$tap" ] || { echo "web: the test runner wrote no report (exit $rc)" >&2; failed=$((failed + 1)); }
# cancelled tests (a failed hook, a timeout) and skipped/todo ones count as failures
# (except the ones CDAM_WEB_GREP left out on purpose)
if [ -n "$CDAM_WEB_GREP" ]; then
  echo "web: $skipped test(s) left out by CDAM_WEB_GREP"
  skipped=0
fi
bad=$((failed + cancelled + skipped + todo))
[ "$cancelled" -eq 0 ] || echo "web: $cancelled test(s) cancelled (failed hook or timeout)"
[ "$((skipped + todo))" -eq 0 ] || echo "web: $skipped skipped and $todo todo test(s) counted as failed"
if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
  echo "web: the test runner exited with $rc"
  bad=1
fi
[ -d artifacts ] && echo "web: screenshots and downloads in $here/artifacts/"
pass=$((pass + lint_pass)); bad=$((bad + lint_fail))
echo "web: $pass passed, $bad failed"
[ "$bad" -eq 0 ]
