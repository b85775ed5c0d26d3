"""Compile a problem's reference source into a module and check `run` against the inputs."""

from __future__ import annotations

import hashlib
import inspect
import sys
import types

from kernelbench.core.errors import ProblemError
from kernelbench.core.problem import Definition


def compile_reference(definition: Definition, origin: str = "definition.json") -> types.ModuleType:
    """Execute the reference source in a fresh module (the reference is trusted problem code).

    The module is registered in sys.modules under a content-derived name so that
    dataclasses, enums and pickling inside the reference work.
    """
    digest = hashlib.sha256(definition.reference.encode()).hexdigest()[:12]
    name = f"kb_reference_{digest}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = f"<reference of {definition.name}>"
        sys.modules[name] = module
        try:
            code = compile(definition.reference, module.__file__, "exec")
            exec(code, module.__dict__)  # noqa: S102 - reference code is part of the problem, not a candidate
        except Exception as exc:
            del sys.modules[name]
            raise ProblemError(f"reference does not import: {type(exc).__name__}: {exc}",
                               path=origin, field="reference") from exc
    check_run_signature(module, definition, origin)  # on every call: same source, other inputs, may not fit
    return module


def check_run_signature(module: types.ModuleType, definition: Definition, origin: str = "definition.json") -> None:
    run = getattr(module, "run", None)
    if not callable(run):
        raise ProblemError("reference defines no callable run", path=origin, field="reference")
    params = list(inspect.signature(inspect.unwrap(run)).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    expected = list(definition.inputs)
    # Other parameters may sit among the inputs: workloads may give them (load_problem checks that each does).
    if [n for n in positional if n in definition.inputs] != expected:
        raise ProblemError(f"run{tuple(positional)} does not take the inputs in order {tuple(expected)}",
                           path=origin, field="reference")
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise ProblemError(f"run has required keyword-only parameters: {keyword_only}", path=origin, field="reference")
    entry = definition.custom_inputs_entrypoint
    if entry and not callable(getattr(module, entry, None)):
        raise ProblemError(f"{entry!r} is not a function of the reference", path=origin,
                           field="custom_inputs_entrypoint")
