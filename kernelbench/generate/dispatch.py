"""Assemble per-workload winners into one solution: a shape-keyed dispatch with a general fallback.

Every variant is a complete solution, correct on every legal shape (a template's configuration
changes speed, never results), so the table only picks the fastest variant for the shapes the search
timed; any other shape takes the fallback, the variant best over all timed shapes. DESIGN.md calls
this legitimate ("a shape-keyed dispatch table with a general fallback"); the evaluator's shape probe
runs an untested shape through the fallback.
"""

from __future__ import annotations

import keyword
import re

from kernelbench.core.problem import Problem, Workload
from kernelbench.core.solution import Solution, Source

from .candidate import Candidate, Provenance

ENTRY_FILE = "dispatch.py"


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "arg"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = f"arg_{base}"
    name, n = base, 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def shape_key(problem: Problem, workload: Workload) -> tuple:
    """The shapes of the tensor inputs at a workload's axes: what the dispatch looks up at run time."""
    axes = problem.axes_for(workload)
    return tuple(tuple(problem.shape_of(spec, axes)) for spec in problem.definition.inputs.values()
                 if not spec.is_scalar)


def assemble(problem: Problem, winners: dict[str, Candidate], fallback: Candidate) -> Candidate:
    """One candidate from workload uuid -> winner; returns `fallback` itself when it wins everywhere.
    One call convention per module: a winner whose destination-passing style differs from the
    fallback's is left out, and its workloads run the fallback."""
    dps = fallback.solution.destination_passing_style
    winners = {uuid: c for uuid, c in winners.items() if c.solution.destination_passing_style == dps}
    variants: list[Candidate] = [fallback]
    for candidate in winners.values():
        if all(candidate.key != v.key for v in variants):
            variants.append(candidate)
    if len(variants) == 1:
        return fallback
    workloads = {w.uuid: w for w in problem.workloads}
    index = {v.key: i for i, v in enumerate(variants)}
    table: dict[tuple, int] = {}
    for uuid, candidate in winners.items():
        table[shape_key(problem, workloads[uuid])] = index[candidate.key]

    taken: set[str] = set()
    tensors, parameters = [], []
    for name, spec in problem.definition.inputs.items():
        parameter = _identifier(name, taken)
        parameters.append(parameter)
        if not spec.is_scalar:
            tensors.append(parameter)
    if dps:
        parameters += [_identifier(name, taken) for name in problem.definition.outputs]
    sources, imports = [], []
    for i, variant in enumerate(variants):
        package = f"v{i}"
        sources += [Source(f"{package}/{s.path}", s.content) for s in variant.solution.sources]
        module = variant.solution.entry_file[:-3].replace("/", ".")
        imports.append(f"from {package}.{module} import {variant.solution.entry_function} as _variant_{i}")
    key = "(" + "".join(f"{t}.shape, " for t in tensors) + ")"   # torch.Size hashes as the tuple it is
    rows = "".join(f"    {k!r}: _variant_{i},\n" for k, i in sorted(table.items(), key=lambda kv: str(kv[0])))
    arguments = ", ".join(parameters)
    entry = (
        '"""Shape-keyed dispatch over variants of one kernel (kernelbench.generate.dispatch); other shapes\n'
        'take _variant_0, the best over every timed shape. Each variant is correct on every shape."""\n\n'
        + "\n".join(imports) + "\n\n"
        + f"_BY_SHAPE = {{\n{rows}}}\n\n\n"
        + f"def run({arguments}):\n"
        + f"    return _BY_SHAPE.get({key}, _variant_0)({arguments})\n")
    sources.append(Source(ENTRY_FILE, entry))
    languages = tuple(dict.fromkeys(lang for v in variants for lang in v.solution.languages))
    solution = Solution(name=f"{problem.name}__dispatch", definition=problem.name,
                        entry_point=f"{ENTRY_FILE}::run", sources=tuple(sources), languages=languages,
                        author="kernelbench", destination_passing_style=dps,
                        description=f"shape-keyed dispatch over {len(variants)} variants")
    provenance = Provenance(source="dispatch", family=fallback.provenance.family,
                            parameters={"variants": [v.provenance.to_json() for v in variants],
                                        "table": {str(k): i for k, i in table.items()}},
                            parent=fallback.key, proposer="kernelbench.generate.dispatch")
    return Candidate(solution, provenance)
