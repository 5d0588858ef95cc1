#!/bin/sh
# Runs every test given on the command line (a binary, or a command with arguments in
# one quoted word) from the repository root, then prints the total as
# "N passed, N failed". Each test's last line must be "<name>: N passed, N failed".
# Exit status 1 if anything failed.
pass=0; fail=0; status=0
for t in "$@"; do
  echo "== $t"
  out=$($t 2>&1); rc=$?
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | tail -n 1)
  p=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
  f=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  if [ -z "$p" ]; then echo "!! $t ended without a summary (exit $rc)"; fail=$((fail + 1)); status=1; continue; fi
  pass=$((pass + p)); fail=$((fail + f))
  [ "$rc" -eq 0 ] || status=1
done
echo "$pass passed, $fail failed"
exit $status
