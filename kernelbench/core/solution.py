"""Solutions in SOL-ExecBench's format (solution.json) and loading one safely.

`Solution` is a pydantic dataclass with the official `spec` fields flattened onto it; built from
a file (parse_solution, load_solution) or in code, it is valid or not built. A source path that is
absolute, contains "..", or would resolve outside the solution's directory is refused; sources are
written into a private directory (mode 0700) and imported from there, and paths are checked again
before anything is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import PlainValidator, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from kernelbench.core.errors import SolutionError
from kernelbench.core.fields import Flag, NonEmptyString, first_error, invalid

# The official languages; this version loads the Python ones it lists in PYTHON_LANGUAGES and builds the
# C++ ones (a torch extension, kernelbench.core.cpp_build). C++ and Python languages are never mixed.
LANGUAGES = ("pytorch", "triton", "cute_dsl", "cutile", "cudnn_frontend", "cutlass", "cudnn", "cublas", "cuda_cpp")
PYTHON_LANGUAGES = ("pytorch", "triton")
CPP_LANGUAGES = ("cuda_cpp", "cutlass", "cudnn", "cublas")
CPP_ENTRY_SUFFIXES = (".cu", ".cpp", ".cc", ".cxx", ".c", ".h", ".hpp", ".cuh")
SPEC_FIELDS = ("languages", "target_hardware", "entry_point", "destination_passing_style", "dependencies",
               "binding", "compile_options")


def _unsafe(path: str) -> bool:
    pure = Path(path)
    return not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or "\x00" in path


def _relative_path(value: Any) -> str:
    if not isinstance(value, str) or _unsafe(value):
        raise invalid(f"{value!r} must be a relative path inside the solution")
    return value


def _entry_point(value: Any) -> str:
    if not isinstance(value, str) or value.count("::") != 1 or not all(value.split("::")):
        raise invalid('must look like "file.py::function"')
    return value


def _languages(value: Any) -> tuple[str, ...]:
    value = (value,) if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(x, str) for x in value):
        raise invalid("must name at least one language")
    unknown = [x for x in value if x not in LANGUAGES]
    if unknown:
        raise invalid(f"unknown languages {unknown}; known: {', '.join(LANGUAGES)}")
    return tuple(value)


def _names(value: Any) -> tuple[str, ...]:
    """A list of names; a single name given as a string is one name, not its characters."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _flags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise invalid("must be a list of strings")
    return tuple(value)


def _binding(value: Any) -> str | None:
    if value not in (None, "torch"):
        raise invalid(f"unknown binding {value!r}; known: torch")
    return value


Flags = Annotated[tuple[str, ...], PlainValidator(_flags)]
RelativePath = Annotated[str, PlainValidator(_relative_path)]
EntryPoint = Annotated[str, PlainValidator(_entry_point)]
Languages = Annotated[tuple[str, ...], PlainValidator(_languages)]
Names = Annotated[tuple[str, ...], PlainValidator(_names)]


@dataclass(frozen=True)
class Source:
    path: RelativePath
    content: str

    @model_validator(mode="before")
    @classmethod
    def _strings(cls, data: Any) -> Any:
        if not isinstance(data, ArgsKwargs) and (
                not isinstance(data, dict) or not isinstance(data.get("path"), str)
                or not isinstance(data.get("content"), str)):
            raise invalid("needs string path and content")
        return data


@dataclass(frozen=True)
class CompileOptions:
    """spec.compile_options of a C++ solution; the defaults are the official ones."""
    cflags: Flags = ()
    cuda_cflags: Flags = ("-O3", "--use_fast_math")
    ld_flags: Flags = ("-lcuda",)

    def to_json(self) -> dict[str, list[str]]:
        return {"cflags": list(self.cflags), "cuda_cflags": list(self.cuda_cflags), "ld_flags": list(self.ld_flags)}


@dataclass(frozen=True)
class Solution:
    name: NonEmptyString
    definition: NonEmptyString
    entry_point: EntryPoint  # "file.py::function"
    sources: tuple[Source, ...]
    languages: Languages = ("pytorch",)
    author: str = ""
    description: str = ""
    target_hardware: Names = ()
    destination_passing_style: Flag = True
    dependencies: Names = ()
    binding: Annotated[str | None, PlainValidator(_binding)] = None   # C++ only: "torch" (the default)
    compile_options: CompileOptions | None = None                    # C++ only (None: the defaults)

    @model_validator(mode="before")
    @classmethod
    def _flatten_spec(cls, data: Any) -> Any:
        """solution.json nests the build fields under `spec` (`language` may name one language)."""
        if isinstance(data, ArgsKwargs) or not isinstance(data, dict):
            return data
        spec = data.get("spec")
        if spec is None:
            raise invalid("required field is missing", "spec")
        if not isinstance(spec, dict):
            raise invalid("must be an object", "spec")
        flat = {k: v for k, v in data.items() if k != "spec"}
        flat.update({k: spec[k] for k in SPEC_FIELDS if k in spec})
        if "languages" not in spec and "language" in spec:
            flat["languages"] = spec["language"]
        flat["languages"] = flat.get("languages") or []
        for key in ("author", "description"):
            flat[key] = str(flat.get(key) or "")
        if "sources" in flat and (not isinstance(flat["sources"], list) or not flat["sources"]):
            raise invalid("must be a non-empty list of {path, content}", "sources")
        return flat

    @model_validator(mode="after")
    def _entry_among_sources(self) -> "Solution":
        if not self.sources:
            raise invalid("must be a non-empty list of {path, content}", "sources")
        if self.entry_file not in {s.path for s in self.sources}:
            raise invalid(f"entry file {self.entry_file!r} is not among the sources", "spec.entry_point")
        native = [x for x in self.languages if x in CPP_LANGUAGES]
        if native and len(native) != len(self.languages):
            raise invalid(f"C++ and Python languages cannot be mixed: {list(self.languages)}", "spec.languages")
        if native and not self.entry_file.lower().endswith(CPP_ENTRY_SUFFIXES):
            raise invalid(f"C++ languages need a C++/CUDA entry file, not {self.entry_file!r}", "spec.entry_point")
        return self

    @property
    def is_native(self) -> bool:
        """Built as a torch extension (kernelbench.core.cpp_build), not imported as Python."""
        return self.languages[0] in CPP_LANGUAGES

    @property
    def build_options(self) -> CompileOptions:
        return self.compile_options or CompileOptions()

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
        if self.is_native:  # build flags change the binary
            payload["build"] = [self.binding or "torch", self.build_options.to_json()]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "definition": self.definition, "author": self.author,
            "description": self.description,
            "spec": {"languages": list(self.languages), "target_hardware": list(self.target_hardware),
                     "entry_point": self.entry_point,
                     "destination_passing_style": self.destination_passing_style,
                     "dependencies": list(self.dependencies),
                     **({"binding": self.binding} if self.binding else {}),
                     **({"compile_options": self.compile_options.to_json()} if self.compile_options else {})},
            "sources": [{"path": s.path, "content": s.content} for s in self.sources],
        }


_SOLUTION = TypeAdapter(Solution)


def parse_solution(data: Any, origin: str = "solution.json") -> Solution:
    if not isinstance(data, dict):
        raise SolutionError(f"{origin}: top level: must be a JSON object")
    try:
        return _SOLUTION.validate_python(data)
    except ValidationError as exc:
        where, message = first_error(exc, {k: f"spec.{k}" for k in SPEC_FIELDS})
        raise SolutionError(f"{origin}: {where}: {message}") from None


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
    if _unsafe(path):
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


def load_entry_point(solution: Solution, directory: Path, library: Path | None = None) -> Callable:
    """Import the entry file from the materialized directory and return the entry function; a C++
    solution's entry comes from its built `library` (kernelbench.core.cpp_build.build)."""
    if solution.is_native:
        from kernelbench.core.cpp_build import import_entry

        if library is None:
            raise SolutionError(f"a {solution.language} solution must be built before it is loaded")
        return import_entry(solution, library)
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
