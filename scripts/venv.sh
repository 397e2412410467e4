# Sourced by demo.sh and test.sh: create or reuse .venv in the repository root and install imgsum into it.
# Usage: source scripts/venv.sh [EXTRAS]   (EXTRAS like "train,serve,test"; empty for the core)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
extras="${1:-}"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV" >&2
    python3 -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch is pinned to the CPU build this machine has on disk: an unpinned torch would pull a CUDA build of several GB.
# Only the train extra needs torch; the core captions with ONNX Runtime.
if [[ ",$extras," == *",train,"* ]] && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${pip[@]}" "torch==2.13.0"
fi
spec="$ROOT"
[[ -n "$extras" ]] && spec="$ROOT[$extras]"
"${pip[@]}" -e "$spec"
