#!/usr/bin/env bash
# Builds the berth image without a Docker daemon (an OCI image layout, dist/image by default) and,
# with --push REGISTRY_URL, pushes it. See hack/build-image.ts for the flags; BERTH_REGISTRY_AUTH=user:pass
# for a registry that wants Basic auth. Example:
#   bash hack/build-image.sh --push http://127.0.0.1:5000 --repository berth/berth --tag 0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules/esbuild ] || npm ci
exec node hack/build-image.ts "$@"
