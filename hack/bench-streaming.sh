#!/usr/bin/env bash
# Streaming benchmark, berth vs Debian's containerd 1.6, on this machine: exec round-trip latency,
# port-forward throughput, and berthd's RSS/fds around a hundred exec sessions. Extra args go to
# the benchmark (--runs N, --mb M, --only berth|containerd).
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH_BENCH=1 bash hack/install-deps.sh
exec node --import tsx test/bench/streaming.ts "$@"
