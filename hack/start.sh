#!/usr/bin/env bash
# Installs what is missing, then runs berthd in the foreground on its embedded defaults
# (socket /run/berth/berth.sock, root /var/lib/berth). Extra arguments go to berthd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh
exec node bin/berthd.js "$@"
