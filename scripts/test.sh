#!/usr/bin/env bash
# Set up .venv with every extra and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" "train,serve,test,scale"
cd "$ROOT"
"$VENV/bin/python" -m pytest "$@"
