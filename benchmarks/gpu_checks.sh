#!/usr/bin/env bash
# The GPU checks of issues 3-5 in one pass, on the device machine (results under $OUT).
#   bash benchmarks/gpu_checks.sh timers      # timer vs do_bench, side streams, GPU-only exploits, calibrate
#   bash benchmarks/gpu_checks.sh samples     # every sample problem's reference as a solution, all workloads
#   bash benchmarks/gpu_checks.sh batch       # kb batch tasks235, leaderboard CSV, roofline soundness
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 KB_DB=${KB_DB:-$OUT/kb.db} KB_PROFILE_DIR=${KB_PROFILE_DIR:-$PWD/benchmarks/results/profiles}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "pip install -e failed"
run() { echo "+ $*"; "$@"; echo "exit $?"; }
case "${1:-}" in
  timers)
    run nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
    kb calibrate --help >/dev/null 2>&1 && run kb calibrate
    run python3 benchmarks/timer_vs_do_bench.py
    run python3 benchmarks/side_stream_timing.py
    run python3 benchmarks/audit_gpu_exploits.py
    cp -r "$KB_PROFILE_DIR" "$OUT/profiles" 2>/dev/null ;;
  samples)
    run python3 benchmarks/sample_references.py --root "${SAMPLE_ROOT:-../shared/sol_execbench_sample}" --device cuda --rounds "${ROUNDS:-10}" --iterations "${ITERATIONS:-50}" \
        --out "$OUT/sample_references_h200" ;;
  batch)
    run kb batch tasks235 --device cuda --profile measured --rounds "${ROUNDS:-10}" --iterations "${ITERATIONS:-50}" --out "$OUT/kb_out"
    run kb leaderboard --csv "$OUT/leaderboard.csv"
    run kb leaderboard --per-workload --csv "$OUT/leaderboard_per_workload.csv"
    run python3 benchmarks/roofline_soundness.py tasks235 --profile measured --out "$OUT/roofline_soundness.md" ;;
  *) echo "usage: $0 timers|samples|batch"; exit 2 ;;
esac
