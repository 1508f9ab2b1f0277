#!/usr/bin/env bash
# The project's whole test suite, from a fresh machine: installs what it needs, then runs the checks.
#
#   bash scripts/test.sh
#
# 1. System packages and the Kubernetes v1.20.2 control-plane binaries (scripts/k8s-test-env.sh: Debian's
#    etcd and kubectl, kube-apiserver/controller-manager/scheduler built once from Debian's source package
#    and cached; ~5 minutes the first time, nothing afterwards).
# 2. cargo fmt --check, cargo clippy -D warnings, and every test (unit, upstream vectors, simulate, and the
#    tests against a real control plane).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

say "control-plane binaries"
WPA_K8S_BIN_DIR=$(bash scripts/k8s-test-env.sh | tail -n 1)
export WPA_K8S_BIN_DIR
echo "using $WPA_K8S_BIN_DIR" >&2

say "rustfmt and clippy components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

say "cargo test"
cargo test --all-targets --locked

say "independent reference vectors (tests/reference)"
WPA_VECTORS=tests/data/reference-vectors.json cargo test --locked --test upstream_vectors 2>&1 | tail -n 1
