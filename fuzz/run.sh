#!/bin/sh
# Run one fuzz target for a while: fuzz/run.sh TARGET SECONDS
# Exits non-zero when the target crashes (libFuzzer leaves the input in
# fuzz/artifacts/TARGET/). Needs cargo-fuzz and a nightly toolchain; on a
# stable-only machine, RUSTC_BOOTSTRAP=1 stands in for nightly.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 TARGET SECONDS (targets: imap_parser imap_mime proxy_protocol config registry smtp_parser client_hello xclient_reply proxy_readers proxy_v2_roundtrip record13 tls_stream chatmail_filter connect_request mta_sts_policy)" >&2
    exit 2
fi
target=$1
seconds=$2
cd "$(dirname "$0")"
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=+nightly
else
    toolchain=
    export RUSTC_BOOTSTRAP=1
fi
# The seeds are committed; libFuzzer adds what it finds to a scratch copy
# so that a run leaves the working tree clean.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp corpus/"$target"/* "$work"/ 2>/dev/null || true
# -max_len keeps inputs small enough to run fast yet past every limit the
# targets set; -timeout makes a hang count as a crash. FUZZ_SANITIZER=none
# (as CI uses it) builds much faster and still catches every panic.
exec_fuzz() {
    # shellcheck disable=SC2086
    cargo $toolchain fuzz run -O -s "${FUZZ_SANITIZER:-address}" "$target" "$work" -- \
        -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
}
exec_fuzz
