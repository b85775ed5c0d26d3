"""Traces in SOL-ExecBench's schema: one JSON line per (solution, workload).

Field names and optionality follow the official models (sol_execbench.core.data.trace: Trace,
Evaluation, Correctness, Performance, Environment). Our additions are written only when given, so
an official trace reads and writes back unchanged, and so does one of ours:
- `performance.sol_latency_ms` (T_SOL from the roofline), `clock` ("cuda" or "cpu": CPU times are
  not GPU times) and `timing` (the timer's samples and NVML state);
- `evaluation.audit`: the reward-hacking findings, each {rule, evidence};
- `environment.device` and `roofline_profile`.
Where the official schema is stricter than what our evaluator writes, the model follows the
evaluator: `reference_latency_ms` and `speedup_factor` are null when no baseline was measured
(official: 0.0), `environment` may be empty, and correctness figures may accompany a failure
status (the last round that passed). Unknown keys are kept, so newer official fields survive.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.fields import NonEmptyString, first_error
from kernelbench.core.problem import InputSource, Tolerance, Workload
from kernelbench.core.statuses import Status


class TraceError(KernelBenchError):
    """A trace does not follow the schema: the message names the field."""


class _Record(BaseModel):
    """A trace part: unknown keys kept; the fields in `written_when_given` appear only if given."""
    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")
    written_when_given: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_fields_not_given(self, handler) -> dict[str, Any]:
        data = handler(self)
        for name in self.written_when_given - self.model_fields_set:
            data.pop(name, None)
        return data


class TracedWorkload(_Record):
    """The workload as the trace echoes it (the official Workload; tolerance only if given)."""
    written_when_given: ClassVar[frozenset[str]] = frozenset({"tolerance"})
    uuid: NonEmptyString
    axes: dict[str, int]
    inputs: dict[str, InputSource]
    tolerance: Tolerance | None = None

    @classmethod
    def of(cls, workload: Workload) -> "TracedWorkload":
        return cls(uuid=workload.uuid, axes=workload.axes, inputs=workload.inputs)


class Correctness(_Record):
    written_when_given: ClassVar[frozenset[str]] = frozenset({"extra"})
    max_relative_error: float = 0.0
    max_absolute_error: float = 0.0
    has_nan: bool = False
    has_inf: bool = False
    extra: dict[str, Any] | None = None


class Timing(_Record):
    """The timer's record (kernelbench.eval.timing.TimingResult.to_json); `median_ms` is the latency."""
    written_when_given: ClassVar[frozenset[str]] = frozenset({
        "clock", "device", "samples_ms", "warmup", "l2_flushed", "gpu_state", "details", "median_ms", "mean_ms",
        "min_ms", "max_ms", "stdev_ms", "iterations"})
    clock: str | None = None       # "cuda_event" or "cpu"
    device: str | None = None
    samples_ms: list[float] = Field(default_factory=list)
    warmup: int | None = None
    l2_flushed: bool | None = None
    gpu_state: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    median_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    stdev_ms: float | None = None
    iterations: int | None = None


class Performance(_Record):
    written_when_given: ClassVar[frozenset[str]] = frozenset({"sol_latency_ms", "clock", "timing"})
    latency_ms: float = 0.0
    reference_latency_ms: float | None = 0.0   # T_b
    speedup_factor: float | None = 0.0         # reference_latency_ms / latency_ms
    sol_latency_ms: float | None = None        # T_SOL
    clock: str | None = None
    timing: Timing | None = None


class Environment(_Record):
    written_when_given: ClassVar[frozenset[str]] = frozenset({"hardware", "libs", "device", "roofline_profile"})
    hardware: str | None = None
    libs: dict[str, str] = Field(default_factory=dict)
    device: str | None = None
    roofline_profile: str | None = None


class AuditFinding(_Record):
    rule: str
    evidence: str


class Evaluation(_Record):
    written_when_given: ClassVar[frozenset[str]] = frozenset({"audit"})
    status: Status
    log: str = ""
    correctness: Correctness | None = None
    performance: Performance | None = None
    environment: Environment
    audit: list[AuditFinding] = Field(default_factory=list)
    timestamp: NonEmptyString


class Trace(_Record):
    """A workload trace (no solution, no evaluation) or the record of one evaluation."""
    definition: NonEmptyString
    solution: str | None = None
    workload: TracedWorkload
    evaluation: Evaluation | None = None

    @classmethod
    def from_json(cls, data: Any) -> "Trace":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            where, message = first_error(exc)
            raise TraceError(f"trace: {where}: {message}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
