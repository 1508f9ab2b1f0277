#!/usr/bin/env bash
# Installs (once) the binaries of a private Kubernetes v1.20.2 control plane for the tests and prints, as the
# last line on stdout, the directory that holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, and a real node's kubelet, kube-proxy and pause binary.
#
#   scripts/k8s-test-env.sh            # install if needed, print the directory
#   WPA_K8S_BIN_DIR=/opt/k8s scripts/k8s-test-env.sh   # use binaries you already have; nothing is built
#
# Where things come from (no internet beyond the Debian mirror is needed):
#   etcd                 Debian package etcd-server (3.4)
#   kubectl              Debian package kubernetes-client (1.20.2), unpacked into the cache (it is not
#                        installed system-wide, so an existing /usr/bin/kubectl is left alone)
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#                        built from Debian's `kubernetes` source package (upstream v1.20.2 with vendor/) in
#                        GOPATH mode with Debian's Go 1.19, in one `make`: about 9 minutes on 2 cores, once.
#   pause                the pod sandbox's pause binary, `gcc -static` from the same source (build/pause).
#
# The result is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/wpa/k8s-v1.20.2/ (override with WPA_K8S_CACHE_DIR);
# a second run costs nothing. Progress goes to stderr.
set -euo pipefail

K8S_VERSION=1.20.2
DEB_SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
# Changes to how the binaries are built; a cache made by an older recipe is rebuilt.
#   2: vendored github.com/modern-go/reflect2 replaced by 1.0.2 (1.0.1 crashes kube-apiserver built with
#      Go >= 1.18 as soon as a custom resource is created: "fatal error: fault" in mapiterinit).
#   3: kubelet, kube-proxy and the static pause binary added (the real node of crates/devcluster).
BUILD_RECIPE=3
BUILT=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
REQUIRED=(etcd kubectl "${BUILT[@]}" pause)

say() { printf '[k8s-test-env] %s\n' "$*" >&2; }
die() { printf '[k8s-test-env] error: %s\n' "$*" >&2; exit 1; }

has_all() {
  local dir=$1 b
  for b in "${REQUIRED[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

missing_in() {
  local dir=$1 b out=()
  for b in "${REQUIRED[@]}"; do [ -x "$dir/$b" ] || out+=("$b"); done
  echo "${out[*]}"
}

# 1. Binaries the user already has.
for var in WPA_K8S_BIN_DIR KUBEBUILDER_ASSETS; do
  dir=${!var:-}
  if [ -n "$dir" ]; then
    has_all "$dir" || die "$var=$dir lacks: $(missing_in "$dir") (it needs ${REQUIRED[*]})"
    say "using $var=$dir"
    echo "$dir"
    exit 0
  fi
done

CACHE_DIR=${WPA_K8S_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wpa/k8s-v$K8S_VERSION}
BIN_DIR=$CACHE_DIR/bin

# 2. Already cached (by this recipe).
if has_all "$BIN_DIR" && "$BIN_DIR/kube-apiserver" --version 2>/dev/null | grep -q "v$K8S_VERSION" \
    && [ "$(cat "$BIN_DIR/.build-recipe" 2>/dev/null)" = "$BUILD_RECIPE" ]; then
  say "cached: $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi

# 3. Install. Needs root for apt-get (directly or through sudo).
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot apt-get install; install etcd-server, golang-go, rsync, make and point WPA_K8S_BIN_DIR at prebuilt binaries instead"
  SUDO="sudo"
fi
command -v apt-get >/dev/null || die "apt-get not found: this script needs Debian (bookworm); otherwise set WPA_K8S_BIN_DIR to a directory with ${REQUIRED[*]}"

mkdir -p "$BIN_DIR" "$CACHE_DIR/work"
apt_env=(env DEBIAN_FRONTEND=noninteractive)

# Source packages: mirror what debian.sources says for binary packages.
SRC_LIST=/etc/apt/sources.list.d/wpa-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list 2>/dev/null; then
  main_src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$main_src" ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' "$main_src")
    keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$main_src")
  fi
  uri=${uri:-http://deb.debian.org/debian}
  keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
  say "enabling Debian source packages ($uri) in $SRC_LIST"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' "$uri" "$keyring" \
    | $SUDO tee "$SRC_LIST" >/dev/null
  need_update=1
fi

pkgs=(etcd-server golang-go rsync make gcc libc6-dev ca-certificates golang-github-modern-go-reflect2-dev)
missing_pkgs=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing_pkgs+=("$p"); done
if [ "${need_update:-0}" = 1 ] || [ ${#missing_pkgs[@]} -gt 0 ]; then
  say "apt-get update"
  $SUDO "${apt_env[@]}" apt-get update -qq >&2 || die "apt-get update failed"
fi
if [ ${#missing_pkgs[@]} -gt 0 ]; then
  say "installing ${missing_pkgs[*]}"
  $SUDO "${apt_env[@]}" apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >&2 \
    || die "apt-get install ${missing_pkgs[*]} failed"
fi
# The etcd-server package may start a system etcd on 2379; the tests never use it (they pick free ports).

command -v etcd >/dev/null || die "etcd not found after installing etcd-server"
ln -sf "$(command -v etcd)" "$BIN_DIR/etcd"

# kubectl of the same minor as the server, unpacked into the cache only.
if [ ! -x "$BIN_DIR/kubectl" ]; then
  say "fetching kubectl $K8S_VERSION (Debian kubernetes-client)"
  (
    cd "$CACHE_DIR/work"
    rm -rf kubectl-deb && mkdir kubectl-deb && cd kubectl-deb
    apt-get download "kubernetes-client=$DEB_SRC_VERSION" >&2 2>/dev/null || apt-get download kubernetes-client >&2
    dpkg-deb -x kubernetes-client_*.deb root
    install -m 0755 root/usr/bin/kubectl "$BIN_DIR/kubectl"
  ) || die "could not fetch kubernetes-client"
fi

build_needed=0
for b in "${BUILT[@]}" pause; do [ -x "$BIN_DIR/$b" ] || build_needed=1; done
[ "$(cat "$BIN_DIR/.build-recipe" 2>/dev/null)" = "$BUILD_RECIPE" ] || build_needed=1
if [ $build_needed = 1 ]; then
  start=$(date +%s)
  say "building ${BUILT[*]} v$K8S_VERSION from Debian's source package"
  say "this happens once and takes 4 to 10 minutes on 2 cores (the result is cached in $BIN_DIR)"
  work=$CACHE_DIR/work
  cd "$work"
  orig=kubernetes_1.20.5+really1.20.2.orig.tar.gz
  if [ ! -f "$orig" ]; then
    say "downloading the source ($orig, 34 MB)"
    apt-get source --download-only "kubernetes=$DEB_SRC_VERSION" >&2 \
      || apt-get source --download-only kubernetes >&2 \
      || die "apt-get source kubernetes failed (are deb-src entries enabled? see $SRC_LIST)"
    orig=$(ls kubernetes_*.orig.tar.gz | head -n1)
  fi
  rm -rf src && mkdir src
  say "unpacking $orig"
  tar -xzf "$orig" -C src
  root=$(find src -mindepth 1 -maxdepth 1 -type d | head -n1)
  [ -f "$root/Makefile" ] || die "unexpected source layout in $orig"
  cd "$root"
  # Kubernetes 1.20 vendors reflect2 1.0.1, which breaks under Go >= 1.18 (reflect.mapiterinit changed);
  # Debian's golang-github-modern-go-reflect2-dev is 1.0.2, the fixed release.
  reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -f "$reflect2_src/go_above_118.go" ] || die "$reflect2_src lacks go_above_118.go: golang-github-modern-go-reflect2-dev >= 1.0.2 is needed"
  say "replacing vendored reflect2 1.0.1 with 1.0.2 (Go >= 1.18 compatibility)"
  rm -rf vendor/github.com/modern-go/reflect2
  mkdir -p vendor/github.com/modern-go/reflect2
  find "$reflect2_src" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} vendor/github.com/modern-go/reflect2/ \;
  # Kubernetes 1.20 predates module-mode builds of its generators: build in GOPATH mode.
  mkdir -p .go/src/k8s.io
  ln -sfn ../../.. .go/src/k8s.io/kubernetes
  mkdir -p "$work/home"
  say "compiling (output in $work/build.log)"
  if ! env GOPATH="$PWD/.go" GO111MODULE=off CGO_ENABLED=0 HOME="$work/home" GOCACHE="$work/gocache" \
      make WHAT="${BUILT[*]/#/cmd/}" >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    die "the Kubernetes build failed; full log: $work/build.log"
  fi
  for b in "${BUILT[@]}"; do
    install -m 0755 "_output/bin/$b" "$BIN_DIR/$b"
  done
  # The pod sandbox's process: static, so the pause image needs nothing but this one file.
  gcc -Os -Wall -Werror -static -DVERSION="v$K8S_VERSION-wpa" -o "$BIN_DIR/pause" build/pause/linux/pause.c \
    || die "building the pause binary failed (gcc and libc6-dev are needed)"
  strip "$BIN_DIR/pause"
  echo "$BUILD_RECIPE" > "$BIN_DIR/.build-recipe"
  cd "$CACHE_DIR"
  # Keep the downloaded tarball (cheap to keep, slow to fetch); drop the 1+ GB tree and Go caches.
  rm -rf "$work/src" "$work/gocache" "$work/home"
  say "built in $(( $(date +%s) - start )) s"
fi

has_all "$BIN_DIR" || die "installation incomplete, missing: $(missing_in "$BIN_DIR")"
"$BIN_DIR/kube-apiserver" --version >&2
echo "$BIN_DIR"
