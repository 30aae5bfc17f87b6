#!/usr/bin/env bash
# Install skcarl with its test extras, then run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec "${PYTHON:-python3}" -m pytest "$@"
