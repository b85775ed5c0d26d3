"""LLM-training benchmarks on the workbench's sandboxing, clock and audit (`kb train`).

- fixed-budget: train for a wall-clock budget; scored by validation bits per byte.
- speedrun: time until the validation loss reaches a target.

A candidate is one Python file (trainers.candidate); the harness (trainers.harness) runs it in a
child process on its own clock, the frozen evaluator (trainers.eval_worker) scores the handed-over
weights in other processes, and trainers/README.md documents the audit.
"""
