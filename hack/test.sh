#!/usr/bin/env bash
# Installs what is missing, then type-checks, lints and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh
node hack/validate-manifests.ts
npm test
