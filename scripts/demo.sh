#!/usr/bin/env bash
# Install skcarl, then run the main job: CARL on the shipped affect corpus, frozen vs CARL table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
"${PYTHON:-python3}" -m skcarl demo "$@"
