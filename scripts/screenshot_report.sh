#!/usr/bin/env bash
# Screenshot the report page with headless Chromium (no network, throw-away profile).
#   scripts/screenshot_report.sh reports/index.html reports/screenshot.png [WIDTH,HEIGHT]
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 INDEX_HTML OUT_PNG [WIDTH,HEIGHT]" >&2
    exit 2
fi
html=$1
out=$2
size=${3:-1400,3000}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
    echo "error: $chromium not found; install it (apt-get install -y chromium) or set CHROMIUM" >&2
    exit 2
fi
if [[ ! -f $html ]]; then
    echo "error: $html does not exist; render the report first (alexnet-bench report)" >&2
    exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
url="file://$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$size" --screenshot="$out_abs" "$url" >/dev/null 2>&1 || true
if [[ ! -s $out_abs ]]; then
    echo "error: chromium did not write $out" >&2
    exit 1
fi
echo "wrote $out"
