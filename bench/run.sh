#!/usr/bin/env bash
# Runs every benchmark of the project and writes their output, dated, into
# BENCHMARKS.md between the "latest run" markers (the hand-written sections
# with profile findings stay as they are). Needs wrk and haproxy.
#   bash bench/run.sh            # full run (about 10 minutes)
#   QUICK=1 bash bench/run.sh    # short durations, to check the tooling
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

if [ -n "${QUICK:-}" ]; then
  api="-duration 1s"; repl="-duration 2s -failback-sessions 10000 -kills 2"
  proxy="-d 3s"; events="-kills 3"; faults="30s"
else
  api="-duration 5s"; repl="-duration 10s"; proxy="-d 10s"; events="-kills 10"; faults="2m"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
  echo "<!-- bench/run.sh: latest run (generated; do not edit by hand) -->"
  echo "## Latest full run: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3), load average at start $(cut -d' ' -f1 /proc/loadavg)."
  echo "Command: \`bash bench/run.sh\`; each part below also runs on its own with the command shown."
} > "$out"

run() { # title, command...
  local title=$1; shift
  echo ">> $title: $*" >&2
  {
    echo
    echo "### $title"
    echo
    echo "\`$*\`"
    echo
    echo '```'
    if ! "$@" 2>&1 | grep -v '^\s*$' | tail -n 60; then echo "(failed)"; fi
    echo '```'
  } >> "$out"
}

run "Admin API reads/writes" go run ./bench/api $api
run "Replication off / async / sync, failover time, failback rate" go run ./bench/replication $repl
run "Web server vs direct vs HAProxy" bash bench/proxy/run.sh $proxy
run "Events: hub fan-out" go run ./bench/events
run "Events: server death to browser" go run ./bench/events -failover $events
if [ -d bench/faults ]; then
  run "Fault harness" bash bench/faults/run.sh $faults
fi
echo "<!-- bench/run.sh: end -->" >> "$out"

# Replace the previous generated block (or append one).
python3 - "$out" <<'PY'
import re, sys
gen = open(sys.argv[1]).read()
try:
    doc = open("BENCHMARKS.md").read()
except FileNotFoundError:
    doc = "# Benchmarks\n"
pat = re.compile(r"<!-- bench/run.sh: latest run.*?<!-- bench/run.sh: end -->\n?", re.S)
doc = pat.sub(lambda _: gen, doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + gen
open("BENCHMARKS.md", "w").write(doc)
PY
echo "BENCHMARKS.md updated" >&2
