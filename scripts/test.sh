#!/usr/bin/env bash
# The one command that runs every test of sluice.
#
# On a fresh Debian machine (or a developer's) it installs what the tests need, then runs:
#   1. cargo build --locked        (the binary the end-to-end tests drive: target/debug/sluice)
#   2. cargo test --locked         (Rust unit and integration tests)
#   3. cargo build --target x86_64-unknown-linux-musl
#                                  (the static binary tests/test_container.py puts in the
#                                   Dockerfile's image; podman, buildah, musl-tools installed)
#   4. transforms/build.sh         (WASM guest side: SDK and example plugins' native tests,
#                                   their components built and checked; own cargo workspace)
#   5. pytest tests/               (end-to-end tests against the real binary, with real
#                                   AWS SDK clients and independent output readers)
# Runnable from any directory, idempotent, exits non-zero if anything fails.
#
# Environment:
#   SLUICE_SKIP_CARGO=1   skip steps 1-2 (iterate on the Python suite only)
#   SLUICE_SKIP_GUEST=1   skip step 4
#   PYTEST_ARGS="..."     extra pytest arguments (e.g. "-k crash -x")
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

log() { printf '==> %s\n' "$*" >&2; }

# --- Python test environment -------------------------------------------------------------
VENV="$REPO/.venv"
REQS="$REPO/tests/requirements.txt"

ensure_venv() {
    local python="${PYTHON:-python3}"
    if ! command -v "$python" >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "installing python3 (apt-get)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        else
            echo "error: python3 not found; install python3 and python3-venv" >&2
            exit 1
        fi
    fi
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating $VENV"
        rm -rf "$VENV"
        if ! "$python" -m venv "$VENV"; then
            # Debian's python3 ships venv (ensurepip) separately.
            if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
                log "installing python3-venv (apt-get)"
                rm -rf "$VENV"
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
                "$python" -m venv "$VENV"
            else
                echo "error: '$python -m venv' failed; install python3-venv" >&2
                exit 1
            fi
        fi
    fi
    local hash stamp
    hash="$(sha256sum "$REQS" | cut -c1-16)"
    stamp="$VENV/.requirements-$hash"
    if [[ ! -f "$stamp" ]]; then
        log "installing Python test requirements"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
        rm -f "$VENV"/.requirements-*
        touch "$stamp"
    fi
}

ensure_venv

# --- kinesis-local (npm) for tests/test_kinesis.py -------------------------------------------
# Installed once into .cache/; it binds 0.0.0.0 with no setting to change that, so its
# main.js is patched to bind 127.0.0.1 (idempotent). Without npm that one test skips.
KINESIS_LOCAL_DIR="$REPO/.cache/kinesis-local/node_modules/kinesis-local"
if command -v npm >/dev/null 2>&1; then
    if [[ ! -f "$KINESIS_LOCAL_DIR/main.js" ]]; then
        log "installing kinesis-local (npm)"
        npm install --prefix "$REPO/.cache/kinesis-local" --no-audit --no-fund kinesis-local@0.6.2 >/dev/null
    fi
    sed -i 's/Host$().em("0.0.0.0")/Host$().em("127.0.0.1")/' "$KINESIS_LOCAL_DIR/main.js"
else
    log "npm not found: the kinesis-local test in tests/test_kinesis.py will be skipped"
fi

# --- Rust --------------------------------------------------------------------------------
if [[ "${SLUICE_SKIP_CARGO:-0}" != 1 ]]; then
    log "cargo build --locked"
    cargo build --locked
    # The WASM host's tests (src/process/wasm) run a real guest component: build it for
    # wasm32-wasip2 first (idempotent). build.sh prints nothing, loudly, only when the
    # target cannot be installed; the tests then skip instead of failing.
    log "building the WASM test guest (tests/wasm-fixtures)"
    SLUICE_WASM_FIXTURE="$(tests/wasm-fixtures/build.sh)"
    export SLUICE_WASM_FIXTURE
    log "cargo test --locked"
    cargo test --locked
fi

# --- The container image's static binary ------------------------------------------------------
# tests/test_container.py builds the Dockerfile with podman around a musl binary (no registry
# is reachable for the Dockerfile's own build stage) and runs it with buildah. A debug build:
# the test needs the image's behaviour, not its speed.
MUSL=x86_64-unknown-linux-musl
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1 \
    && ! { command -v podman && command -v buildah && command -v musl-gcc; } >/dev/null 2>&1; then
    log "installing podman, buildah and musl-tools (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah musl-tools >/dev/null
fi
if [[ "${SLUICE_SKIP_CARGO:-0}" != 1 ]] && command -v musl-gcc >/dev/null 2>&1; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
        log "rustup target add $MUSL"
        rustup target add "$MUSL" >/dev/null
    fi
    log "cargo build --locked --target $MUSL"
    cargo build --locked --target "$MUSL" --bin sluice
fi
if [[ -x "$REPO/target/$MUSL/debug/sluice" ]]; then
    export SLUICE_STATIC_BIN="$REPO/target/$MUSL/debug/sluice"
else
    log "no static binary (musl-gcc missing?): tests/test_container.py will be skipped"
fi

# --- WASM transform guests (transforms/, its own cargo workspace) -----------------------------
# Before pytest so end-to-end tests can load the example components from
# transforms/target/components/. Warm, it takes a second or two.
if [[ "${SLUICE_SKIP_GUEST:-0}" != 1 ]]; then
    log "transforms/build.sh"
    "$REPO/transforms/build.sh"
fi

export SLUICE_BIN="${SLUICE_BIN:-$REPO/target/debug/sluice}"
if [[ ! -x "$SLUICE_BIN" ]]; then
    echo "error: $SLUICE_BIN not found (cargo build failed or was skipped)" >&2
    exit 1
fi

# --- End-to-end tests ----------------------------------------------------------------------
# faulthandler_timeout dumps every thread's stack if one test hangs; the fixtures bound
# every wait themselves (daemon start, exit, HTTP calls), so a hang is a bug to look at.
log "pytest tests/"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    -o faulthandler_timeout=300 \
    -o console_output_style=classic \
    -o tmp_path_retention_policy=failed \
    ${PYTEST_ARGS:-} \
    "$REPO/tests" </dev/null
