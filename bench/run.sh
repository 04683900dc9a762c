#!/usr/bin/env bash
# Runs every benchmark of the project and writes their output, dated, into
# BENCHMARKS.md between the "latest run" markers (the hand-written sections
# with profile findings stay as they are). Needs only Go, wrk and haproxy
# (and POSIX tools: awk, grep).
#   bash bench/run.sh            # full run (about 12 minutes)
#   QUICK=1 bash bench/run.sh    # short durations, to check the tooling
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

if [ -n "${QUICK:-}" ]; then
  api="-duration 1s"; repl="-duration 2s -failback-sessions 10000 -kills 2"
  proxy="-d 3s"; events="-kills 3"; push="-rounds 3"; faults="30s"; app="-duration 2s"
else
  api="-duration 5s"; repl="-duration 10s"; proxy="-d 10s"; events="-kills 10"
  push="-rounds 20"; faults="2m"; app="-duration 10s"
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
run "Config push fan-out to 200 servers" go run ./bench/push -servers 200 $push
run "Application: process vs embedded vs alone" go run ./bench/app $app
run "Application versions: upload and fetch vs cp" go run ./bench/artifacts -mib 256
run "Deploy of four servers under load" go run ./bench/deploy -users 200
run "Frozen server under load: web server vs HAProxy export; new-user spread" go run ./bench/freeze -users 200 -freeze 6s
if [ -d bench/faults ]; then
  run "Fault harness" bash bench/faults/run.sh $faults
fi
echo "<!-- bench/run.sh: end -->" >> "$out"

# Replace the previous generated block (or append one after the text,
# trailing blank lines trimmed, as the first block).
doc=BENCHMARKS.md
begin='<!-- bench/run.sh: latest run'
end='<!-- bench/run.sh: end -->'
[ -f "$doc" ] || printf '# Benchmarks\n' > "$doc"
new=$(mktemp)
trap 'rm -f "$out" "$new"' EXIT
if grep -qF "$begin" "$doc" && grep -qF "$end" "$doc"; then
  awk -v gen="$out" -v begin="$begin" -v end="$end" '
    index($0, begin) == 1 { if (!done) while ((getline l < gen) > 0) print l; done = 1; skip = 1; next }
    skip { if (index($0, end) == 1) skip = 0; next }
    { print }
  ' "$doc" > "$new"
else
  awk -v gen="$out" '
    /^$/ { blank++; next }
    { while (blank > 0) { print ""; blank-- } print }
    END { print ""; while ((getline l < gen) > 0) print l }
  ' "$doc" > "$new"
fi
cat "$new" > "$doc"
echo "BENCHMARKS.md updated" >&2
