#!/usr/bin/env bash
# Builds berth's native parts into dist/, each skipped when its output is newer than its source:
#   - the per-container exec helper (native/exec-helper.c) -> dist/berth-exec-helper, a static
#     binary (it runs inside containers, whatever their libc);
#   - the malloc_trim addon (native/malloc-trim.c) -> dist/berth-malloc-trim.node, built against
#     the headers of the Node that runs berthd (hack/install-deps.sh installs Node 24 with them).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist

out=dist/berth-exec-helper
src=native/exec-helper.c
if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
  gcc -static -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
fi

out=dist/berth-malloc-trim.node
src=native/malloc-trim.c
if [ ! -f "$out" ] || [ "$src" -nt "$out" ]; then
  headers="$(node -p "require('node:path').resolve(process.execPath, '../../include/node')")"
  if [ ! -f "$headers/node_api.h" ]; then
    echo "build-native: no Node headers at $headers; skipping $out (berthd then keeps freed malloc memory resident)" >&2
  else
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -I"$headers" -o "$out.tmp" "$src"
    mv "$out.tmp" "$out"
  fi
fi
