#!/usr/bin/env bash
# Cold-pull benchmark, berth vs Debian's containerd 1.6, on this machine. Extra args go to the
# benchmark (--runs N, --scale S, --cold-only). Each run also times the Node floor of the cold pull
# (test/bench/pull-floor.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH_BENCH=1 bash hack/install-deps.sh
exec node --import tsx test/bench/cold-pull.ts "$@"
