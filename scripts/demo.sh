#!/usr/bin/env bash
# Set everything up (.venv with imgsum installed) and caption the sample photos shipped in the package.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" ""
"$VENV/bin/imgsum" caption "$ROOT/src/imgsum/assets/samples" "$@"
