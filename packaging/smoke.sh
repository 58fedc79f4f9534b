#!/usr/bin/env bash
# Smoke test of the built bundle: start it headless on the bundled demo, run PGD live,
# save a screenshot, and check the screenshot is a non-blank PNG of the window's size.
#
#     bash packaging/smoke.sh [APP]     # APP: default dist/advexplorer/advexplorer
#
# Uses Xvfb (the real X11/xcb path, as on a desktop) when xvfb-run exists, else Qt's
# offscreen platform. Needs python3 (standard library only) for the PNG check.
set -euo pipefail
cd "$(dirname "$0")/.."
app="${1:-dist/advexplorer/advexplorer}"
[[ -d dist/AdvExplorer.app && -z "${1:-}" ]] && app=dist/AdvExplorer.app/Contents/MacOS/advexplorer
[[ -x "$app" ]] || { echo "smoke.sh: $app not found; run bash packaging/build.sh first" >&2; exit 2; }
app="$(cd "$(dirname "$app")" && pwd)/$(basename "$app")"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
shot="$out/smoke.png"
width=1280 height=800
# The bundle must not lean on this checkout: run it from elsewhere, with no PYTHONPATH.
command=("$app" demo --screenshot "$shot" --steps 5 --size "${width}x${height}" --device cpu)
started=$(date +%s)
echo "\$ ${command[*]}"
if command -v xvfb-run >/dev/null && [[ "$(uname)" == Linux ]]; then
  (cd "$out" && env -u PYTHONPATH -u QT_QPA_PLATFORM xvfb-run -a -s "-screen 0 1920x1200x24" "${command[@]}")
else
  (cd "$out" && env -u PYTHONPATH QT_QPA_PLATFORM=offscreen "${command[@]}")
fi
echo "app ran in $(( $(date +%s) - started )) s"
python3 packaging/check_screenshot.py "$shot" --width $width --height $height
"$app" --version
