#!/usr/bin/env bash
# Fuzz the parsers that read untrusted bytes, each for a bounded time:
#   wal_frames  write-ahead log scanner, frame reader, header and mark decoders
#   kpl         KPL de-aggregation of Kinesis record data
#   prefix      prefix expression parser and evaluator (no evaluated key escapes)
#   api_request the Firehose API request decoding, every operation
# Uses cargo-fuzz (libFuzzer) on rustup's nightly toolchain; installs cargo-fuzz from
# crates.io when missing. Not part of scripts/test.sh: run it before touching a parser.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECS (default 60) seconds each
#   FUZZ_SECS=600 scripts/fuzz.sh kpl
# Crashes are saved under fuzz/artifacts/<target>/ and the script exits non-zero.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SECS="${FUZZ_SECS:-60}"
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(wal_frames kpl prefix api_request)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in "${TARGETS[@]}"; do
    echo "==> fuzzing $target for ${SECS}s" >&2
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$SECS" -rss_limit_mb=2048
done
