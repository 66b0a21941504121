#!/usr/bin/env bash
# Trains several teacher configs side by side, sharing one VAE, one text encoder and one set of
# latent caches.  Why side by side: a batch 16–128 teacher step is launch-bound on a GPU (about
# 4400 small kernels for a few milliseconds of arithmetic), so one run leaves most of it idle;
# four at once on an H200 took 72–81 ms a step each (docs/experiments.md, "A second GPU run").
# Resumable: run it again after an interruption and every run continues from its last checkpoint.
#
# Usage: bash scripts/teachers_side_by_side.sh BASE CFG [CFG...]
#   BASE  a run folder holding vae/final and text/final (the `vae` and `text` stages' out_dir)
#   CFG   a teacher config (JSON) with its own out_dir (relative to the repository, as the stages
#         read it); the run's log goes to <out_dir>/teacher.log
set -euo pipefail
if [ $# -lt 2 ]; then sed -n 8,11p "$0" >&2; exit 2; fi
# Paths as the caller gave them, before moving to the repository (where `dsa_core` imports).
base=$(realpath -m "$1"); shift
cfgs=()
for cfg in "$@"; do cfgs+=("$(realpath -m "$cfg")"); done
cd "$(dirname "$0")/.."
for stage in vae text; do
  if [ ! -d "$base/$stage/final" ]; then
    echo "$base/$stage/final is missing: run \`python -m dsa_core.train $stage\` with out_dir $base first" >&2
    exit 2
  fi
done
mkdir -p "$base/latents"
dirs=()
for cfg in "${cfgs[@]}"; do
  if ! dir=$("${PYTHON:-python}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["out_dir"])' "$cfg" 2>/dev/null); then
    echo "$cfg: not a JSON teacher config with an out_dir" >&2; exit 2
  fi
  dir=$(realpath -m "$dir")
  if [ "$dir" = "$base" ] || [[ " ${dirs[*]} " == *" $dir "* ]]; then
    echo "$cfg: out_dir $dir is BASE's or another config's; each run needs its own" >&2; exit 2
  fi
  dirs+=("$dir")
  mkdir -p "$dir"
  for link in vae text latents; do
    if [ -e "$dir/$link" ] && [ ! -L "$dir/$link" ]; then
      echo "$dir/$link exists and is not a link to $base/$link: use a fresh out_dir" >&2; exit 2
    fi
    ln -sfn "$base/$link" "$dir/$link"
  done
done

train() { "${PYTHON:-python}" -m dsa_core.train teacher --resume --config "$1" >"$2/teacher.log" 2>&1; }

# The first run builds the caches it needs; the others start once its progress bar shows, so
# they find those caches built (a config whose caches differ, say another short_speed_frames,
# builds its own meanwhile).
train "${cfgs[0]}" "${dirs[0]}" &
pids=($!)
until grep -q "teacher:" "${dirs[0]}/teacher.log" 2>/dev/null || ! kill -0 "${pids[0]}" 2>/dev/null; do sleep 2; done
for i in $(seq 1 $((${#cfgs[@]} - 1))); do
  train "${cfgs[i]}" "${dirs[i]}" &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[i]}"; then
    echo "${dirs[i]}/teacher/final"
  else
    echo "${cfgs[i]} failed: see ${dirs[i]}/teacher.log" >&2; failed=1
  fi
done
exit $failed
