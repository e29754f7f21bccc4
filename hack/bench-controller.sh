#!/usr/bin/env bash
# berth-controller benchmark: memory of the node agent (sources, bundle), 20 images on 3 real
# berthds through the agents and the aggregator against the fake API server, idle watch restarts,
# and the agent's memory over a soak.
# Prints figures; asserts nothing.
# Usage: bash hack/bench-controller.sh [--images N] [--idle SECONDS] [--soak-flags "NODE FLAGS"]...
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import tsx test/bench/controller.ts "$@"
