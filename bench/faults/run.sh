#!/usr/bin/env bash
# Runs Tandem's fault harness (backend/faults TestFaultHarness) for a given
# duration against the real binaries and prints its result: duration,
# operations, faults injected by kind, anomalies found.
#
#   bench/faults/run.sh [DURATION] [extra go test flags...]
#   bench/faults/run.sh 10m
#   bench/faults/run.sh 2m -faults.nemeses=pause-server -faults.seed=42
#
# The full go test output goes to $TMPDIR/tandem-faults-<time>.log; the
# result as JSON to $TMPDIR/tandem-faults-<time>.json. Exit status: 0 when
# the run found no anomaly.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur="${1:-10m}"
shift || true
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
tmp="${TMPDIR:-/tmp}"
log="$tmp/tandem-faults-$stamp.log"
json="$tmp/tandem-faults-$stamp.json"
echo "fault harness: $dur, log $log"
status=0
go test ./backend/faults -run '^TestFaultHarness$' -count=1 -v -timeout 0 \
	-faults.duration="$dur" -faults.report="$json" "$@" >"$log" 2>&1 || status=$?
grep -E '^\s+harness_test.go:[0-9]+: +[0-9.]+s fault ' "$log" | sed -E 's/^\s+harness_test.go:[0-9]+: +/  /' || true
# The test prints its own summary (SUMMARY, then indented lines).
if ! awk '/SUMMARY/{on=1; next} on && /^ +[a-z.]+ +/{sub(/^ +/, "  "); print; next} on{exit}' "$log" | grep .; then
	echo "no result written; see $log"
fi
grep -E 'ANOMALY|history of' "$log" | head -20 || true
echo "json $json"
exit "$status"
