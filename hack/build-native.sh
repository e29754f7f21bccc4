#!/usr/bin/env bash
# Builds berth's native part: the per-container exec helper (native/exec-helper.c) into
# dist/berth-exec-helper, a static binary (it runs inside containers, whatever their libc).
# Skipped when the binary is newer than its source.
set -euo pipefail
cd "$(dirname "$0")/.."
out=dist/berth-exec-helper
src=native/exec-helper.c
if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
  mkdir -p dist
  gcc -static -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
fi
