#!/usr/bin/env bash
# Instructions per engine decision, counted by callgrind (stable on a noisy machine, unlike seconds):
# the same WPA as `wpa bench engine` (3 External metrics, 50 pods), N decisions minus a run of none, and the
# same for copying the inputs (the baseline).
#
#   bash scripts/engine-instructions.sh [N]      # N decisions (default 2000); needs valgrind
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
. scripts/lib/callgrind.sh
build
none=$(total engine --count 0)
decide=$(total engine --count "$n")
copy=$(total engine --count "$n" --baseline)
per_decision=$(( (decide - none) / n ))
per_copy=$(( (copy - none) / n ))
echo "engine: $per_decision instructions per decision (3 External metrics, 50 pods; $n decisions under callgrind)"
echo "baseline: $per_copy instructions per copy of the same inputs; a decision costs $(awk "BEGIN{printf \"%.2f\", $per_decision/$per_copy}")x a copy"
