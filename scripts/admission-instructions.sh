#!/usr/bin/env bash
# Instructions per admission request in process (no TLS, no network), counted by callgrind (stable on a noisy
# machine): each of `wpa bench admission`'s three requests through the webhook's router, N requests minus a run
# of none, against the bare handler of the same benchmark on the same body.
#
#   bash scripts/admission-instructions.sh [N]    # N requests per case (default 2000); needs valgrind
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
. scripts/lib/callgrind.sh
build
per() { echo $(( ($(total admission --count "$n" "$@") - $(total admission --count 0 "$@")) / n )); }
bare=$(per --bare)
echo "bare handler: $bare instructions per request"
for c in 0 1 2; do
  name=$(case $c in 0) echo "WPA validate";; 1) echo "WPA mutate";; 2) echo "Deployment mutate";; esac)
  hook=$(per --case $c)
  echo "$name: $hook instructions per request ($(awk "BEGIN{printf \"%.2f\", $hook/$bare}")x the bare handler)"
done
