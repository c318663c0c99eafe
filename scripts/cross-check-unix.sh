#!/usr/bin/env bash
# The macOS and static-Linux parts of scripts/cross-check.sh, which sources
# this file and runs the functions by name; run alone, it runs the ones named
# on its command line (default: all):
#
#   scripts/cross-check-unix.sh [macos_compile] [musl_demo] [linux_aarch64]
#
# Each function prints one "pass:"/"FAIL:"/"skip:" line per check and returns
# non-zero if any check failed. They run in subshells: nothing they set or
# cd into leaks into the caller.
#
# Needs: rustup targets x86_64-apple-darwin aarch64-apple-darwin
# x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-unknown-linux-gnu;
# cargo-zigbuild and zig (`cargo install cargo-zigbuild`, `pip install ziglang`);
# musl-tools; for the demo, python3, OpenSSH's sshd and ssh, curl.

# The release binary's ceiling on every target (README, BENCHMARKS.md).
CROSS_CHECK_MAX_BYTES=$((8 * 1024 * 1024))

_cc_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }
_cc_pass() { echo "pass: $*"; }
_cc_fail() { echo "FAIL: $*"; }
_cc_skip() { echo "skip: $*"; }

# Runs a command quietly into a log; on failure shows the log's last lines.
_cc_run() {
  local log=$1
  shift
  if "$@" >"$log" 2>&1; then
    return 0
  fi
  tail -n 25 "$log" | sed 's/^/    /'
  return 1
}

# Whether binary $2 is within the size ceiling; says so either way, as $1.
_cc_size() {
  local what=$1 bin=$2 bytes
  bytes=$(wc -c <"$bin" | tr -d ' ')
  if [ "$bytes" -le "$CROSS_CHECK_MAX_BYTES" ]; then
    _cc_pass "$what: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }') MiB, at most 8 MiB)"
  else
    _cc_fail "$what: $bytes bytes, over the 8 MiB ceiling"
    return 1
  fi
}

_cc_need_zigbuild() {
  if ! command -v cargo-zigbuild >/dev/null; then
    _cc_fail "cargo-zigbuild is not installed (cargo install cargo-zigbuild; pip install ziglang)"
    return 1
  fi
}

# Both macOS targets: cfaccess (lib, binary, unit and integration tests)
# compiles with no warning of its own (clippy -D warnings; zig is the C
# compiler for ring), and so does access-edge. Linking needs Apple's SDK
# (the Security and CoreFoundation frameworks): it is tried only when
# SDKROOT names one, else skipped with that reason.
macos_compile() (
  cd "$(_cc_root)" || exit 1
  _cc_need_zigbuild || exit 1
  logs=$(mktemp -d)
  failed=0
  for target in x86_64-apple-darwin aarch64-apple-darwin; do
    if _cc_run "$logs/clippy-$target.log" \
      cargo-zigbuild clippy --locked -p cfaccess --all-targets --target "$target" -- -D warnings; then
      _cc_pass "$target: cfaccess compiles warning-free (clippy --all-targets -D warnings)"
    else
      _cc_fail "$target: cfaccess does not compile warning-free (log: $logs/clippy-$target.log)"
      failed=1
    fi
    if _cc_run "$logs/edge-$target.log" \
      cargo-zigbuild clippy --locked -p access-edge --all-targets --target "$target" -- -D warnings; then
      _cc_pass "$target: access-edge compiles warning-free"
    else
      _cc_fail "$target: access-edge does not compile warning-free (log: $logs/edge-$target.log)"
      failed=1
    fi
    if [ -z "${SDKROOT:-}" ]; then
      _cc_skip "$target: linking needs an Apple SDK (set SDKROOT to a MacOSX.sdk to link and size it)"
    elif _cc_run "$logs/link-$target.log" \
      cargo zigbuild --release --locked -p cfaccess --target "$target"; then
      _cc_size "$target: release binary" "target/$target/release/cfaccess" || failed=1
    else
      _cc_fail "$target: the release build does not link (log: $logs/link-$target.log)"
      failed=1
    fi
  done
  exit "$failed"
)

# The static x86_64 musl binary: built, static (`file`), under the ceiling,
# names itself, and runs the README's demo (./demo.sh with CFACCESS_BIN), the
# ssh login through it included when sshd is there.
musl_demo() (
  cd "$(_cc_root)" || exit 1
  target=x86_64-unknown-linux-musl
  bin=$PWD/target/$target/release/cfaccess
  logs=$(mktemp -d)
  if ! _cc_run "$logs/build.log" cargo build --release --locked -p cfaccess --target "$target"; then
    _cc_fail "$target: the release build failed (log: $logs/build.log)"
    exit 1
  fi
  failed=0
  kind=$(file -b "$bin")
  case $kind in
  *"statically linked"* | *"static-pie linked"*) _cc_pass "$target: static ($kind)" ;;
  *) _cc_fail "$target: not static: $kind"; failed=1 ;;
  esac
  _cc_size "$target: release binary" "$bin" || failed=1
  version=$("$bin" --version 2>&1)
  case $version in
  "cfaccess "*"($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $target)")
    _cc_pass "$target: --version says $version" ;;
  *) _cc_fail "$target: --version says '$version'"; failed=1 ;;
  esac
  if CFACCESS_BIN=$bin _cc_run "$logs/demo.log" ./demo.sh </dev/null; then
    if [ -x /usr/sbin/sshd ] && ! grep -q "hello from" "$logs/demo.log"; then
      _cc_fail "$target: demo.sh passed but its ssh login did not run (log: $logs/demo.log)"
      failed=1
    else
      _cc_pass "$target: ./demo.sh with CFACCESS_BIN=$bin$([ -x /usr/sbin/sshd ] || echo ' (no sshd: ssh steps skipped)')"
    fi
  else
    _cc_fail "$target: ./demo.sh with the musl binary failed (log: $logs/demo.log)"
    failed=1
  fi
  exit "$failed"
)

# aarch64 Linux, glibc and musl: cfaccess compiles warning-free and links
# (zig as the C compiler and linker), a static musl binary under the ceiling.
linux_aarch64() (
  cd "$(_cc_root)" || exit 1
  _cc_need_zigbuild || exit 1
  logs=$(mktemp -d)
  failed=0
  for target in aarch64-unknown-linux-gnu aarch64-unknown-linux-musl; do
    if ! _cc_run "$logs/clippy-$target.log" \
      cargo-zigbuild clippy --locked -p cfaccess --target "$target" -- -D warnings; then
      _cc_fail "$target: cfaccess does not compile warning-free (log: $logs/clippy-$target.log)"
      failed=1
      continue
    fi
    _cc_pass "$target: cfaccess compiles warning-free"
    if _cc_run "$logs/build-$target.log" cargo zigbuild --release --locked -p cfaccess --target "$target"; then
      _cc_size "$target: release binary ($(file -b "target/$target/release/cfaccess" | cut -d, -f1-2))" \
        "target/$target/release/cfaccess" || failed=1
    else
      _cc_fail "$target: the release build failed (log: $logs/build-$target.log)"
      failed=1
    fi
  done
  exit "$failed"
)

# Run alone: the named functions (default: all), then the overall status.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  status=0
  for check in "${@:-macos_compile musl_demo linux_aarch64}"; do
    for name in $check; do
      echo "== $name"
      "$name" || status=1
    done
  done
  exit "$status"
fi
