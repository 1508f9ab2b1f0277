#!/usr/bin/env bash
# `wpa bench admission` with what it needs: the release wpa and the bare-webhook example (its baseline), built
# first, and Debian's wrk (the load generator, a separate process). Extra arguments go to the benchmark.
#
#   bash scripts/admission-bench.sh [--seconds 2] [--rounds 10] [--latency-rounds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release --locked --quiet --bin wpa --example bare-webhook
exec target/release/wpa bench admission "$@"
