#!/usr/bin/env bash
# A screenshot of a calibration report, for reviewers: renders REPORT (default
# qcal-out/report.html, what scripts/run.sh writes) in headless chromium and writes
# OUT (default: the report's folder/report.png). Width x height: QCAL_SHOT_SIZE
# (default 1280,2700). Needs chromium (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
report="${1:-qcal-out/report.html}"
out="${2:-$(dirname "$report")/report.png}"
browser="${QCAL_BROWSER:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$browser" ]; then
  echo "report-screenshot: no chromium (apt-get install chromium)" >&2
  exit 1
fi
if [ ! -f "$report" ]; then
  echo "report-screenshot: $report not found (run scripts/run.sh first)" >&2
  exit 1
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --window-size="${QCAL_SHOT_SIZE:-1280,2700}" \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$report")" 2>/dev/null
echo "wrote $out"
