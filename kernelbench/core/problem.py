"""Problems in SOL-ExecBench's format: a directory with definition.json and workload.jsonl.

The definition, its axes and tensors, and each workload with its input sources and tolerance
are pydantic dataclasses: built from the files, or in code, they are valid or not built at all.
Loading names the file, the JSONL line and the field of every error (ProblemError).
`Problem.axes_for` resolves a workload's const, var and expr axes (expressions go through
kernelbench.core.safe_expr, never eval); `Problem.shape_of` turns a shape of axis names into
integers; `Problem.arguments` lists what `run` is called with.

Workload keys the definition does not declare load, since the official loader accepts them (it
does not check a workload against its definition), each with a warning that names file, line
and key (`Problem.warnings`):
- an `axes` entry that is not an axis: the value of the scalar input of that name when the
  workload gives that input no source, else an extra argument when `run` has a parameter of
  that name, else a named value offered to constraints and the custom-inputs entrypoint only
  (as the official harness's resolved axes are);
- an `inputs` entry for a name the definition does not list: an extra argument when `run` has a
  parameter of that name (a random one cannot be drawn without shape and dtype: `run` must then
  have a default, which it gets), else ignored;
- a definition input the workload gives no source: drawn at random, as the official harness
  does (a Python scalar has nothing to draw from: an error);
- an unknown top-level key or tolerance field: ignored.
Extra arguments reach `run` at the positions of its parameters; `run`'s parameters are read from
the reference's source (nothing runs at load).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import math
import os
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AliasChoices, Field, PlainValidator, TypeAdapter, ValidationError, model_serializer,
                      model_validator)
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from kernelbench.core import safe_expr
from kernelbench.core.dtypes import canonical_name
from kernelbench.core.errors import ProblemError
from kernelbench.core.fields import (Flag, NonEmptyString, NonNegativeInt, NonNegativeNumber, first_error,
                                     invalid)

DEFINITION_FILE = "definition.json"
WORKLOAD_FILE = "workload.jsonl"
AXIS_KINDS = ("const", "var", "expr")
INPUT_KINDS = ("random", "scalar", "custom", "safetensors")
WORKLOAD_KEYS = ("uuid", "axes", "inputs", "tolerance")
_TOLERANCE_ALIASES = {"required_match_ratio": "required_matched_ratio"}  # the official L2 files' spelling


# ---------------------------------------------------------------- field types

def _expression(value: Any) -> str:
    try:
        safe_expr.names_in(value)
    except safe_expr.ExpressionError as exc:
        raise invalid(str(exc)) from None
    return value


def _dtype(value: Any) -> str:
    try:
        return canonical_name(value)
    except (KeyError, TypeError):
        raise invalid(f"unknown dtype {value!r}") from None


def _shape(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise invalid("must be a list of axis names, [] or null")
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, (str, int)):
            raise invalid(f"dimension {dim!r} is neither an axis name nor an integer")
        if isinstance(dim, int) and dim < 0:
            raise invalid(f"dimension {dim} is negative")
    return tuple(str(d) for d in value)


def _reference(value: Any) -> str:
    if not isinstance(value, str) or "def run" not in value:
        raise invalid("must be Python source that defines run(...)")
    return value


Expression = Annotated[str, PlainValidator(_expression)]
Dtype = Annotated[str, PlainValidator(_dtype)]              # canonical name: float4_e2m1 -> float4_e2m1fn_x2
Shape = Annotated[tuple[str, ...] | None, PlainValidator(_shape)]
Reference = Annotated[str, PlainValidator(_reference)]


def _from_file(data: Any) -> bool:
    """Model validators reshape data read from a file; objects built in code arrive as ArgsKwargs."""
    return not isinstance(data, ArgsKwargs)


# ---------------------------------------------------------------- definition

@dataclass(frozen=True)
class Axis:
    name: str
    kind: Literal["const", "var", "expr"] = Field(validation_alias=AliasChoices("type", "kind"))
    value: NonNegativeInt | None = None
    expression: Expression | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_kind(cls, data: Any) -> Any:
        if _from_file(data) and (not isinstance(data, dict) or data.get("type", data.get("kind")) not in AXIS_KINDS):
            raise invalid(f"type must be one of {', '.join(AXIS_KINDS)}")
        return data

    @model_validator(mode="after")
    def _complete(self) -> "Axis":
        if self.kind == "const" and self.value is None:
            raise invalid("a const axis needs a non-negative integer value", "value")
        if self.kind == "expr" and self.expression is None:
            raise invalid("expression must be a non-empty string", "expression")
        return self


@dataclass(frozen=True)
class TensorSpec:
    """An input or output: shape is a list of axis names / integer literals, [] for 0-d, None for a Python scalar."""
    name: str
    shape: Shape
    dtype: Dtype
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _shape_and_dtype(cls, data: Any) -> Any:
        if not _from_file(data):
            return data
        if not isinstance(data, dict) or "dtype" not in data or "shape" not in data:
            raise invalid("needs both shape and dtype")
        return {**data, "description": data.get("description") or ""}

    @property
    def is_scalar(self) -> bool:
        return self.shape is None


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A positional parameter of the reference's `run`, as its source declares it."""
    name: str
    has_default: bool


@dataclass(frozen=True)
class Definition:
    name: NonEmptyString
    axes: dict[str, Axis]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    reference: Reference
    description: str = ""
    constraints: tuple[Expression, ...] = ()
    custom_inputs_entrypoint: str | None = None
    hf_id: str | None = None
    op_type: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_the_entries(cls, data: Any) -> Any:
        """In the file, axes and tensors are objects keyed by name; each model carries its name."""
        if not _from_file(data) or not isinstance(data, dict):
            return data
        data = dict(data)
        for section in ("axes", "inputs", "outputs"):
            if isinstance(data.get(section), dict):
                data[section] = {n: {**s, "name": n} if isinstance(s, dict) else s for n, s in data[section].items()}
        constraints = data.get("constraints")
        if constraints is not None and not isinstance(constraints, list):
            raise invalid("must be a list of expression strings", "constraints")
        data["constraints"] = constraints or []
        data["description"] = data.get("description") or ""
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Definition":
        for axis in self.axes.values():
            if axis.kind == "expr":
                unknown = safe_expr.names_in(axis.expression) - set(self.axes)
                if unknown:
                    raise invalid(f"refers to unknown axes {sorted(unknown)}", f"axes.{axis.name}.expression")
        try:
            _expr_order(self.axes)
        except ValueError as exc:
            raise invalid(str(exc), "axes") from None
        for section, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            for spec in specs.values():
                for dim in spec.shape or ():
                    if dim not in self.axes and not dim.isdigit():
                        raise invalid(f"unknown axis {dim!r}", f"{section}.{spec.name}.shape")
        if not self.outputs:
            raise invalid("a problem needs at least one output", "outputs")
        if set(self.inputs) & set(self.outputs):
            raise invalid(f"names used as both input and output: {sorted(set(self.inputs) & set(self.outputs))}",
                          "outputs")
        entry = self.custom_inputs_entrypoint
        if entry is not None and f"def {entry}" not in self.reference:
            raise invalid(f"{entry!r} is not a function defined in reference", "custom_inputs_entrypoint")
        return self

    @property
    def run_parameters(self) -> tuple[Parameter, ...] | None:
        """`run`'s positional parameters, or None when its source does not say (takes *args, or no
        top-level `def run`)."""
        return _run_parameters(self.reference)


@functools.lru_cache(maxsize=512)
def _run_parameters(reference: str) -> tuple[Parameter, ...] | None:
    try:
        tree = ast.parse(reference)
    except SyntaxError:
        return None
    defined = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "run"]
    if not defined or defined[-1].args.vararg:
        return None
    arguments = defined[-1].args
    positional = arguments.posonlyargs + arguments.args
    first_default = len(positional) - len(arguments.defaults)
    return tuple(Parameter(a.arg, i >= first_default) for i, a in enumerate(positional))


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


# ---------------------------------------------------------------- workloads

@dataclass(frozen=True)
class Tolerance:
    max_atol: NonNegativeNumber = 1e-2
    max_rtol: NonNegativeNumber = 1e-2
    required_matched_ratio: NonNegativeNumber = 0.99
    max_error_cap: NonNegativeNumber | None = None
    allow_negative_inf: Flag = False

    @model_validator(mode="before")
    @classmethod
    def _canonical_names(cls, data: Any) -> Any:
        """`required_match_ratio` is read as `required_matched_ratio`; a null field keeps its default."""
        if not _from_file(data) or not isinstance(data, dict):
            return data
        named = {_TOLERANCE_ALIASES.get(k, k): v for k, v in data.items() if k not in _TOLERANCE_ALIASES}
        for alias, name in _TOLERANCE_ALIASES.items():
            if alias in data and name not in data:
                named[name] = data[alias]
        return {k: v for k, v in named.items() if v is not None or k == "max_error_cap"}

    @model_validator(mode="after")
    def _ratio(self) -> "Tolerance":
        if self.required_matched_ratio > 1:
            raise invalid("a ratio cannot exceed 1", "required_matched_ratio")
        return self


@dataclass(frozen=True)
class InputSource:
    """Where a workload input comes from. In the file the kind is spelled `type`."""
    kind: Literal["random", "scalar", "custom", "safetensors"] = Field(validation_alias=AliasChoices("type", "kind"))
    value: Any = None
    path: str | None = None
    tensor_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_kind(cls, data: Any) -> Any:
        if _from_file(data) and (not isinstance(data, dict) or data.get("type", data.get("kind")) not in INPUT_KINDS):
            raise invalid(f"type must be one of {', '.join(INPUT_KINDS)}", "type")
        return data

    @model_validator(mode="after")
    def _complete(self) -> "InputSource":
        if self.kind == "scalar" and (self.value is None or not isinstance(self.value, (int, float, bool))):
            raise invalid("a scalar input needs a numeric value", "value")
        if self.kind == "safetensors":
            for key in ("path", "tensor_key"):
                if not isinstance(getattr(self, key), str) or not getattr(self, key):
                    raise invalid("a safetensors input needs path and tensor_key", key)
        return self

    @model_serializer
    def to_json(self) -> dict[str, Any]:
        """The file's spelling: {"type": kind} plus the fields this kind has."""
        return {"type": self.kind, **{k: v for k, v in (("value", self.value), ("path", self.path),
                                                         ("tensor_key", self.tensor_key)) if v is not None}}


@dataclass(frozen=True)
class Workload:
    """One workload. `axes` holds the definition's var axes; `inputs` one source per argument of
    `run` in call order (the definition's inputs, and extra arguments the workload gives);
    `extra_axes` the `axes` entries that are neither axes nor arguments; `line` the JSONL line."""
    uuid: NonEmptyString
    axes: dict[str, NonNegativeInt]
    inputs: dict[str, InputSource]
    tolerance: Tolerance = field(default_factory=Tolerance)
    line: int = 0
    extra_axes: dict[str, NonNegativeInt] = field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _optional_fields(cls, data: Any) -> Any:
        """A missing uuid reads as an empty one; absent or null axes, and absent inputs, are none; an
        absent or null tolerance is the default."""
        if not _from_file(data) or not isinstance(data, dict):
            return data
        data = {"uuid": None, "inputs": {}, **data}
        if data.get("axes") is None:
            data["axes"] = {}
        if data.get("tolerance") is None:
            data.pop("tolerance", None)
        return data


@dataclasses.dataclass(frozen=True)
class Argument:
    """One argument of `run`: `spec` is None for an extra argument the definition does not declare."""
    name: str
    spec: TensorSpec | None
    source: InputSource


@dataclasses.dataclass
class Problem:
    definition: Definition
    workloads: list[Workload]
    directory: Path | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def subset(self) -> str:
        return self.directory.parent.name if self.directory else ""

    def arguments(self, workload: Workload) -> list[Argument]:
        """What `run` (and a solution, before its outputs) is called with, in order: the definition's
        inputs, and the extra arguments the workload gives at `run`'s parameter positions."""
        def fail(message: str, where: str) -> ProblemError:
            return ProblemError(message, path=self._workload_file, line=workload.line, field=where)

        for name in self.definition.inputs:
            if name not in workload.inputs:
                raise fail("input has no source", f"inputs.{name}")
        return [Argument(n, self.definition.inputs.get(n), workload.inputs[n])
                for n in _call_order(self.definition, workload.inputs, fail)]

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
        """Values offered by name to constraints and the custom-inputs entrypoint: scalar inputs and
        the workload's extra axes."""
        return {**workload.extra_axes, **{n: s.value for n, s in workload.inputs.items() if s.kind == "scalar"}}

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

_DEFINITION = TypeAdapter(Definition)
_WORKLOAD = TypeAdapter(Workload)


def load_problem(directory: str | os.PathLike) -> Problem:
    directory = Path(directory)
    if not directory.is_dir():
        raise ProblemError("not a problem directory", path=directory)
    definition_path = directory / DEFINITION_FILE
    if not definition_path.is_file():
        raise ProblemError(f"missing {DEFINITION_FILE}", path=directory)
    warnings: list[str] = []
    definition = parse_definition(_read_json(definition_path), definition_path)
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


def parse_definition(data: dict, path: Path | str = DEFINITION_FILE) -> Definition:
    try:
        return _DEFINITION.validate_python(data)
    except ValidationError as exc:
        where, message = first_error(exc)
        raise ProblemError(message, path=path, field=where) from None


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

    def warn(where: str, message: str) -> None:
        if warnings is not None:
            warnings.append(f"{path}:{line}: {where}: {message}")

    if not isinstance(data, dict):
        raise fail("each line must be a JSON object")
    for key in data:
        if key not in WORKLOAD_KEYS:
            warn(key, "not a workload field: ignored")
    tolerance = data.get("tolerance")
    if isinstance(tolerance, dict):
        known = {f.name for f in dataclasses.fields(Tolerance)} | set(_TOLERANCE_ALIASES)
        for key in tolerance:
            if key not in known:
                warn(f"tolerance.{key}", "unknown tolerance field: ignored")
    try:
        workload = _WORKLOAD.validate_python({k: data[k] for k in WORKLOAD_KEYS if k in data} | {"line": line})
    except ValidationError as exc:
        where, message = first_error(exc)
        raise fail(message, where) from None
    return _against_definition(workload, definition, fail, warn)


def _against_definition(workload: Workload, definition: Definition, fail, warn) -> Workload:
    """Check a workload against its definition and resolve the keys the definition does not declare."""
    for name, axis in definition.axes.items():
        if axis.kind == "var" and name not in workload.axes:
            raise fail("var axis has no value", f"axes.{name}")
        if axis.kind == "const" and name in workload.axes and workload.axes[name] != axis.value:
            raise fail(f"const axis is {axis.value} in the definition, {workload.axes[name]} here", f"axes.{name}")
    parameters = {p.name: p for p in _usable_parameters(definition)}
    sources = dict(workload.inputs)
    extra_axes: dict[str, int] = {}
    for name, value in workload.axes.items():
        if name in definition.axes:
            continue
        where = f"axes.{name}"
        if name in workload.inputs:
            warn(where, f"not an axis of the definition: ignored, input {name!r} has its own source")
        elif (name in definition.inputs and definition.inputs[name].is_scalar) or (
                name in parameters and name not in definition.inputs):
            sources[name] = InputSource("scalar", value)
            warn(where, f"not an axis of the definition: passed to run as the scalar {name!r}")
        else:
            extra_axes[name] = value
            warn(where, "not an axis of the definition: offered by name to constraints and the "
                        "custom-inputs entrypoint only")
    for name, source in workload.inputs.items():
        where = f"inputs.{name}"
        if name in definition.inputs:
            continue
        if name not in parameters:
            del sources[name]
            warn(where, "not an input of the definition nor a parameter of run: ignored")
        elif source.kind == "random":
            if not parameters[name].has_default:
                raise fail("a random input the definition does not declare has no shape or dtype to draw from", where)
            del sources[name]
            warn(where, "not an input of the definition, and random without shape or dtype: run gets its default")
        else:
            warn(where, "not an input of the definition: passed to run as its parameter of that name")
    for name, spec in definition.inputs.items():
        where = f"inputs.{name}"
        source = sources.get(name)
        if source is None:
            if spec.is_scalar:
                raise fail("input has no source", where)
            sources[name] = InputSource("random")
            warn(where, "input has no source: drawn at random, as the official harness does")
        elif source.kind == "custom" and not definition.custom_inputs_entrypoint:
            raise fail("custom input but the definition has no custom_inputs_entrypoint", where)
        elif source.kind == "random" and spec.is_scalar:
            raise fail("a Python scalar input (shape null) cannot be random; give a scalar value", where)
    order = _call_order(definition, sources, fail)
    var_axes = {n: v for n, v in workload.axes.items() if n in definition.axes and definition.axes[n].kind == "var"}
    return dataclasses.replace(workload, axes=var_axes, inputs={n: sources[n] for n in order}, extra_axes=extra_axes)


def _usable_parameters(definition: Definition) -> tuple[Parameter, ...]:
    """`run`'s positional parameters when they take the definition's inputs in order (else the
    reference check reports the mismatch, and no extra argument can be placed)."""
    parameters = definition.run_parameters or ()
    if [p.name for p in parameters if p.name in definition.inputs] != list(definition.inputs):
        return ()
    return parameters


def _call_order(definition: Definition, sources: dict[str, InputSource], fail) -> list[str]:
    """Argument names in `run`'s parameter order. Every parameter up to the last one given needs a
    value (arguments are positional); a later one needs a default."""
    parameters = _usable_parameters(definition)
    if not parameters:
        return list(definition.inputs)
    last = max((i for i, p in enumerate(parameters) if p.name in sources), default=-1)
    for i, parameter in enumerate(parameters):
        if parameter.name in sources:
            continue
        if i < last:
            raise fail(f"run takes {parameter.name!r} before {parameters[last].name!r}; neither the definition "
                       f"nor this workload gives it", f"inputs.{parameter.name}")
        if not parameter.has_default:
            raise fail(f"run requires {parameter.name!r}, which neither the definition nor this workload gives",
                       f"inputs.{parameter.name}")
    return [p.name for p in parameters[:last + 1]]
