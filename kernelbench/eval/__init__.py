"""Evaluation: the sandboxed child, the workload runner, timing, GPU state, the evaluator and screening."""
