#!/usr/bin/env bash
# Builds and tests sluice's guest side: the Rust SDK and every example plugin.
#
#   1. installs what the guests need, once (idempotent):
#        rustup target wasm32-wasip2; componentize-py into the repo's .venv;
#        componentize-js into .cache/componentize-js (npm)
#   2. runs the native tests: cargo test (SDK + Rust examples on the host),
#      python -m unittest (python-upper), node --test (js-tag)
#   3. builds every example into transforms/target/components/<name>.wasm
#   4. checks each output is a component exporting the world (check_component.py)
#      and prints its size
#
# Runnable from any directory; exits non-zero if anything fails. Called by
# scripts/test.sh; CI runs it there.
#
# Environment:
#   SLUICE_GUEST_SKIP_PY=1 / SLUICE_GUEST_SKIP_JS=1   skip the Python / JavaScript
#       example (their toolchains are 17 MB and ~40 MB to install, ~10-20 s to build)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT="$HERE/target/components"
WIT="$HERE/wit"
# Pinned: the versions checked to produce components wasmtime 48 runs (TOOLING.md §5).
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0

log() { printf "==> transforms [%3ds]: %s\n" "$((SECONDS - start))" "$*" >&2; }
start=$SECONDS

# --- 1. toolchains -------------------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "rustup target add wasm32-wasip2"
    rustup target add wasm32-wasip2
fi

PY="$REPO/.venv/bin/python"
if [[ "${SLUICE_GUEST_SKIP_PY:-0}" != 1 ]]; then
    if [[ ! -x "$PY" ]]; then
        # scripts/test.sh makes the venv first; this covers running build.sh alone.
        log "creating .venv"
        "${PYTHON:-python3}" -m venv "$REPO/.venv"
    fi
    # Installed here rather than from tests/requirements.txt: the end-to-end tests do not
    # need it, and a version check here is cheaper than re-resolving that whole file.
    if [[ "$("$REPO/.venv/bin/componentize-py" --version 2>/dev/null)" != *" $COMPONENTIZE_PY_VERSION"* ]]; then
        log "installing componentize-py $COMPONENTIZE_PY_VERSION (pip)"
        "$PY" -m pip install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
    fi
fi

JS_DIR="$REPO/.cache/componentize-js"
JS_CLI="$JS_DIR/node_modules/@bytecodealliance/componentize-js/src/cli.js"
if [[ "${SLUICE_GUEST_SKIP_JS:-0}" != 1 ]]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        log "node/npm not found: skipping the JavaScript example"
        SLUICE_GUEST_SKIP_JS=1
    elif ! grep -qs "\"version\": \"$COMPONENTIZE_JS_VERSION\"" "$JS_DIR/node_modules/@bytecodealliance/componentize-js/package.json"; then
        log "installing componentize-js $COMPONENTIZE_JS_VERSION (npm)"
        npm install --prefix "$JS_DIR" --no-audit --no-fund --silent \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >/dev/null
    fi
fi

# --- 2. native tests ---------------------------------------------------------------------------
cd "$HERE"
log "cargo test (SDK and Rust examples, native)"
cargo test --locked --quiet

if [[ "${SLUICE_GUEST_SKIP_PY:-0}" != 1 ]]; then
    log "python -m unittest (python-upper)"
    # -B: no __pycache__ left in the source tree.
    (cd examples/python-upper && "$PY" -B -m unittest --quiet)
fi
if [[ "${SLUICE_GUEST_SKIP_JS:-0}" != 1 ]]; then
    log "node --test (js-tag)"
    (cd examples/js-tag && node --test --test-reporter=dot)
fi

# --- 3. components -----------------------------------------------------------------------------
mkdir -p "$OUT"
log "cargo build --release --target wasm32-wasip2"
cargo build --locked --quiet --release --target wasm32-wasip2
built=()
for crate in examples/*/Cargo.toml; do
    name="$(basename "$(dirname "$crate")")"
    # cargo names the artefact after the crate with - turned into _.
    cp "target/wasm32-wasip2/release/${name//-/_}.wasm" "$OUT/$name.wasm"
    built+=("$OUT/$name.wasm")
done

# The Python and JavaScript builds take 10-20 s each, so each is redone only when one of
# its inputs (sources, WIT, tool version) is newer than its output.
stale() { # stale OUTPUT INPUT...
    local out="$1"
    shift
    [[ ! -f "$out" ]] && return 0
    [[ -n "$(find "$@" -newer "$out" -print -quit)" ]]
}

if [[ "${SLUICE_GUEST_SKIP_PY:-0}" != 1 ]]; then
    src="$HERE/examples/python-upper"
    if stale "$OUT/python-upper.wasm" "$src"/*.py "$WIT" "$REPO/.venv/bin/componentize-py"; then
        log "componentize-py python-upper"
        # -p: the app's directory only; without it componentize-py adds the venv's
        # site-packages (VIRTUAL_ENV) to the component's path.
        (cd "$src" && env -u VIRTUAL_ENV "$REPO/.venv/bin/componentize-py" -q -d "$WIT" -w transformer \
            componentize -p . app -o "$OUT/python-upper.wasm")
    fi
    built+=("$OUT/python-upper.wasm")
fi

if [[ "${SLUICE_GUEST_SKIP_JS:-0}" != 1 ]]; then
    src="$HERE/examples/js-tag"
    if stale "$OUT/js-tag.wasm" "$src"/*.js "$WIT" "$JS_CLI"; then
        log "componentize-js js-tag"
        # -d http fetch-event: no fetch() (sluice gives guests no network), so the
        # component imports no wasi:http the host would have to link. Never --aot: it
        # downloads a binary at build time.
        node "$JS_CLI" "$src/component.js" --wit "$WIT" -n transformer \
            -d http fetch-event -o "$OUT/js-tag.wasm"
    fi
    built+=("$OUT/js-tag.wasm")
fi

# --- 4. check and report ------------------------------------------------------------------------
log "checking components"
python3 "$HERE/check_component.py" "${built[@]}"
log "sizes"
for f in "${built[@]}"; do
    printf '    %-18s %10s bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done
log "done in $((SECONDS - start)) s"
