#!/usr/bin/env bash
# Proxy benchmark: Tandem web server vs HAProxy vs direct, same run.
# Needs wrk and haproxy (Debian packages). Extra flags go to the driver:
#   bench/proxy/run.sh -d 10s -c 64 -t 2 [-standin] [-cpuprofile ws.prof]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { echo "haproxy is not installed"; exit 1; }
PATH="$PATH:/usr/sbin" exec go run ./bench/proxy "$@"
