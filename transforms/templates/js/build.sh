#!/usr/bin/env bash
# Tests {{name}} with node, then builds the component {{name}}.wasm here with
# componentize-js 0.23.0 (npm install, from package.json's devDependencies).
#   node --test test/logic.test.js
#   componentize-js src/component.js --wit wit -n transformer -d http fetch-event -o {{name}}.wasm
# COMPONENTIZE_JS names another componentize-js cli.js.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

cli="${COMPONENTIZE_JS:-node_modules/@bytecodealliance/componentize-js/src/cli.js}"
if [[ ! -f "$cli" ]]; then
    echo "componentize-js not found at $cli: run npm install first" >&2
    exit 1
fi
node --test test/logic.test.js
# -d http fetch-event: no fetch() (sluice gives plugins no network), so the
# component imports no wasi:http. Never --aot: it downloads a binary at build time.
node "$cli" src/component.js --wit wit -n transformer -d http fetch-event -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
