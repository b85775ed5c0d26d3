"""Solutions in SOL-ExecBench's format (solution.json) and loading one safely.

A solution's sources are written into a private directory (mode 0700) and imported from
there; a source path that is absolute, contains "..", or resolves outside that directory is
refused before anything is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kernelbench.core.errors import SolutionError

LANGUAGES = ("pytorch", "triton", "cuda_cpp")
PYTHON_LANGUAGES = ("pytorch", "triton")


@dataclass(frozen=True)
class Source:
    path: str
    content: str


@dataclass(frozen=True)
class Solution:
    name: str
    definition: str
    entry_point: str  # "file.py::function"
    sources: tuple[Source, ...]
    languages: tuple[str, ...] = ("pytorch",)
    author: str = ""
    description: str = ""
    target_hardware: tuple[str, ...] = ()
    destination_passing_style: bool = True
    dependencies: tuple[str, ...] = ()

    @property
    def entry_file(self) -> str:
        return self.entry_point.split("::")[0]

    @property
    def entry_function(self) -> str:
        return self.entry_point.split("::")[1]

    @property
    def language(self) -> str:
        return self.languages[0]

    @property
    def content_hash(self) -> str:
        """sha256 over everything that changes behaviour: spec and sources (not name/author)."""
        payload = {"entry_point": self.entry_point, "languages": list(self.languages),
                   "dps": self.destination_passing_style, "dependencies": list(self.dependencies),
                   "sources": sorted([s.path, s.content] for s in self.sources)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "definition": self.definition, "author": self.author,
            "description": self.description,
            "spec": {"languages": list(self.languages), "target_hardware": list(self.target_hardware),
                     "entry_point": self.entry_point,
                     "destination_passing_style": self.destination_passing_style,
                     "dependencies": list(self.dependencies)},
            "sources": [{"path": s.path, "content": s.content} for s in self.sources],
        }


def parse_solution(data: Any, origin: str = "solution.json") -> Solution:
    def fail(message: str, where: str) -> SolutionError:
        return SolutionError(f"{origin}: {where}: {message}")

    if not isinstance(data, dict):
        raise fail("must be a JSON object", "top level")
    for key in ("name", "definition", "spec", "sources"):
        if key not in data:
            raise fail("required field is missing", key)
    spec = data["spec"]
    if not isinstance(spec, dict):
        raise fail("must be an object", "spec")
    languages = spec.get("languages") or spec.get("language")
    languages = [languages] if isinstance(languages, str) else languages
    if not languages or not all(isinstance(x, str) for x in languages):
        raise fail("must name at least one language", "spec.languages")
    unknown = [x for x in languages if x not in LANGUAGES]
    if unknown:
        raise fail(f"unknown languages {unknown}; known: {', '.join(LANGUAGES)}", "spec.languages")
    entry = spec.get("entry_point")
    if not isinstance(entry, str) or entry.count("::") != 1 or not all(entry.split("::")):
        raise fail('must look like "file.py::function"', "spec.entry_point")
    raw_sources = data["sources"]
    if not isinstance(raw_sources, list) or not raw_sources:
        raise fail("must be a non-empty list of {path, content}", "sources")
    sources = []
    for i, item in enumerate(raw_sources):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("content"), str):
            raise fail("needs string path and content", f"sources[{i}]")
        check_relative_path(item["path"], f"{origin}: sources[{i}].path")
        sources.append(Source(item["path"], item["content"]))
    if entry.split("::")[0] not in {s.path for s in sources}:
        raise fail(f"entry file {entry.split('::')[0]!r} is not among the sources", "spec.entry_point")
    dps = spec.get("destination_passing_style", True)
    if not isinstance(dps, bool):
        raise fail("must be true or false", "spec.destination_passing_style")
    return Solution(
        name=str(data["name"]), definition=str(data["definition"]), entry_point=entry,
        sources=tuple(sources), languages=tuple(languages), author=str(data.get("author") or ""),
        description=str(data.get("description") or ""),
        target_hardware=_as_tuple(spec.get("target_hardware")), destination_passing_style=dps,
        dependencies=_as_tuple(spec.get("dependencies")),
    )


def _as_tuple(value) -> tuple[str, ...]:
    """A list of names; a single name given as a string is one name, not its characters."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def load_solution(path: str | os.PathLike) -> Solution:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SolutionError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise SolutionError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
    return parse_solution(data, str(path))


def save_solution(solution: Solution, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(solution.to_json(), indent=2) + "\n")
    return path


def check_relative_path(path: str, where: str = "path") -> None:
    pure = Path(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or "\x00" in path:
        raise SolutionError(f"{where}: {path!r} must be a relative path inside the solution")


def materialize(solution: Solution, directory: str | os.PathLike | None = None) -> Path:
    """Write the sources into a fresh private directory and return it."""
    root = Path(directory or tempfile.mkdtemp(prefix="kb_solution_")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for source in solution.sources:
        check_relative_path(source.path)
        target = (root / source.path).resolve()
        if not target.is_relative_to(root):  # e.g. a symlinked parent
            raise SolutionError(f"{source.path!r} resolves outside the solution directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.content)
    return root


def load_entry_point(solution: Solution, directory: Path) -> Callable:
    """Import the entry file from the materialized directory and return the entry function."""
    if solution.language not in PYTHON_LANGUAGES:
        raise SolutionError(f"language {solution.language!r} cannot be loaded by this version")
    directory = Path(directory).resolve()
    module_name = Path(solution.entry_file).with_suffix("").as_posix().replace("/", ".")
    _forget_previous_solution()
    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location(module_name, directory / solution.entry_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(directory))
        _LOADED_FROM.append(directory)
    function = getattr(module, solution.entry_function, None)
    if not callable(function):
        raise SolutionError(f"{solution.entry_file} defines no callable {solution.entry_function!r}")
    return function


_LOADED_FROM: list[Path] = []  # directories of solutions loaded earlier in this process


def _forget_previous_solution() -> None:
    """Modules of an earlier solution (e.g. two `kernel.py`) must not shadow this one's. Only modules
    whose file lies in an earlier solution's directory go: libraries it imported (triton, inductor)
    stay, since importing them twice breaks their registries. The directories are resolved and the
    modules' files were found under them, so a prefix test suffices; once forgotten, a directory is
    dropped (the cost stays one pass over sys.modules, however many solutions this process loaded)."""
    roots = tuple(f"{d}{os.sep}" for d in _LOADED_FROM)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(roots):
            del sys.modules[name]
    _LOADED_FROM.clear()


def reference_solution(definition_name: str, reference_source: str, *, compiled: str | None = None) -> Solution:
    """The reference as a pytorch solution (value-returning); `compiled` wraps it in torch.compile(mode=...)."""
    sources = [Source("reference.py", reference_source)]
    entry = "reference.py::run"
    name = f"{definition_name}__reference"
    if compiled is not None:
        mode = "None" if compiled == "default" else repr(compiled)
        sources.append(Source("compiled.py", (
            "import torch\n"
            "from reference import run as _reference_run\n\n"
            f"run = torch.compile(_reference_run, mode={mode})\n")))
        entry = "compiled.py::run"
        name = f"{definition_name}__torch_compile_{compiled}"
    return Solution(name=name, definition=definition_name, entry_point=entry, sources=tuple(sources),
                    languages=("pytorch",), author="kernelbench", destination_passing_style=False,
                    description="the problem's reference" + (f" under torch.compile(mode={compiled})" if compiled else ""))
