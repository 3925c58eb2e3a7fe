#!/usr/bin/env bash
# Builds the test guest of src/process/wasm for wasm32-wasip2 and prints its path.
#
# Idempotent (cargo rebuilds only what changed). The host's tests find the component
# through SLUICE_WASM_FIXTURE or at tests/wasm-fixtures/target/wasm32-wasip2/release/
# fixture_guest.wasm. Exits 0 without building, with a loud warning, only when the
# wasm32-wasip2 target is missing and rustup cannot install it; the tests then skip loudly.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if ! rustc --print target-list 2>/dev/null | grep -qx wasm32-wasip2 ||
    ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    if ! command -v rustup >/dev/null 2>&1 || ! rustup target add wasm32-wasip2 >&2; then
        echo "WARNING: wasm32-wasip2 target not installable: WASM host tests will be SKIPPED" >&2
        exit 0
    fi
fi

cargo build --release --locked --target wasm32-wasip2 --quiet >&2
echo "$HERE/target/wasm32-wasip2/release/fixture_guest.wasm"
