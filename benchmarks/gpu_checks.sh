#!/usr/bin/env bash
# The GPU checks of issues 3-6, on the device machine; results under $OUT. Each step is one device call:
#   bash benchmarks/gpu_checks.sh timers    # calibrate, timer vs do_bench, side streams, GPU-only exploits
#   bash benchmarks/gpu_checks.sh samples   # every sample problem's reference as a solution, all workloads
#   bash benchmarks/gpu_checks.sh batch     # kb batch over one task per subset of tasks235, leaderboard
#   bash benchmarks/gpu_checks.sh fused 1/10   # issue #12: the fused family vs eager and torch.compile, part k/n
#                                              # of the memory-bound tasks (launches, host time per call)
#   bash benchmarks/gpu_checks.sh membatch 1/8 # issue #12: kb batch over part k/n of the memory-bound tasks,
#                                              # its leaderboard CSV (ONLY="--only L1/001_*" to pick tasks)
#   bash benchmarks/gpu_checks.sh paged     # the paged_attention family's benchmark (PAGED_S seconds), then kb batch over
#                                           # 9 of the 12 tasks235 attention tasks it matches (BATCH_S), leaderboard CSV
#   bash benchmarks/gpu_checks.sh new       # the kernels no GPU has run yet, about 8 minutes: the paged_attention,
#                                           # attention_backward and gemm decode benchmarks, then kb batch over 3 tasks
#   bash benchmarks/gpu_checks.sh heldout 1/6  # issue #12: kb batch over every 6th held-out problem (heldout/), its
#                                              # leaderboard CSV: mean S on problems the generator was not built on
#   bash benchmarks/gpu_checks.sh gemm      # issue #13: the gemm family vs cuBLAS and max-autotune, and on the
#                                           # tasks235 GEMM tasks it matches (TASKS="tasks235/L1/005_* ...")
#   bash benchmarks/gpu_checks.sh families  # every family's benchmark but rowwise's (gpu_rowwise.sh), each bounded by
#                                           # FAMILY_S seconds (FAMILIES="gemm attention" picks), results under
#                                           # $OUT/<family>/ (carry .shared_sample): each script rewrites its JSON after
#                                           # every row (benchmarks/report.py), so one cut off keeps what it measured
#   bash benchmarks/gpu_checks.sh pack      # the folders under $OUT as one $OUT/results.tgz (a machine returning few files)
#   bash benchmarks/gpu_checks.sh sweep 1/2 # every tasks235 and sample workload: eager, compile, CUDA graphs vs T_SOL
#                                           # (datasheet and calibrated); then sweep 2/2
# The sample problems come from $KB_SAMPLE_ROOT (../shared does not travel: carry an ignored copy).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 KB_DB=${KB_DB:-/tmp/kb.db}  # outside $OUT: its WAL files would come back too
export KB_PROFILE_DIR=${KB_PROFILE_DIR:-$PWD/benchmarks/results/profiles}
export KB_SAMPLE_ROOT=${KB_SAMPLE_ROOT:-$PWD/../shared/sol_execbench_sample}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "pip install -e failed"
run() { echo "+ $*"; "$@"; echo "exit $?"; }
# one task per subset: torch.compile and CUDA-graph variants compile per shape, minutes per task
BATCH_TASKS=(--only 'L1/001_*' --only 'L2/001_*' --only 'Quant/002_*' --only 'Attention/001_*')
case "${1:-}" in
  timers)
    run nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
    run kb calibrate && cp -r "$KB_PROFILE_DIR" "$OUT/profiles"
    run python3 benchmarks/timer_vs_do_bench.py
    run python3 benchmarks/side_stream_timing.py
    run python3 benchmarks/audit_gpu_exploits.py --json "$OUT/audit_gpu_exploits.json" ;;
  samples)
    run python3 benchmarks/sample_references.py --root "$KB_SAMPLE_ROOT" --device cuda \
        --rounds "${ROUNDS:-10}" --iterations "${ITERATIONS:-50}" --out "$OUT/sample_references" ;;
  batch)
    run kb batch tasks235 "${BATCH_TASKS[@]}" --device cuda --profile "${PROFILE:-datasheet}" \
        --workloads "${WORKLOADS:-3}" --rounds "${ROUNDS:-10}" --iterations "${ITERATIONS:-50}" --out /tmp/kb_out
    run kb leaderboard --csv "$OUT/leaderboard.csv" --html "$OUT/leaderboard.html"
    run kb leaderboard --per-workload --csv "$OUT/leaderboard_per_workload.csv"
    python3 -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
        "$KB_DB" "$OUT/kb_batch.db" ;;
  fused)
    run python3 benchmarks/family_fused.py "$OUT/family_fused" --part "${2:-1/1}" --budget-s "${BUDGET_S:-400}" \
        --configs "${CONFIGS:-2}" ;;
  membatch)
    part=${2:-1/8}
    # BATCH_S bounds the batch alone (tasks finished by then are in the store), so the leaderboard is still written
    run timeout "${BATCH_S:-3000}" kb batch "${ROOT:-tasks235}" ${ONLY:-$(python3 benchmarks/memory_bound.py tasks235 --part "$part")} --device cuda \
        --workloads "${WORKLOADS:-3}" --budget "${BUDGET:-20}" --rounds "${ROUNDS:-5}" \
        --iterations "${ITERATIONS:-30}" --out /tmp/kb_out
    run kb leaderboard --csv "$OUT/leaderboard_memory_bound_${part/\//of}.csv"
    run kb leaderboard --per-workload --csv "$OUT/leaderboard_memory_bound_${part/\//of}_per_workload.csv"
    python3 -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
        "$KB_DB" "$OUT/kb_memory_bound_${part/\//of}.db" ;;
  paged)
    run timeout "${PAGED_S:-150}" python3 benchmarks/family_paged_attention.py "$OUT/paged_attention" --configs 2 \
        --budget-s 100
    ONLY="--only Attention/002_* --only Attention/005_* --only Attention/009_* --only Attention/025_* --only Attention/026_*
          --only Attention/013_* --only Attention/019_* --only Attention/008_* --only Attention/016_*" BATCH_S=${BATCH_S:-330} "$0" membatch paged ;;
  new)
    run timeout 130 python3 benchmarks/family_paged_attention.py "$OUT/paged_attention" --configs 2 --budget-s 80
    run timeout 120 python3 benchmarks/family_attention_backward.py "$OUT/attention_backward" --configs 2 --budget-s 50
    run timeout 70 python3 benchmarks/family_gemm.py "$OUT/gemm_decode" --regimes decode --configs 4 --budget-s 0
    ONLY="--only Attention/020_* --only Attention/016_* --only Attention/023_*" WORKLOADS=2 BATCH_S=${BATCH_S:-120} \
        "$0" membatch new ;;
  heldout)
    # issue #12's mean S on problems the generator was not built on (heldout/README.md): part k/n, every n-th
    # problem from the k-th on, then its leaderboard CSV
    IFS=/ read -r k n <<< "${2:-1/6}"
    ONLY=$(ls -d heldout/*/*/ | awk -v k="$k" -v n="$n" '(NR - k) % n == 0 {split($0, p, "/"); printf "--only %s/%s ", p[2], p[3]}')
    ROOT=heldout ONLY="$ONLY" WORKLOADS=${WORKLOADS:-2} BATCH_S=${BATCH_S:-540} "$0" membatch "heldout_${2:-1/6}" ;;
  gemm)
    run python3 benchmarks/family_gemm.py "$OUT/family_gemm" --configs "${CONFIGS:-4}" --budget-s "${BUDGET_S:-150}"
    [ -n "${TASKS:-}" ] && run python3 benchmarks/family_gemm.py "$OUT/family_gemm_tasks" --configs "${CONFIGS:-4}" \
        --tasks $TASKS ;;
  families)
    # a few representative tasks for the families timed on tasks; every script checks what it times
    FUSED_TASKS="tasks235/L1/030_* tasks235/L1/044_* tasks235/L1/056_* tasks235/L2/009_*"
    for family in ${FAMILIES:-gemm scaled_gemm grouped_gemm fused selection scans gathers attention attention_backward conv cuda}; do
      case $family in
        gemm) options="--configs 3 --budget-s 40" ;;
        grouped_gemm) options="--configs 3 --budget-s 40" ;;
        fused) options="$FUSED_TASKS --configs 3 --budget-s 60" ;;
        selection) options="--configs 2 --sizes 3 --budget-s 50" ;;
        scans) options="--configs 2 --sizes 2 --budget-s 50" ;;
        attention) options="--configs 3 --budget-s 40" ;;
        attention_backward) options="--configs 2 --budget-s 60" ;;
        scaled_gemm) options="--configs 2 --budget-s 45" ;;
        cuda) options="--workloads 2 --sample-root $KB_SAMPLE_ROOT" ;;
        *) options="--configs 3" ;;
      esac
      run timeout "${FAMILY_S:-90}" python3 "benchmarks/family_$family.py" "$OUT/$family" $options
    done ;;
  sweep)
    # one part per device call (${2:-1/1}); carry .shared_sample and .kbcache (roofline counts made here)
    run python3 benchmarks/tasks235_sweep.py --out "$OUT" --part "${2:-1/1}" --roots tasks235 .shared_sample \
        --cache-dir .kbcache 2>&1 | tee "$OUT/sweep_part${2%%/*}.log" ;;
  pack)
    # every folder under $OUT into $OUT/results.tgz, generated kernels and build trees left out (a device machine
    # that returns a few files from $OUT takes one archive)
    (cd "$OUT" && folders=$(find . -mindepth 1 -maxdepth 1 -type d) && [ -n "$folders" ] &&
     tar czf results.tgz --exclude=kernels --exclude=cpp_extensions $folders && rm -rf $folders && ls -l results.tgz) ;;
  *) echo "usage: $0 timers|samples|batch|fused|membatch|paged|new|heldout|gemm|families|sweep|pack"; exit 2 ;;
esac
