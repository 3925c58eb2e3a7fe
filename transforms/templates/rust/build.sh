#!/usr/bin/env bash
# Tests {{name}} natively, then builds the component {{name}}.wasm here.
#   cargo test
#   cargo build --release --target wasm32-wasip2
# Needs the wasm32-wasip2 target once: rustup target add wasm32-wasip2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

cargo test
cargo build --release --target wasm32-wasip2
# cargo names the artefact after the crate, with - turned into _.
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate_file}}.wasm" {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
