"""Problems in SOL-ExecBench's format: a directory with definition.json and workload.jsonl.

Loading validates everything that can be checked without running code and names the
file, the JSONL line and the field of every error. `Problem.axes_for` resolves a
workload's const, var and expr axes; `Problem.shape_of` turns a shape of axis names into
integers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelbench.core import safe_expr
from kernelbench.core.dtypes import canonical_name
from kernelbench.core.errors import ProblemError

DEFINITION_FILE = "definition.json"
WORKLOAD_FILE = "workload.jsonl"
INPUT_KINDS = ("random", "scalar", "custom", "safetensors")


@dataclass(frozen=True)
class Axis:
    name: str
    kind: str  # const | var | expr
    value: int | None = None
    expression: str | None = None


@dataclass(frozen=True)
class TensorSpec:
    """An input or output: shape is a list of axis names / integer literals, [] for 0-d, None for a Python scalar."""
    name: str
    shape: tuple[str, ...] | None
    dtype: str
    description: str = ""

    @property
    def is_scalar(self) -> bool:
        return self.shape is None


@dataclass(frozen=True)
class Tolerance:
    max_atol: float = 1e-2
    max_rtol: float = 1e-2
    required_matched_ratio: float = 0.99
    max_error_cap: float | None = None
    allow_negative_inf: bool = False


@dataclass(frozen=True)
class InputSource:
    kind: str  # random | scalar | custom | safetensors
    value: Any = None
    path: str | None = None
    tensor_key: str | None = None


@dataclass(frozen=True)
class Workload:
    uuid: str
    axes: dict[str, int]
    inputs: dict[str, InputSource]
    tolerance: Tolerance
    line: int = 0


@dataclass(frozen=True)
class Definition:
    name: str
    description: str
    axes: dict[str, Axis]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    reference: str
    constraints: tuple[str, ...] = ()
    custom_inputs_entrypoint: str | None = None
    hf_id: str | None = None
    op_type: str | None = None


@dataclass
class Problem:
    definition: Definition
    workloads: list[Workload]
    directory: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def subset(self) -> str:
        return self.directory.parent.name if self.directory else ""

    def axes_for(self, workload: Workload) -> dict[str, int]:
        """All axis values for one workload: consts, the workload's vars, then exprs in dependency order."""
        values: dict[str, int] = {}
        for axis in self.definition.axes.values():
            if axis.kind == "const":
                values[axis.name] = axis.value
            elif axis.kind == "var":
                values[axis.name] = workload.axes[axis.name]
        for name in _expr_order(self.definition.axes):
            where = f"axes.{name}.expression"
            try:
                result = safe_expr.evaluate(self.definition.axes[name].expression, values)
            except safe_expr.ExpressionError as exc:
                raise ProblemError(f"{exc} (workload axes {workload.axes})", path=self._workload_file,
                                   line=workload.line, field=where) from None
            if isinstance(result, bool) or not float(result).is_integer() or result < 0:
                raise ProblemError(f"evaluates to {result!r}, not a non-negative integer (workload axes {workload.axes})",
                                   path=self._workload_file, line=workload.line, field=where)
            values[name] = int(result)
        return values

    @property
    def _workload_file(self) -> Path | str:
        return self.directory / WORKLOAD_FILE if self.directory else WORKLOAD_FILE

    def shape_of(self, spec: TensorSpec, axes: dict[str, int]) -> tuple[int, ...] | None:
        if spec.shape is None:
            return None
        return tuple(axes[d] if d in axes else int(d) for d in spec.shape)

    def scalar_values(self, workload: Workload) -> dict[str, Any]:
        return {n: s.value for n, s in workload.inputs.items() if s.kind == "scalar"}

    def check_constraints(self, workload: Workload) -> list[str]:
        """Constraints that this workload violates (each as a readable message)."""
        env = {**self.scalar_values(workload), **self.axes_for(workload)}
        failed = []
        for constraint in self.definition.constraints:
            try:
                ok = bool(safe_expr.evaluate(constraint, env))
            except safe_expr.ExpressionError as exc:
                failed.append(f"constraint {constraint!r} cannot be evaluated: {exc}")
                continue
            if not ok:
                failed.append(f"constraint {constraint!r} is false for axes {workload.axes}")
        return failed

    def workload_size(self, workload: Workload) -> int:
        """Total input elements of a workload."""
        axes = self.axes_for(workload)
        return sum(math.prod(self.shape_of(s, axes) or ()) for s in self.definition.inputs.values())

    def smallest_workload(self) -> Workload:
        """The workload with the fewest input elements (ties: first in file order)."""
        return min(self.workloads, key=self.workload_size)


# ---------------------------------------------------------------- loading

def load_problem(directory: str | os.PathLike) -> Problem:
    directory = Path(directory)
    if not directory.is_dir():
        raise ProblemError("not a problem directory", path=directory)
    definition_path = directory / DEFINITION_FILE
    if not definition_path.is_file():
        raise ProblemError(f"missing {DEFINITION_FILE}", path=directory)
    warnings: list[str] = []
    definition = parse_definition(_read_json(definition_path), definition_path, warnings)
    workloads = parse_workloads(directory / WORKLOAD_FILE, definition, warnings)
    problem = Problem(definition, workloads, directory, warnings)
    for workload in workloads:
        problem.axes_for(workload)  # every expr axis must evaluate to a size
        for message in problem.check_constraints(workload):
            raise ProblemError(message, path=directory / WORKLOAD_FILE, line=workload.line, field="axes")
    return problem


def find_problem_dirs(root: str | os.PathLike) -> list[Path]:
    """Every directory under root (root included) that holds a definition.json, sorted."""
    root = Path(root)
    if (root / DEFINITION_FILE).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(DEFINITION_FILE))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProblemError(f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})", path=path) from None
    if not isinstance(data, dict):
        raise ProblemError("top level must be a JSON object", path=path)
    return data


def parse_definition(data: dict, path: Path | str = "definition.json", warnings: list[str] | None = None) -> Definition:
    def fail(message: str, where: str) -> ProblemError:
        return ProblemError(message, path=path, field=where)

    for key in ("name", "axes", "inputs", "outputs", "reference"):
        if key not in data:
            raise fail("required field is missing", key)
    if not isinstance(data["name"], str) or not data["name"]:
        raise fail("must be a non-empty string", "name")
    axes = _parse_axes(data["axes"], fail)
    inputs = _parse_tensors(data["inputs"], "inputs", axes, fail)
    outputs = _parse_tensors(data["outputs"], "outputs", axes, fail)
    if not outputs:
        raise fail("a problem needs at least one output", "outputs")
    if set(inputs) & set(outputs):
        raise fail(f"names used as both input and output: {sorted(set(inputs) & set(outputs))}", "outputs")
    if not isinstance(data["reference"], str) or "def run" not in data["reference"]:
        raise fail("must be Python source that defines run(...)", "reference")
    constraints = data.get("constraints") or []
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise fail("must be a list of expression strings", "constraints")
    for i, constraint in enumerate(constraints):
        try:
            safe_expr.names_in(constraint)
        except safe_expr.ExpressionError as exc:
            raise fail(str(exc), f"constraints[{i}]") from None
    entry = data.get("custom_inputs_entrypoint")
    if entry is not None and (not isinstance(entry, str) or f"def {entry}" not in data["reference"]):
        raise fail(f"{entry!r} is not a function defined in reference", "custom_inputs_entrypoint")
    return Definition(
        name=data["name"], description=data.get("description") or "", axes=axes,
        inputs=inputs, outputs=outputs, reference=data["reference"],
        constraints=tuple(constraints), custom_inputs_entrypoint=entry,
        hf_id=data.get("hf_id"), op_type=data.get("op_type"),
    )


def _parse_axes(raw: Any, fail) -> dict[str, Axis]:
    if not isinstance(raw, dict):
        raise fail("must be an object of axis name -> spec", "axes")
    axes: dict[str, Axis] = {}
    for name, spec in raw.items():
        where = f"axes.{name}"
        if not isinstance(spec, dict) or spec.get("type") not in ("const", "var", "expr"):
            raise fail("type must be one of const, var, expr", where)
        kind = spec["type"]
        if kind == "const":
            value = spec.get("value")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise fail("a const axis needs a non-negative integer value", where + ".value")
            axes[name] = Axis(name, kind, value=value)
        elif kind == "expr":
            expression = spec.get("expression")
            try:
                safe_expr.names_in(expression)
            except safe_expr.ExpressionError as exc:
                raise fail(str(exc), where + ".expression") from None
            axes[name] = Axis(name, kind, expression=expression)
        else:
            axes[name] = Axis(name, kind)
    for axis in axes.values():
        if axis.kind == "expr":
            unknown = safe_expr.names_in(axis.expression) - set(axes)
            if unknown:
                raise fail(f"refers to unknown axes {sorted(unknown)}", f"axes.{axis.name}.expression")
    try:
        _expr_order(axes)
    except ValueError as exc:
        raise fail(str(exc), "axes") from None
    return axes


def _expr_order(axes: dict[str, Axis]) -> list[str]:
    """Expr axes in an order where each comes after the exprs it uses; ValueError on a cycle."""
    pending = {n: safe_expr.names_in(a.expression) for n, a in axes.items() if a.kind == "expr"}
    order: list[str] = []
    while pending:
        ready = [n for n, deps in pending.items() if not (deps & set(pending))]
        if not ready:
            raise ValueError(f"expr axes depend on each other in a cycle: {sorted(pending)}")
        for n in ready:
            order.append(n)
            del pending[n]
    return order


def _parse_tensors(raw: Any, section: str, axes: dict[str, Axis], fail) -> dict[str, TensorSpec]:
    if not isinstance(raw, dict):
        raise fail("must be an object of name -> {shape, dtype}", section)
    specs: dict[str, TensorSpec] = {}
    for name, spec in raw.items():
        where = f"{section}.{name}"
        if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
            raise fail("needs both shape and dtype", where)
        try:
            dtype = canonical_name(spec["dtype"])
        except (KeyError, TypeError):
            raise fail(f"unknown dtype {spec['dtype']!r}", where + ".dtype") from None
        shape = spec["shape"]
        if shape is not None:
            if not isinstance(shape, list):
                raise fail("must be a list of axis names, [] or null", where + ".shape")
            for dim in shape:
                if isinstance(dim, bool) or not isinstance(dim, (str, int)):
                    raise fail(f"dimension {dim!r} is neither an axis name nor an integer", where + ".shape")
                if isinstance(dim, str) and dim not in axes and not dim.isdigit():
                    raise fail(f"unknown axis {dim!r}", where + ".shape")
                if isinstance(dim, int) and dim < 0:
                    raise fail(f"dimension {dim} is negative", where + ".shape")
            shape = tuple(str(d) for d in shape)
        specs[name] = TensorSpec(name, shape, dtype, spec.get("description") or "")
    return specs


def parse_workloads(path: Path, definition: Definition, warnings: list[str] | None = None) -> list[Workload]:
    if not path.is_file():
        raise ProblemError(f"missing {WORKLOAD_FILE}", path=path.parent)
    workloads = []
    seen: dict[str, int] = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProblemError(f"invalid JSON: {exc.msg}", path=path, line=number) from None
        workload = parse_workload(data, definition, path, number, warnings)
        if workload.uuid in seen:
            raise ProblemError(f"uuid repeats line {seen[workload.uuid]}", path=path, line=number, field="uuid")
        seen[workload.uuid] = number
        workloads.append(workload)
    if not workloads:
        raise ProblemError("no workloads", path=path)
    return workloads


def parse_workload(data: Any, definition: Definition, path: Path | str = WORKLOAD_FILE,
                   line: int = 0, warnings: list[str] | None = None) -> Workload:
    def fail(message: str, where: str | None = None) -> ProblemError:
        return ProblemError(message, path=path, line=line, field=where)

    if not isinstance(data, dict):
        raise fail("each line must be a JSON object")
    uuid = data.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise fail("must be a non-empty string", "uuid")
    axes = data.get("axes") or {}
    if not isinstance(axes, dict):
        raise fail("must be an object of axis -> integer", "axes")
    for name, axis in definition.axes.items():
        given = axes.get(name)
        if axis.kind == "var" and name not in axes:
            raise fail("var axis has no value", f"axes.{name}")
        if name in axes and (not isinstance(given, int) or isinstance(given, bool) or given < 0):
            raise fail(f"must be a non-negative integer, got {given!r}", f"axes.{name}")
        if axis.kind == "const" and name in axes and given != axis.value:
            raise fail(f"const axis is {axis.value} in the definition, {given} here", f"axes.{name}")
    for name in axes:
        if name not in definition.axes:
            raise fail("not an axis of the definition", f"axes.{name}")
    inputs = _parse_input_sources(data.get("inputs"), definition, fail)
    tolerance = _parse_tolerance(data.get("tolerance"), fail, warnings)
    var_axes = {n: v for n, v in axes.items() if definition.axes[n].kind == "var"}
    return Workload(uuid, var_axes, inputs, tolerance, line)


def _parse_input_sources(raw: Any, definition: Definition, fail) -> dict[str, InputSource]:
    if not isinstance(raw, dict):
        raise fail("must be an object of input name -> source", "inputs")
    sources: dict[str, InputSource] = {}
    for name in raw:
        if name not in definition.inputs:
            raise fail("not an input of the definition", f"inputs.{name}")
    for name, spec in definition.inputs.items():
        where = f"inputs.{name}"
        source = raw.get(name)
        if source is None:
            raise fail("input has no source", where)
        kind = source.get("type") if isinstance(source, dict) else None
        if kind not in INPUT_KINDS:
            raise fail(f"type must be one of {', '.join(INPUT_KINDS)}", where + ".type")
        if kind == "scalar":
            if "value" not in source or not isinstance(source["value"], (int, float, bool)):
                raise fail("a scalar input needs a numeric value", where + ".value")
        elif kind == "custom" and not definition.custom_inputs_entrypoint:
            raise fail("custom input but the definition has no custom_inputs_entrypoint", where)
        elif kind == "safetensors":
            for key in ("path", "tensor_key"):
                if not isinstance(source.get(key), str) or not source.get(key):
                    raise fail("a safetensors input needs path and tensor_key", f"{where}.{key}")
        elif kind == "random" and spec.is_scalar:
            raise fail("a Python scalar input (shape null) cannot be random; give a scalar value", where)
        sources[name] = InputSource(kind, source.get("value"), source.get("path"), source.get("tensor_key"))
    return sources


_TOLERANCE_ALIASES = {"required_match_ratio": "required_matched_ratio"}


def _parse_tolerance(raw: Any, fail, warnings: list[str] | None) -> Tolerance:
    if raw is None:
        return Tolerance()
    if not isinstance(raw, dict):
        raise fail("must be an object", "tolerance")
    values: dict[str, Any] = {}
    known = Tolerance.__dataclass_fields__
    for key, value in raw.items():
        name = _TOLERANCE_ALIASES.get(key, key)
        if name not in known:
            if warnings is not None:
                warnings.append(f"unknown tolerance field {key!r} ignored")
            continue
        if name == "allow_negative_inf":
            if not isinstance(value, bool):
                raise fail("must be true or false", f"tolerance.{key}")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise fail(f"must be a non-negative number, got {value!r}", f"tolerance.{key}")
        values[name] = value
    ratio = values.get("required_matched_ratio")
    if ratio is not None and ratio > 1:
        raise fail("a ratio cannot exceed 1", "tolerance.required_matched_ratio")
    return Tolerance(**{k: v for k, v in values.items() if v is not None or k == "max_error_cap"})
