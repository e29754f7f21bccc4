#!/usr/bin/env bash
# Pod lifecycle and memory benchmark, berth vs Debian's containerd 1.6, on this machine (as root).
# Extra args go to the benchmark (--pods N, --density N, --rounds R, --only berth|containerd).
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH_BENCH=1 bash hack/install-deps.sh
exec node --import tsx test/bench/pod-lifecycle.ts "$@"
