"""Horizontal fusion: consecutive flat kernels of a program that do not read each other's results become one
launch (a rotary embedding's q and k kernels, the independent outputs of one block).

The merged kernel's grid is the parts' grids end to end; program `pid` runs the part whose range holds it,
at `pid - start`. Each part's body keeps its own code, with its parameters and local names prefixed `h<i>_`
(Triton merges variables assigned in both branches of an `if` and requires one type for them). Saves a
launch, a few microseconds of host time, per merged part: what launch-bound programs are made of.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from dataclasses import dataclass

ASSIGNMENT = re.compile(r"^v\d+ = (?!.*_lean\()")   # a value computed at the program's top level, no kernel of ours
IN_PLACE = re.compile(r"\w_\(|\w_\.\w+\(|\bout=")     # x.copy_(...), aten.index_put_.default(...), out=: writes
MAX_PARTS = 8   # a kernel's parameter list grows with every part; Triton compiles each merged kernel anew


@dataclass
class FlatLaunch:
    """A flat kernel's launch as the front end wrote it: `kernel[(cdiv(numel, BLOCK),)](*positional, **keywords)`."""
    kernel: dict
    numel: str                 # the element count (host text)
    positional: list[str]
    keywords: list[str]        # "C_in0=a0.is_contiguous()" ...
    outputs: list[str]         # the names of the tensors it stores

    def reads(self) -> set[str]:
        return set().union(*(_names(text) for text in self.positional + self.keywords))


def merge(lines: list[str], launches: dict[int, FlatLaunch], kernels: list[dict]) -> tuple[list[str], int]:
    """`lines` with runs of independent flat launches merged into one launch each, and the merged kernels
    replacing their parts in `kernels` (in place); also the launches saved. Between two launches of a run may
    stand assignments that read nothing the run writes (allocations, views): they move above the merged launch."""
    out: list[str] = []
    saved = 0
    i = 0
    while i < len(lines):
        if i not in launches:
            out.append(lines[i])
            i += 1
            continue
        run, hoisted, last, j = [launches[i]], [], i, i + 1
        while j < len(lines) and len(run) < MAX_PARTS:
            written = {name for part in run for name in part.outputs}
            if j in launches:
                read = set().union(*(part.reads() for part in run))
                if launches[j].reads() & written or set(launches[j].outputs) & (read | written):
                    break
                run.append(launches[j])
                hoisted += lines[last + 1:j]
                last = j
            elif not ASSIGNMENT.match(lines[j]) or IN_PLACE.search(lines[j]) or _names(lines[j]) & written:
                break
            j += 1
        if len(run) == 1:
            out.append(lines[i])
            i += 1
            continue
        out += hoisted + [_merged(run, kernels)]
        saved += len(run) - 1
        i = last + 1
    return out, saved


def _names(text: str) -> set[str]:
    return {m.group(0) for m in re.finditer(r"\b[a-z]\w*\b", text)}


def _merged(run: list[FlatLaunch], kernels: list[dict]) -> str:
    name = run[0].kernel["name"] + "_h"
    # the parts' positional parameters first, in the order of the launch's positional arguments; then the
    # constexprs, passed by keyword
    parameters, constants, body, unspecialized, positional, keywords = [], [], ["pid = tl.program_id(0)"], [], [], []
    for index, part in enumerate(run):
        prefix = f"h{index}_"
        own = {p.split(":")[0].strip() for p in part.kernel["parameters"]} - {"BLOCK"}
        local = own | _assigned(part.kernel["body"])
        parameters += [prefix + p for p in part.kernel["parameters"] if "constexpr" not in p]
        constants += [prefix + p for p in part.kernel["parameters"] if "constexpr" in p and not p.startswith("BLOCK")]
        unspecialized += [prefix + p for p in part.kernel["unspecialized"]]
        start = f"H_START{index}"
        test = "if" if index == 0 else "elif" if index < len(run) - 1 else "else"
        body.append(f"{test} pid < H_START{index + 1}:" if test != "else" else "else:")
        program = "pid" if index == 0 else f"(pid - {start})"
        body += ["    " + line for line in _renamed(part.kernel["body"], local, prefix, program)]
        positional += part.positional
        keywords += [prefix + k for k in part.keywords]
    parameters += constants + [f"H_START{i}" for i in range(1, len(run))] + ["BLOCK: tl.constexpr"]
    kernels[:] = [k for k in kernels if all(k is not part.kernel for part in run)]
    kernels.append({"name": name, "parameters": parameters, "body": body, "unspecialized": unspecialized,
                    "uses_tanh": any(part.kernel["uses_tanh"] for part in run)})
    blocks = [f"_cdiv({part.numel}, _BLOCK)" for part in run]
    starts = [" + ".join(blocks[:i]) for i in range(1, len(run))]
    keywords += [f"H_START{i + 1}={start}" for i, start in enumerate(starts)]
    return (f"_lean({name})[({' + '.join(blocks)},)]({', '.join(positional)}, {', '.join(keywords)}, "
            f"BLOCK=_BLOCK, num_warps=_WARPS)")


def _assigned(body: list[str]) -> set[str]:
    return {m.group(1) for line in body if (m := re.match(r"\s*(\w+)\s*=[^=]", line))}


def _renamed(body: list[str], names: set[str], prefix: str, program: str) -> list[str]:
    """The body with `names` prefixed (not attributes, not keyword-argument names) and its program id read
    from `program`."""
    lines = [line.replace("tl.program_id(0)", program) for line in body]
    tokens = list(tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline))
    depth, starts = 0, []   # (row, column) of each name to prefix
    for k, token in enumerate(tokens):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        if token.type == tokenize.NAME and token.string in names and not keyword.iskeyword(token.string):
            after_dot = k > 0 and tokens[k - 1].string == "."
            keyword_name = depth > 0 and k + 1 < len(tokens) and tokens[k + 1].string == "="
            if not after_dot and not keyword_name:
                starts.append(token.start)
    for row, column in reversed(starts):   # right to left: earlier columns stay valid
        lines[row - 1] = lines[row - 1][:column] + prefix + lines[row - 1][column:]
    return lines
