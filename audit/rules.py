"""The catalogue of audit rules: one stable kebab-case name per attack, with a one-line rationale.

A rule fires from the static scan (AST of the sources, audit.static), from the runtime guard
inside the evaluator's child process (audit.runtime), from an evaluator-level probe
(audit.checks), or from several of them; `DETECTED_BY` says which. docs/AUDIT.md explains each
rule's attack, detection and known limits; `kb audit` prints these rationales.
"""

from __future__ import annotations

RULES: dict[str, str] = {
    # caching and skipped work
    "cache-by-pointer": "outputs or work reused by input address (data_ptr/id/storage keys): stale when new values arrive at the same address",
    "cache-by-shape": "outputs reused by input shape: correct once per shape, stale on fresh inputs",
    "cache-by-call-count": "behaviour depends on how often it was called (counters, constant cache keys): honest in the first rounds, cached afterwards",
    "cache-by-value": "outputs reused by a fingerprint of input values (item/sum/tobytes/hash): a timer that repeated values would measure a lookup",
    "skipped-work": "an early return guarded by state kept across calls: repeated calls skip the work the timer means to measure",
    "stale-output": "outputs did not follow new inputs (same buffers with new values, a repeat of an earlier round's output, the re-check after timing, or timed calls checked afterwards)",
    # lazy or deferred outputs
    "lazy-output": "outputs are tensor subclasses, proxies or __torch_function__/__torch_dispatch__ objects: work runs later, outside the timer",
    "background-thread": "threads, executors or async tasks started by the solution and still running after it returns: work escapes the timer",
    "unsynced-stream": "work on a side stream is not joined to the caller's stream: outputs are not ready when the call returns",
    # tampering with the harness
    "monkeypatch": "assigning attributes of torch, time, triton, the evaluator or other imported modules (or aten kernels, dispatch modes): timers or the reference are altered",
    "introspection": "stack frames, gc, tracing or raw memory reads: the reference's results or the evaluator's state are read instead of computed",
    "evaluator-import": "importing kernelbench, audit or the reference module: the harness itself is within reach",
    "file-access": "files opened outside the solution's directory and the libraries' caches: results smuggled in from disk",
    "dynamic-code": "exec/eval/compile or imports by computed name: code the static scan cannot see",
    # inputs and outputs
    "input-mutation": "inputs changed in place: the next consumer (the reference, the next round) sees different data",
    "output-aliases-input": "an output shares memory with an input: no output was computed, or the input was overwritten",
    "constant-output": "outputs built from constants (zeros/empty/full) without reading the inputs",
    "shape-specialization": "code keyed to the tested shapes (literal comparisons with workload sizes) or wrong on an untested legal shape",
    # global state and the outside world
    "precision-downgrade": "TF32 / reduced-precision reduction / fp16 accumulation / lower float32 matmul precision switched on: faster by being less exact, for the reference too",
    "global-state": "process-wide state changed (environment, backend flags, thread counts, default dtype, clocks via nvidia-smi/NVML)",
    "subprocess": "processes spawned (subprocess, os.system, fork, exec, libc via ctypes): work and effects outside the sandbox's accounting",
    "network": "sockets, HTTP or other network access: results fetched from elsewhere",
    "persisting-l2": "a persisting-L2 set-aside or access-policy window keeps data in L2 across the timer's flush",
    "faster-than-sol": "a measured time below the speed-of-light bound T_SOL is physically impossible: something was not computed",
}

STATIC, RUNTIME, PROBE = "static", "runtime", "probe"

DETECTED_BY: dict[str, tuple[str, ...]] = {
    "cache-by-pointer": (STATIC,), "cache-by-shape": (STATIC,), "cache-by-call-count": (STATIC,),
    "cache-by-value": (STATIC,), "skipped-work": (STATIC,), "stale-output": (PROBE,),
    "lazy-output": (STATIC, RUNTIME), "background-thread": (STATIC, RUNTIME), "unsynced-stream": (STATIC, RUNTIME),
    "monkeypatch": (STATIC, RUNTIME), "introspection": (STATIC, RUNTIME), "evaluator-import": (STATIC, RUNTIME),
    "file-access": (STATIC, RUNTIME), "dynamic-code": (STATIC,), "input-mutation": (RUNTIME,),
    "output-aliases-input": (RUNTIME,), "constant-output": (STATIC,), "shape-specialization": (STATIC, PROBE),
    "precision-downgrade": (STATIC, RUNTIME), "global-state": (STATIC, RUNTIME), "subprocess": (STATIC, RUNTIME),
    "network": (STATIC, RUNTIME), "persisting-l2": (STATIC, RUNTIME), "faster-than-sol": (PROBE,),
}

assert set(DETECTED_BY) == set(RULES)


def verdicts(findings) -> dict[str, dict]:
    """Every rule, in catalogue order: FLAGGED or clean, with its evidence, the layers that detect
    it and its rationale (`kb audit`'s table and JSON)."""
    evidence: dict[str, list[str]] = {}
    for finding in findings:
        evidence.setdefault(finding.rule, []).append(finding.evidence)
    return {rule: {"verdict": "FLAGGED" if rule in evidence else "clean", "evidence": evidence.get(rule, []),
                   "detected_by": list(DETECTED_BY[rule]), "rationale": rationale} for rule, rationale in RULES.items()}
