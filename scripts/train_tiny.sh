#!/usr/bin/env bash
# The whole tiny recipe, resumable: run it again after an interruption and it continues.
set -euo pipefail
cd "$(dirname "$0")/.."
for stage in vae vae-decoder text teacher ode dmd confidence-head evalnet asd diagonal; do
  python -m dsa_core.train "$stage" --resume
done
python -m dsa_core.train export
