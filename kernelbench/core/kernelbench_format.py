"""KernelBench problems converted to this project's problem format.

A KernelBench problem is a Python file with `class Model(nn.Module)`, `get_inputs()` (the
forward inputs), `get_init_inputs()` (the constructor's arguments) and module-level size
constants. It becomes a problem directory (definition.json + workload.jsonl) by these rules:

- **State is input.** Every parameter and buffer of the Model is an input, after the forward
  inputs, named by its module path (`conv.weight` -> `conv_weight`). The reference builds the
  Model's structure once on the meta device (no values) and calls it with
  `torch.func.functional_call` on the tensors it is given, so it is a pure function of its inputs.
- **Values are KernelBench's own.** Every input is `custom`: the definition's
  `custom_inputs_entrypoint`, `make_inputs(axes_and_scalars, device)`, sets the var-axis
  constants to the workload's values, calls the file's `get_inputs()` and builds
  `Model(*get_init_inputs())` on the device; the evaluator seeds torch before the call. So the
  forward inputs follow KernelBench's distributions, the weights the Model's own initialization,
  and both are new every round yet the same for the same seed.
- **Mode.** The Model runs in training mode, as KernelBench runs it (batch norm normalizes with
  the batch's statistics); the reference updates copies of the buffers (running statistics), so
  it never writes to its inputs. Dropout layers are switched off: a random mask cannot be checked
  against a reference.
- **Axes.** A module-level integer constant (`batch_size = 16`) that sizes some dimension
  becomes an axis. Which dimensions it sizes is found by running the file again with that constant
  doubled, on the meta device (shapes only, no memory), and seeing which dimensions follow.
  `batch_size` (or the constants named as var axes) is a var axis, every other one const; a
  dimension no constant sizes exactly (a conv output width, a constant 1) is a literal.
- **Workloads.** The file's own sizes, plus any values given for the var axes (a workload that
  names none of the file's constants does not apply to it); KernelBench's tolerance
  (atol = rtol = 1e-2).
"""

from __future__ import annotations

import ast
import inspect
import json
import keyword
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from kernelbench.core.errors import KernelBenchError, ProblemError
from kernelbench.core.problem import DEFINITION_FILE, WORKLOAD_FILE, load_problem

DEFAULT_VAR_AXES = ("batch_size",)
TOLERANCE = {"max_atol": 1e-2, "max_rtol": 1e-2}   # KernelBench's allclose check
ENTRYPOINT = "make_inputs"
_UUID_NAMESPACE = uuid.UUID("6f1c2b1e-4d55-4e57-9a33-6b2b5e0a7c11")
_SCALAR_DTYPES = {bool: "bool", int: "int64", float: "float32"}

_REFERENCE = '''{source}

# ---- kernelbench: the problem above as a pure function of its inputs (kernelbench/core/kernelbench_format.py)
import torch as _torch
from torch.func import functional_call as _functional_call

_INIT_INPUTS = {init!r}
_VAR_AXES = {var_axes!r}
_FORWARD = {forward!r}
_STATE = {state!r}  # input name -> the Model's parameter or buffer


def _structure():
    """The Model without values (they are inputs), on the meta device, dropout switched off."""
    with _torch.device("meta"):
        model = Model(*_INIT_INPUTS)
    for module in model.modules():
        if isinstance(module, _torch.nn.modules.dropout._DropoutNd):
            module.eval()
    return model


_MODEL = _structure()


def make_inputs(axes_and_scalars, device):
    """KernelBench's forward inputs and the Model's own initial weights, at this workload's sizes."""
    for axis in _VAR_AXES:
        globals()[axis] = axes_and_scalars[axis]
    with _torch.device(device):
        values = get_inputs()
        model = Model(*get_init_inputs())
    state = {{**dict(model.named_parameters()), **dict(model.named_buffers())}}
    return {{**dict(zip(_FORWARD, values)), **{{name: state[path].detach() for name, path in _STATE.items()}}}}


@_torch.no_grad()
def run({parameters}):
    state = {{{state_arguments}}}
    return _functional_call(_MODEL, state, ({forward_arguments}))
'''


@dataclass
class Probe:
    """One run of a KernelBench file: its forward inputs, the Model's state and the outputs."""
    forward: list[Any]
    init: list[Any]
    state: list[tuple[str, torch.Tensor, bool]]   # (module path, tensor, is a buffer)
    outputs: list[torch.Tensor]
    names: list[str]                              # forward's parameter names


def convert(source: str, name: str, *, origin: str = "<kernelbench>", var_axes: Sequence[str] = DEFAULT_VAR_AXES,
            workloads: Sequence[dict[str, int]] = ()) -> tuple[dict, list[dict]]:
    """(definition.json, workload lines) of one KernelBench file's source."""
    tree = _parse(source, origin)
    constants = _int_constants(tree)
    var_axes = [a for a in var_axes if a in constants]
    base = _probe(source, tree, origin, {}, meta_only=False)
    sized = _dimension_axes(source, tree, origin, base, constants, var_axes)
    used = [c for c in constants if c in sized.values()]
    taken = set(used)
    forward_names = [_unique(n, taken) for n in base.names]
    state_names = [_unique(_identifier(path), taken) for path, _, _ in base.state]

    def shape(key, tensor) -> list[str]:
        return [sized.get((key, i), str(d)) for i, d in enumerate(tensor.shape)]

    inputs = {}
    for i, (input_name, value) in enumerate(zip(forward_names, base.forward)):
        inputs[input_name] = _spec(value, shape(("forward", i), value) if isinstance(value, torch.Tensor) else None, origin)
    for i, (input_name, (_, tensor, _)) in enumerate(zip(state_names, base.state)):
        inputs[input_name] = _spec(tensor, shape(("state", i), tensor), origin)
    output_names = ["output"] if len(base.outputs) == 1 else [f"output{i}" for i in range(len(base.outputs))]
    outputs = {n: _spec(t, shape(("output", i), t), origin) for i, (n, t) in enumerate(zip(output_names, base.outputs))}
    var_used = [a for a in var_axes if a in used]
    reference = _REFERENCE.format(
        source=source.rstrip(), init=base.init, var_axes=tuple(var_used), forward=tuple(forward_names),
        state={n: path for n, (path, _, _) in zip(state_names, base.state)},
        parameters=", ".join([*forward_names, *state_names]),
        state_arguments=", ".join(f"{path!r}: {n}.clone()" if buffer else f"{path!r}: {n}"
                                  for n, (path, _, buffer) in zip(state_names, base.state)),
        forward_arguments="".join(f"{n}, " for n in forward_names))
    definition = {
        "name": name, "description": _description(source, origin), "op_type": "kernelbench",
        "axes": {c: {"type": "var"} if c in var_used else {"type": "const", "value": constants[c]} for c in used},
        "custom_inputs_entrypoint": ENTRYPOINT, "inputs": inputs, "outputs": outputs, "reference": reference,
    }
    lines = []
    for given in [{a: constants[a] for a in var_used}, *workloads]:
        if given and not set(given) & set(constants):
            continue   # names no constant of this file (a workload given for a whole directory of problems)
        unknown = sorted(set(given) - set(var_used))
        if unknown:
            raise ProblemError(f"workload sets {unknown}, which are not var axes (var axes: {var_used})", path=origin)
        axes = {a: given.get(a, constants[a]) for a in var_used}
        lines.append({"uuid": str(uuid.uuid5(_UUID_NAMESPACE, f"{name}:{json.dumps(axes, sort_keys=True)}")),
                      "axes": axes, "inputs": {n: {"type": "custom"} for n in inputs}, "tolerance": dict(TOLERANCE)})
    return definition, list({line["uuid"]: line for line in lines}.values())


def problem_name(path: Path) -> str:
    """"1_Square_matrix_multiplication_.py" -> "001_square_matrix_multiplication"."""
    name = re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_")
    number = re.match(r"\d+", name)
    return f"{int(number.group()):03d}{name[number.end():]}" if number else name


def import_kernelbench(source: Path, out_dir: Path, *, subset: str | None = None,
                       var_axes: Sequence[str] = DEFAULT_VAR_AXES,
                       workloads: Sequence[dict[str, int]] = ()) -> tuple[list[Path], dict[str, str]]:
    """Convert one file, or every .py file of a directory, into out_dir/<subset>/<name>/.
    Returns (problem directories written, {file: why it could not be converted})."""
    source = Path(source)
    files = [source] if source.is_file() else sorted(source.glob("*.py"))
    if not files:
        raise KernelBenchError(f"{source}: no KernelBench .py files here")
    subset = subset or (source.parent.name if source.is_file() else source.name)
    written, failed = [], {}
    for file in files:
        name = problem_name(file)
        try:
            definition, lines = convert(file.read_text(), name, origin=str(file), var_axes=var_axes, workloads=workloads)
        except KernelBenchError as exc:
            failed[str(file)] = str(exc)
            continue
        directory = Path(out_dir) / subset / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / DEFINITION_FILE).write_text(json.dumps(definition, indent=2) + "\n")
        (directory / WORKLOAD_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
        load_problem(directory)   # what every command will read must load
        written.append(directory)
    return written, failed


def parse_workload_option(text: str) -> dict[str, int]:
    """"batch_size=4,seq=8" -> {"batch_size": 4, "seq": 8}."""
    try:
        return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise KernelBenchError(f"workload {text!r}: expected AXIS=INT[,AXIS=INT...]") from None


# ---------------------------------------------------------------- running the file

def _parse(source: str, origin: str) -> ast.Module:
    try:
        return ast.parse(source, origin)
    except SyntaxError as exc:
        raise ProblemError(f"not valid Python: {exc.msg} (line {exc.lineno})", path=origin) from None


def _int_constants(tree: ast.Module) -> dict[str, int]:
    """Module-level `name = <int literal>` (also `a = b = 3`), in source order."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and type(node.value.value) is int and node.value.value > 0:
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _execute(source: str, tree: ast.Module, origin: str, overrides: dict[str, int]) -> dict:
    """Run the file (trusted problem code, like a reference) with some constants changed."""
    if overrides:
        tree = ast.parse(source, origin)
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in overrides for t in node.targets):
                value = next(overrides[t.id] for t in node.targets if isinstance(t, ast.Name) and t.id in overrides)
                node.value = ast.copy_location(ast.Constant(value), node.value)
    namespace: dict = {"__name__": "kernelbench_problem"}
    exec(compile(tree, origin, "exec"), namespace)  # noqa: S102 - the problem file is what is being imported
    for needed in ("Model", "get_inputs", "get_init_inputs"):
        if not callable(namespace.get(needed)):
            raise ProblemError(f"defines no {needed}: not a KernelBench problem", path=origin)
    return namespace


def _probe(source: str, tree: ast.Module, origin: str, overrides: dict[str, int], meta_only: bool) -> Probe:
    """Shapes on the meta device; with meta_only False, a real CPU run when some op has no meta kernel."""
    namespace = _execute(source, tree, origin, overrides)
    devices = ["meta"] if meta_only else ["meta", "cpu"]
    for device in devices:
        try:
            with torch.device(device), torch.no_grad():
                forward = list(namespace["get_inputs"]())
                init = list(namespace["get_init_inputs"]())
                model = namespace["Model"](*init)
                outputs = model(*forward)
            break
        except Exception as exc:
            if device == devices[-1]:
                raise ProblemError(f"cannot run Model(*get_init_inputs())(*get_inputs()): {type(exc).__name__}: {exc}",
                                   path=origin) from None
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise ProblemError("forward must return a tensor or a tuple of tensors", path=origin)
    state = [(p, t, False) for p, t in model.named_parameters()] + [(p, t, True) for p, t in model.named_buffers()]
    return Probe(forward, init, state, outputs, _forward_names(namespace["Model"], len(forward)))


def _forward_names(model_class, count: int) -> list[str]:
    parameters = list(inspect.signature(model_class.forward).parameters.values())[1:]
    plain = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return plain[:count] if len(plain) >= count else [f"input{i}" for i in range(count)]


def _tensors(probe: Probe) -> dict[tuple[str, int], torch.Tensor]:
    found = {("forward", i): v for i, v in enumerate(probe.forward) if isinstance(v, torch.Tensor)}
    found.update({("state", i): t for i, (_, t, _) in enumerate(probe.state)})
    found.update({("output", i): t for i, t in enumerate(probe.outputs)})
    return found


def _dimension_axes(source: str, tree: ast.Module, origin: str, base: Probe, constants: dict[str, int],
                    var_axes: list[str]) -> dict[tuple[tuple[str, int], int], str]:
    """(tensor, dimension) -> the constant that sizes it, found by doubling each constant in turn."""
    tensors = _tensors(base)
    sized: dict = {}
    unprobed = []
    for constant, value in constants.items():
        try:
            changed = _tensors(_probe(source, tree, origin, {constant: 2 * value}, meta_only=True))
        except Exception as exc:
            if constant in var_axes:
                raise ProblemError(f"cannot tell which dimensions the var axis {constant!r} sizes: with "
                                   f"{constant} = {2 * value} the file fails ({type(exc).__name__}: {exc})",
                                   path=origin) from None
            unprobed.append(constant)
            continue
        for key, tensor in tensors.items():
            other = changed.get(key)
            if other is None or other.dim() != tensor.dim():
                continue
            for i, (before, after) in enumerate(zip(tensor.shape, other.shape)):
                if before == value and after == 2 * value:
                    sized.setdefault((key, i), constant)
                elif before != after and constant in var_axes:
                    raise ProblemError(f"dimension {i} of {key[0]} tensor {key[1]} changes with the var axis "
                                       f"{constant!r} but is not equal to it; make {constant!r} const", path=origin)
    for key, tensor in tensors.items():   # constants the file cannot be run without: by value, if unambiguous
        for i, size in enumerate(tensor.shape):
            matches = [c for c in unprobed if constants[c] == size > 1]
            if (key, i) not in sized and len(matches) == 1:
                sized[(key, i)] = matches[0]
    return sized


# ---------------------------------------------------------------- naming and specs

def _spec(value: Any, shape: list[str] | None, origin: str) -> dict:
    if isinstance(value, torch.Tensor):
        return {"shape": shape, "dtype": str(value.dtype).removeprefix("torch.")}
    if type(value) in _SCALAR_DTYPES:
        return {"shape": None, "dtype": _SCALAR_DTYPES[type(value)]}
    raise ProblemError(f"get_inputs() gives a {type(value).__name__}; only tensors and int/float/bool are inputs",
                       path=origin)


def _identifier(path: str) -> str:
    name = re.sub(r"\W", "_", path)
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"param_{name}"


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate


def _description(source: str, origin: str) -> str:
    tree = ast.parse(source, origin)
    model = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model"), None)
    doc = ast.get_docstring(model) if model else None
    text = " ".join(doc.split()) if doc else "KernelBench problem"
    return f"{text} (converted from KernelBench {Path(origin).name})"
