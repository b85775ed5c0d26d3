"""A model's answer -> a solution, or a clear record of what could not be used.

Accepted, first match wins:
1. a fenced ```json block holding a solution.json (spec and sources);
2. fenced code blocks: the last Python block that defines a top-level `run` is the entry file; other
   blocks that name a file (on the fence line, ```cuda kernel.cu, or in a first-line comment,
   `# file: helpers.py`) are written beside it; unnamed blocks without `run` are left out;
3. no fence at all: the whole answer, when it parses as Python and defines `run`.
Destination-passing style is read from `run`'s parameters: the reference's inputs only -> returns its
outputs; the inputs then the outputs -> writes into them. The entry is a Python module, so the language
is a Python one (official cuda_cpp solutions have a C++ entry, a json block's concern): triton when the code
imports triton, else pytorch, also when it builds CUDA itself (a .cu source, torch.utils.cpp_extension,
cupy). Nothing here judges the code: screening, the audit and the timer do.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution, Source, check_relative_path, parse_solution

ENTRY_FUNCTION = "run"
DEFAULT_ENTRY_FILE = "kernel.py"
FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*([^\n`]*)\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"[\w./-]+\.(?:py|cu|cuh|cpp|cc|cxx|c|h|hpp)\b")
FIRST_LINE_NAME = re.compile(r"^\s*(?:#|//)\s*(?:file(?:name)?\s*:\s*)?([\w./-]+\.(?:py|cu|cuh|cpp|cc|cxx|c|h|hpp))\s*$")
PYTHON_TAGS = ("python", "py", "python3", "triton", "pytorch")
NATIVE_TAGS = ("cuda", "cu", "cpp", "c++", "c", "cxx", "cuh", "h", "hpp")


@dataclass
class Parsed:
    solution: Solution | None
    problems: list[str] = field(default_factory=list)   # why no solution came out (empty when one did)
    notes: list[str] = field(default_factory=list)      # what was left out of a solution that did

    def describe(self) -> str:
        return "; ".join(self.problems)


@dataclass
class _Block:
    tag: str
    path: str | None
    code: str
    index: int

    @property
    def kind(self) -> str:
        if self.tag in PYTHON_TAGS or (self.path or "").endswith(".py"):
            return "python"
        if self.tag in NATIVE_TAGS or (self.path and not self.path.endswith(".py")):
            return "native"
        if self.tag == "json":
            return "json"
        return "python" if not self.tag else "other"


def parse_answer(text: str, problem: Problem, *, name: str, author: str) -> Parsed:
    blocks = _blocks(text)
    if "```" in text and not blocks:
        return Parsed(None, ["a ``` code block is opened but never closed (was the answer cut off?)"])
    for block in blocks:
        if block.kind == "json":
            parsed = _from_json(block, problem, name, author)
            if parsed is not None:
                return parsed
    fenced = bool(blocks)
    if not fenced:
        blocks = [_Block("", None, text, 1)]   # perhaps the whole answer is the code
    python = [(b, _syntax(b)) for b in blocks if b.kind == "python"]
    entries = [(b, tree) for b, tree in python if isinstance(tree, ast.Module) and _run(tree) is not None]
    if not entries:
        broken = [f"{_where(b)}: {tree}" for b, tree in python
                  if isinstance(tree, str) and re.search(rf"^def {ENTRY_FUNCTION}\s*\(", b.code, re.MULTILINE)]
        if broken:
            return Parsed(None, broken)
        if fenced:
            return Parsed(None, [f"no Python code block defines a top-level `def {ENTRY_FUNCTION}(...)`"])
        return Parsed(None, [f"no ``` code block in the answer, and the answer itself is not Python defining "
                             f"`def {ENTRY_FUNCTION}(...)`"])
    entry, tree = entries[-1]
    style = _destination_passing(_run(tree), problem)
    if isinstance(style, str):
        return Parsed(None, [f"{_where(entry)}: {style}"])
    entry_path = entry.path or DEFAULT_ENTRY_FILE
    files, notes = {entry_path: entry.code}, []
    for block in blocks:
        if block is entry or block.kind == "json":
            continue
        if block.path and block.path not in files:
            files[block.path] = block.code
        else:
            notes.append(f"{_where(block)} left out (it names no file, or the file came twice)")
    try:   # before a Source is made: the model is told which name is unusable, not a validation trace
        for path in files:
            check_relative_path(path, "file name")
    except KernelBenchError as exc:
        return Parsed(None, [str(exc)])
    sources = [Source(path, code) for path, code in files.items()]
    solution = Solution(name=name, definition=problem.name, entry_point=f"{entry_path}::{ENTRY_FUNCTION}",
                        sources=tuple(sources), languages=(_language(sources),), author=author,
                        destination_passing_style=style)
    return Parsed(solution, notes=notes)


def _blocks(text: str) -> list[_Block]:
    blocks = []
    for index, match in enumerate(FENCE.finditer(text), start=1):
        info, code = match.group(2).strip(), match.group(3)
        tag = info.split()[0].lower().split(":")[0] if info else ""
        named = FILE_NAME.search(info)
        first = FIRST_LINE_NAME.match(code.split("\n", 1)[0])
        path = named.group(0) if named else first.group(1) if first else None
        blocks.append(_Block(tag, path, code, index))
    return blocks


def _where(block: _Block) -> str:
    return f"code block {block.index}" + (f" ({block.path})" if block.path else "")


def _syntax(block: _Block) -> ast.Module | str:
    try:
        return ast.parse(block.code)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:   # null bytes (before Python 3.12), absurd nesting
        return f"{type(exc).__name__}: {exc}"


def _run(tree: ast.Module) -> ast.FunctionDef | None:
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY_FUNCTION]
    return found[-1] if found else None


def _destination_passing(function: ast.FunctionDef, problem: Problem) -> bool | str:
    """False: run(inputs) returns the outputs; True: run(inputs, outputs) writes them; else what is wrong."""
    inputs, outputs = list(problem.definition.inputs), list(problem.definition.outputs)
    arguments = function.args
    positional = [a.arg for a in arguments.posonlyargs + arguments.args]
    required = len(positional) - len(arguments.defaults)
    if arguments.vararg is not None or required <= len(inputs) <= len(positional):
        return False
    if required == len(inputs) + len(outputs):
        return True
    return (f"`{ENTRY_FUNCTION}` takes {len(positional)} parameters ({', '.join(positional)}); the reference's "
            f"`run` takes the {len(inputs)} inputs ({', '.join(inputs)}), or the inputs then the {len(outputs)} "
            f"outputs ({', '.join(outputs)}) to write into")


def _language(sources: list[Source]) -> str:
    if any(re.search(r"^\s*(import triton|from triton)", s.content, re.MULTILINE) for s in sources):
        return "triton"
    return "pytorch"


def _from_json(block: _Block, problem: Problem, name: str, author: str) -> Parsed | None:
    """A solution.json in a json block; None when the block is some other JSON."""
    try:
        data = json.loads(block.code)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "sources" not in data:
        return None
    data = {**data, "name": name, "definition": problem.name, "author": author}
    try:
        return Parsed(parse_solution(data, origin=_where(block)))
    except KernelBenchError as exc:
        return Parsed(None, [str(exc)])
