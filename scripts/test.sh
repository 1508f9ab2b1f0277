#!/usr/bin/env bash
# The project's test suite, from a fresh machine: installs what it needs, then runs the checks.
#
#   bash scripts/test.sh            # everything (what CI runs): lint, unit, vectors, e2e
#   bash scripts/test.sh lint       # cargo fmt --check, cargo clippy -D warnings (also without dev-tools)
#   bash scripts/test.sh unit       # in-crate unit tests and the tests that need no cluster (seconds)
#   bash scripts/test.sh vectors    # upstream's vectors and the independent reference vectors
#   bash scripts/test.sh e2e        # the tests against a private Kubernetes v1.20.2 control plane and a real
#                                   # node, and the chart's alerts and dashboard through Debian's promtool
#
# Several tiers may be named at once (`bash scripts/test.sh lint unit`). The e2e tier installs, the first
# time, the control-plane binaries (scripts/k8s-test-env.sh: Debian's etcd and kubectl,
# kube-apiserver/controller-manager/scheduler built once from Debian's source package and cached; 4 to 10
# minutes the first time on 2 cores, nothing afterwards), the Helm library the chart tests use (tests/helm/requirements.txt),
# Debian's prometheus package (promtool and the server, unpacked into a cache; prometheus_tools below), and
# for the real node (docs/real-node.md) Debian's containerd, runc, CNI plugins, iptables and conntrack plus the
# image's release binary (`cargo build --release --no-default-features`, as the Dockerfile builds it).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

# Integration tests that need no control plane.
PURE_TESTS=(engine_decisions webhook_router webhook_fuzz tls_rotation http_stop simulate_cli cli api_roundtrip layers)
# Integration tests against a real control plane.
E2E_TESTS=(control_plane crd_e2e webhook_e2e hardening_e2e reconciler_e2e recommender_e2e scaling_safety_e2e scheduler_extender_e2e rbac_e2e chart_e2e dry_run_e2e convert_e2e status_e2e demo alert_rules observability_e2e examples_e2e self_signed_ca_e2e node_e2e node_host_e2e)

# Every file of tests/ belongs to a tier, so that none is left out of the whole suite.
for f in tests/*.rs; do
  n=$(basename "$f" .rs)
  case " ${PURE_TESTS[*]} ${E2E_TESTS[*]} upstream_vectors " in *" $n "*) ;; *)
    echo "tests/$n.rs is in no tier: add it to PURE_TESTS or E2E_TESTS in scripts/test.sh" >&2; exit 2 ;;
  esac
done

tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(lint unit vectors e2e)
for t in "${tiers[@]}"; do
  case $t in lint|unit|vectors|e2e|all) ;; *) echo "unknown tier: $t (lint, unit, vectors, e2e)" >&2; exit 2 ;; esac
done
[ "${tiers[*]}" != all ] || tiers=(lint unit vectors e2e)

args_for() { local a=() n; for n in "$@"; do a+=(--test "$n"); done; echo "${a[@]}"; }

lint() {
  say "rustfmt and clippy components"
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  say "cargo clippy --no-default-features (the image's build)"
  cargo clippy --lib --bins --no-default-features --locked -- -D warnings
  # Licenses and duplicate crates as deny.toml accepts them. `check advisories` needs the RustSec database,
  # which this machine cannot fetch: a user's CI runs it.
  say "cargo deny check licenses bans"
  command -v cargo-deny >/dev/null || cargo install --locked --quiet cargo-deny
  cargo deny --locked check licenses bans
}

unit() {
  say "unit tests (both crates) and the tests that need no cluster"
  # shellcheck disable=SC2046
  cargo test --workspace --lib --bins --locked
  # shellcheck disable=SC2046
  cargo test --locked $(args_for "${PURE_TESTS[@]}")
}

vectors() {
  say "upstream vectors (tests/data/upstream-vectors.json)"
  cargo test --locked --test upstream_vectors
  local f
  for f in upstream-vectors-extra reconstructed-vectors reference-vectors; do
    say "vectors: tests/data/$f.json"
    WPA_VECTORS=tests/data/$f.json cargo test --locked --test upstream_vectors 2>&1 | tail -n 1
  done
}

# Debian's prometheus package (server and promtool, 2.42 on bookworm) for the alert and dashboard tests,
# unpacked into a cache rather than installed: installing it would start a system Prometheus. The tests
# find it through WPA_PROMETHEUS_BIN_DIR (or promtool and prometheus on PATH).
prometheus_tools() {
  local dir=${WPA_PROMETHEUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wpa/prometheus}
  if [ -x "$dir/bin/promtool" ] && [ -x "$dir/bin/prometheus" ]; then
    :
  elif command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    dir=$(dirname "$(dirname "$(command -v promtool)")")
  else
    say "Debian's prometheus package (server and promtool), unpacked into $dir"
    mkdir -p "$dir/work"
    (
      cd "$dir/work"
      rm -f prometheus_*.deb
      apt-get download prometheus >&2 2>/dev/null || {
        apt-get update -qq >&2 && apt-get download prometheus >&2
      }
      rm -rf root && dpkg-deb -x prometheus_*.deb root
      mkdir -p "$dir/bin"
      install -m 0755 root/usr/bin/prometheus root/usr/bin/promtool "$dir/bin/"
    ) || { echo "could not fetch Debian's prometheus package (apt-get download prometheus)" >&2; exit 1; }
  fi
  WPA_PROMETHEUS_BIN_DIR="$dir/bin"
  export WPA_PROMETHEUS_BIN_DIR
  echo "prometheus: $("$WPA_PROMETHEUS_BIN_DIR/prometheus" --version 2>&1 | head -n 1)" >&2
}

# The real node's runtime (Debian packages; the node starts them itself, no service) and the image's binary.
node_prerequisites() {
  say "the real node: containerd, runc, CNI plugins, iptables, conntrack, binutils (strip)"
  local pkgs=(containerd runc containernetworking-plugins iptables conntrack binutils) missing=() p
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || { $sudo apt-get update -qq >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends "${missing[@]}" >&2; }
  fi
  say "the wpa image's binary: cargo build --release --no-default-features (the Dockerfile's build)"
  cargo build --release --locked --no-default-features --bin wpa
}

e2e() {
  say "control-plane binaries"
  WPA_K8S_BIN_DIR=$(bash scripts/k8s-test-env.sh | tail -n 1)
  export WPA_K8S_BIN_DIR
  echo "using $WPA_K8S_BIN_DIR" >&2
  if [ -f tests/helm/requirements.txt ]; then
    say "Helm library for the chart tests (PyPI helm-python-sdk)"
    python3 -m pip install --quiet --disable-pip-version-check -r tests/helm/requirements.txt
  fi
  prometheus_tools
  node_prerequisites
  say "tests against a real control plane"
  # shellcheck disable=SC2046
  cargo test --locked $(args_for "${E2E_TESTS[@]}")
}

# Each tier's wall time, installs and builds included (docs/development.md reports them).
for t in "${tiers[@]}"; do
  began=$SECONDS
  "$t"
  say "tier $t passed in $((SECONDS - began)) s"
done
