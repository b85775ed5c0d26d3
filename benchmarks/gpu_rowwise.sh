#!/usr/bin/env bash
# Issue 11 on one GPU, in one call: the row-wise family against torch.compile and Liger-Kernel, then
# `kb optimize` with default options on the family's tasks (the first one timed end to end, with its
# --json for screening throughput), then the leaderboard CSV and the knowledge base.
#   OUT=dir SAMPLES=.shared_sample bash benchmarks/gpu_rowwise.sh [BATCH_SECONDS] [TASK_GLOB ...]
set -uo pipefail
final=$OUT; OUT=$(mktemp -d)   # everything in one archive at the end: the device returns few files
trap 'tar czf "$final/rowwise.tgz" -C "$OUT" . && cp "$OUT/gpu.txt" "$final/" ' EXIT
batch_s=${1:-300}; shift || true
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=("L1/022_*" "L1/025_*" "L1/031_*" "L1/036_*" "L1/035_*" "L1/024_*")
mkdir -p /tmp/kbbin   # `kb` run by the python that has torch, whichever one owns an installed `kb`
printf '#!/bin/sh\nexec python3 -c "from kernelbench.cli import main; main()" "$@"\n' > /tmp/kbbin/kb
chmod +x /tmp/kbbin/kb; export PATH=/tmp/kbbin:$PATH
export KB_DB=$OUT/kb.db KB_CACHE_DIR=${KB_CACHE_DIR:-$PWD/.kbcache}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a $OUT/gpu.txt
[ -n "${SKIP_FAMILY:-}" ] || timeout 170 python3 benchmarks/family_rowwise.py $OUT/family --budget-s 140 2>&1 | tail -40
SECONDS=0
timeout 200 kb optimize 001_llama3_8b_rmsnorm --json --out $OUT/kb_out > $OUT/optimize_001.json 2> $OUT/optimize_001.err
echo "kb optimize 001_llama3_8b_rmsnorm (default options): ${SECONDS} s" | tee -a $OUT/gpu.txt
args=(); for t in "${tasks[@]}"; do args+=(--only "$t"); done
timeout "$batch_s" kb batch tasks235 "${args[@]}" --out $OUT/kb_out 2>&1 | grep -v "^\s*$" | tail -20
timeout 80 kb batch "$SAMPLES" --only "FlashInfer-Bench/021_*" --only "L1/069_*" --out $OUT/kb_out 2>&1 | tail -5
kb leaderboard --csv $OUT/leaderboard_per_workload.csv --per-workload > /dev/null; kb leaderboard --csv $OUT/leaderboard.csv
kb knowledge export --gpu "$(python3 -c "import torch; print('H200' if 'H200' in torch.cuda.get_device_name() else 'H100')")" --out $OUT/knowledge.json
