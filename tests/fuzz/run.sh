#!/bin/sh
# Runs libFuzzer targets for a bounded time each (make fuzz; see tests/fuzz/README.md).
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS TARGET...   (from the repository root, after
# `make SANITIZE=fuzz fuzz-build` has built BUILD_DIR/fuzz_<target>)
#
# Each target runs on a scratch corpus BUILD_DIR/<target>-corpus (seeded from
# tests/fuzz/corpus/<target>/, which is read but never written), with its dictionary
# tests/fuzz/<target>.dict when there is one. Any crash, failed invariant, leak, timeout
# (-timeout per input) or out-of-memory (-rss_limit_mb) stops that target with a
# reproducer in BUILD_DIR/<target>-crashes/ and makes this script fail at the end. Per
# target it prints the final stats line's executions per second and coverage (cov: edges,
# ft: features), and the log is in BUILD_DIR/<target>.log.
# Environment: FUZZ_TIMEOUT (s per input, default 30), FUZZ_RSS_MB (default 3072),
# FUZZ_ARGS (more libFuzzer options), FUZZ_NICE (niceness, default 0).
set -u
build=$1 secs=$2
shift 2
timeout=${FUZZ_TIMEOUT:-30} rss=${FUZZ_RSS_MB:-3072} nice=${FUZZ_NICE:-0}
status=0 summary=""
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in "$@"; do
  bin=$build/fuzz_$t corpus=$build/$t-corpus crashes=$build/$t-crashes log=$build/$t.log
  if [ ! -x "$bin" ]; then echo "fuzz: $bin is missing (make SANITIZE=fuzz fuzz-build)" >&2; status=1; continue; fi
  mkdir -p "$corpus" "$crashes"
  dict=""
  [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
  echo "== fuzz $t: $secs s (log $log)"
  # shellcheck disable=SC2086
  nice -n "$nice" "$bin" -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb="$rss" -print_final_stats=1 \
    -artifact_prefix="$crashes/" $dict ${FUZZ_ARGS:-} "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(printf '%s' "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(printf '%s' "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(printf '%s' "$last" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
  line="$t: ${runs:-?} runs, ${execs:-?} exec/s, cov: ${cov:-?} ft: ${ft:-?} corp: ${corp:-?}"
  if [ "$rc" -ne 0 ]; then
    line="$line  FAILED (exit $rc; reproducer in $crashes/)"
    grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant failed|SUMMARY' "$log" | head -n 5
    status=1
  fi
  echo "$line"
  summary="$summary$line
"
done
echo "== fuzz summary ($secs s per target)"
printf '%s' "$summary"
exit $status
