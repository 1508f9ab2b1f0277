# Shared by scripts/*-instructions.sh: `total ARGS...` prints the instructions callgrind counts for one run of
# `target/release/wpa bench ARGS...` (built first, once, by the caller through `build`).
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 2; }
bin=target/release/wpa
build() { cargo build --release --locked --quiet; }
total() {
  local out
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" bench "$@" 2>"$out" >/dev/null
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out"
  rm -f "$out"
}
