#!/usr/bin/env bash
# Tests {{name}} with plain Python, then builds the component {{name}}.wasm here
# with componentize-py 0.25.1 (pip install componentize-py==0.25.1).
#   python3 -m unittest discover -s src
#   componentize-py -d wit -w transformer componentize -p src app -o {{name}}.wasm
# COMPONENTIZE_PY / PYTHON pick other executables.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# -B: the tests leave no __pycache__ behind.
"${PYTHON:-python3}" -B -m unittest discover -s src
# -p src: only the app's directory on the component's path; without VIRTUAL_ENV
# unset, componentize-py would add the active venv's site-packages too.
env -u VIRTUAL_ENV "${COMPONENTIZE_PY:-componentize-py}" -d wit -w transformer \
    componentize -p src app -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
