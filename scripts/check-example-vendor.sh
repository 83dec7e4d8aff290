#!/usr/bin/env bash
# The vendor path, end to end: install Samband's SDK from a build, build plugins/example-vendor
# out of tree against that install only, and run `samband plugin check` on the result.
# Usage: scripts/check-example-vendor.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$root/plugins/example-vendor" -B "$work/vendor" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/vendor" -j2 >/dev/null
so="$work/vendor/samband_plugin_example_vendor.so"
mkdir -p "$work/out"
echo "{\"folder\": \"$work/out\"}" > "$work/config.json"
"$work/prefix/bin/samband" plugin check "$so" --config "$work/config.json"
