#!/usr/bin/env bash
# test.sh — sets up a fresh Debian 12 machine and runs every EdgeDI test:
# the whole suite in the default build, then again under AddressSanitizer +
# UndefinedBehaviorSanitizer. Exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1

log=$(mktemp)
status=0
for config in "" "--config=asan"; do
  echo "== bazel test //... ${config:-(default)}"
  bazel test ${config} --test_output=errors //... 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done

passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log")
failed=$(grep -cE '^//[^ ]+ +(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$log")
rm -f "$log"
[ "$status" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "tests: $passed passed, $failed failed"
exit $status
