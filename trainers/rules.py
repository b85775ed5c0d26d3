"""The training benchmarks' audit rules: one stable name per attack, with its one-line rationale.

Rules shared with the kernel audit (subprocess, network, monkeypatch, introspection, file-access,
dynamic-code, evaluator-import, background-thread) keep audit.rules' names and meaning; these
are the ones a training run adds. trainers/README.md explains how each is detected.
"""

from __future__ import annotations

from audit.rules import RULES as KERNEL_RULES

TRAINING_RULES: dict[str, str] = {
    "val-data-access": "validation data, the benchmark's data files or the evaluator's files were read (directly, or rebuilt from the sources the shipped corpus comes from)",
    "val-leak-suspected": "the model scores far better on validation text than on training text it was trained on: it has seen the validation data",
    "over-budget": "training went on past the deadline: the weights were handed over late, or the process had to be killed",
    "work-after-deadline": "threads or processes of the candidate were still alive after it handed over its model",
    "work-outside-clock": "CPU or GPU work of the candidate while the clock was stopped for a speedrun evaluation",
    "weights-changed-during-eval": "the model's parameters or buffers changed while it was evaluated (training on validation data)",
    "stateful-eval": "the model's outputs depend on what it saw earlier in the evaluation (state kept across calls)",
    "non-causal": "logits at a position depend on later tokens: the model reads the answer from its input",
    "eval-mode-divergence": "the model computes something else when evaluated (eval mode, inference mode) than when trained",
    "harness-tampering": "the harness, its clock, its messages or the loss were patched, forged or reached into",
    "seed-override": "the candidate reseeds the random generators with its own constant: a hand-picked seed, not the harness's",
    "invalid-output": "the model's output is not a plain (B, T, V) floating tensor of finite logits",
    "oversized-handover": "the handed-over configuration is too large to be a configuration (data smuggled to the evaluator)",
}

# kernel rules that mean the same for a training candidate
SHARED = ("subprocess", "network", "monkeypatch", "introspection", "file-access", "dynamic-code", "evaluator-import",
          "background-thread", "lazy-output")

RULES: dict[str, str] = {**{name: KERNEL_RULES[name] for name in SHARED}, **TRAINING_RULES}

# the verdict of a seeds comparison, not a rule of one run
UNSUPPORTED_IMPROVEMENT = "unsupported-improvement"
