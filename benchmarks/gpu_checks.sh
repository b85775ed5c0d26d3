#!/usr/bin/env bash
# The GPU checks of issues 3-6, on the device machine; results under $OUT. Each step is one device call:
#   bash benchmarks/gpu_checks.sh timers    # calibrate, timer vs do_bench, side streams, GPU-only exploits
#   bash benchmarks/gpu_checks.sh samples   # every sample problem's reference as a solution, all workloads
#   bash benchmarks/gpu_checks.sh batch     # kb batch over the first tasks of tasks235, leaderboard, soundness
#   bash benchmarks/gpu_checks.sh sweep     # every tasks235 reference on every workload: T_b (eager) and T_SOL
# The sample problems come from $KB_SAMPLE_ROOT (../shared does not travel: carry an ignored copy).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 KB_DB=${KB_DB:-$OUT/kb.db}
export KB_PROFILE_DIR=${KB_PROFILE_DIR:-$PWD/benchmarks/results/profiles}
export KB_SAMPLE_ROOT=${KB_SAMPLE_ROOT:-$PWD/../shared/sol_execbench_sample}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "pip install -e failed"
run() { echo "+ $*"; "$@"; echo "exit $?"; }
FIRST_TASKS=(--only 'L1/00[1-4]_*' --only 'L2/00[1-3]_*' --only 'Quant/00[1-3]_*' --only 'Attention/00[1-2]_*')
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
    run kb batch tasks235 "${FIRST_TASKS[@]}" --device cuda --profile "${PROFILE:-measured}" \
        --rounds "${ROUNDS:-10}" --iterations "${ITERATIONS:-50}" --out "$OUT/kb_out"
    run kb leaderboard --csv "$OUT/leaderboard.csv" --html "$OUT/leaderboard.html"
    run kb leaderboard --per-workload --csv "$OUT/leaderboard_per_workload.csv"
    run python3 benchmarks/roofline_soundness.py tasks235 --profile "${PROFILE:-measured}" --out "$OUT/roofline_soundness.md" ;;
  sweep)
    run python3 benchmarks/tasks235_sweep.py tasks235 --out "$OUT/tasks235_baseline.csv" ${SWEEP_ARGS:-} ;;
  *) echo "usage: $0 timers|samples|batch|sweep"; exit 2 ;;
esac
