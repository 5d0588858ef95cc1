#!/bin/sh
# End-to-end tests of cdam-server against server/API.md and openapi.yaml (Node 20 node:test).
#
#   tests/api/run.sh [BUILD_DIR]      # default: build (relative to the repository root)
#
# Installs the pinned dev dependencies (npm ci, package-lock.json) when node_modules is
# missing, then runs every tests/api/*.test.js file; each starts real servers from
# BUILD_DIR/cdam-server. The last line is always "api: N passed, N failed" (N = test
# cases); the exit status is non-zero when anything failed or could not run.
# Environment: CDAM_API_TESTS="explain.test.js ..." runs only those files;
# CDAM_KEEP_TMP=1 keeps the servers' temporary folders.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac

fail_setup() {
  echo "api: $1" >&2
  echo "api: 0 passed, 1 failed"
  exit 1
}

command -v node >/dev/null 2>&1 || fail_setup "node is not installed (Node 20 or newer is needed: apt-get install nodejs npm)"
major=$(node -e 'process.stdout.write(String(process.versions.node.split(".")[0]))' 2>/dev/null)
[ "${major:-0}" -ge 20 ] 2>/dev/null || fail_setup "node $(node --version 2>/dev/null) is too old (Node 20 or newer is needed)"
[ -x "$build/cdam-server" ] || echo "api: warning: $build/cdam-server does not exist (make $(basename "$build")/cdam-server); every server test will fail" >&2

cd "$here" || fail_setup "cannot enter $here"
if [ ! -d node_modules ]; then
  command -v npm >/dev/null 2>&1 || fail_setup "npm is not installed (apt-get install npm)"
  echo "api: installing the pinned dev dependencies (npm ci)"
  npm ci --no-audit --no-fund >npm-ci.log 2>&1 || { cat npm-ci.log >&2; fail_setup "npm ci failed"; }
  rm -f npm-ci.log
fi

# every *.test.js file here, spec first (it checks the contract the others rely on)
files=${CDAM_API_TESTS:-"spec.test.js $(ls *.test.js | grep -v '^spec\.test\.js$' | tr '\n' ' ')"}
tap=$(mktemp "${TMPDIR:-/tmp}/cdam-api-tap.XXXXXX")
trap 'rm -f "$tap"' EXIT INT TERM
# shellcheck disable=SC2086
CDAM_BUILD="$build" node --test --test-concurrency=1 --test-timeout=180000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" $files
rc=$?

count() { sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" "$tap" | tail -n 1; }
pass=$(count pass); failed=$(count fail); cancelled=$(count cancelled); skipped=$(count skipped); todo=$(count todo)
pass=${pass:-0}; failed=${failed:-0}; cancelled=${cancelled:-0}; skipped=${skipped:-0}; todo=${todo:-0}
[ -s "$tap" ] || { echo "api: the test runner wrote no report (exit $rc)" >&2; failed=$((failed + 1)); }
# cancelled tests (a failed hook, a timeout) and skipped/todo ones count as failures: nothing is skipped silently
bad=$((failed + cancelled + skipped + todo))
[ "$cancelled" -eq 0 ] || echo "api: $cancelled test(s) cancelled (failed hook or timeout)"
[ "$((skipped + todo))" -eq 0 ] || echo "api: $skipped skipped and $todo todo test(s) counted as failed"
if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
  echo "api: the test runner exited with $rc"
  bad=1
fi
echo "api: $pass passed, $bad failed"
[ "$bad" -eq 0 ]
