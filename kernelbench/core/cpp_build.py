"""Build C++/CUDA solutions (cuda_cpp, cutlass, cudnn, cublas) the way SOL-ExecBench does, once per content.

The official format: the sources define `PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)` exposing the entry
function; every C/C++/CUDA source is compiled into one torch extension with
`torch.utils.cpp_extension.load` (the solution's directory on the include path, `compile_options`
flags, defaults -O3 --use_fast_math for nvcc and -lcuda for the linker), and the entry point's
function name is looked up in the module.

Here the build is the harness's work, not the solution's: it runs before the audit guard is armed,
outside any timing, in a throwaway process (`python -m kernelbench.core.cpp_build DIR`, since
`load` imports what it built), into `<build_root>/<content hash>`; a second evaluation of the same
sources finds the library there and only imports it (under the guard). Builds of the same hash
racing in parallel children each build in their own staging directory; the first rename wins.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from kernelbench.core.errors import SolutionError
from kernelbench.core.solution import Solution, materialize

COMPILED_SUFFIXES = (".cu", ".cpp", ".cc", ".cxx", ".c")
LOG_TAIL_CHARS = 6000


def _child_environment() -> dict[str, str]:
    """This process's environment, with the tree this module comes from first on the path: the child
    imports it by name, also where the package runs from a checkout without being installed."""
    tree = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)}


def default_build_root() -> Path:
    return Path(tempfile.gettempdir()) / f"kernelbench_cpp_{os.getuid()}"


def extension_name(solution: Solution) -> str:
    """Distinct per content, so two solutions loaded by one screening child never share a module name."""
    return f"kb_ext_{solution.content_hash[:16]}"


def compiled_sources(solution: Solution) -> list[str]:
    return [s.path for s in solution.sources if s.path.lower().endswith(COMPILED_SUFFIXES)]


def build_if_native(solution: Solution, build_root: str | os.PathLike | None = None) -> Path | None:
    return build(solution, build_root) if solution.is_native else None


def build(solution: Solution, build_root: str | os.PathLike | None = None, *, timeout_s: float | None = None) -> Path:
    """The shared library of a C++ solution, compiled unless this content was built before. Raises
    SolutionError with the compiler's output when the build fails."""
    import torch

    sources = compiled_sources(solution)
    if not sources:
        raise SolutionError(f"no C/C++/CUDA source ({', '.join(COMPILED_SUFFIXES)}) among the sources to compile")
    if any(p.lower().endswith(".cu") for p in sources) and torch.version.cuda is None:
        raise SolutionError(f"{solution.language} sources (.cu) need a CUDA build of torch and nvcc; "
                            f"this torch ({torch.__version__}) is CPU-only")
    root = Path(build_root or default_build_root())
    root.mkdir(parents=True, exist_ok=True)
    name = extension_name(solution)
    final = root / solution.content_hash[:32]
    library = final / f"{name}.so"
    if library.exists():
        return library
    staging = Path(tempfile.mkdtemp(prefix=f"{final.name}.build.", dir=root))
    try:
        options = solution.build_options
        ld_flags = list(options.ld_flags)
        if torch.version.cuda is None:  # no driver library to link against on a CPU-only build (C++ sources only)
            ld_flags = [f for f in ld_flags if f != "-lcuda"]
        source_dir = materialize(solution, staging / "src")
        job = {"name": name, "sources": [str(source_dir / p) for p in sources],
               "include": [str(source_dir)], "cflags": list(options.cflags),
               "cuda_cflags": list(options.cuda_cflags), "ld_flags": ld_flags}
        (staging / "job.json").write_text(json.dumps(job))
        try:
            done = subprocess.run([sys.executable, "-m", __name__, str(staging)], capture_output=True, text=True,
                                  timeout=timeout_s, cwd=staging, env=_child_environment())
        except subprocess.TimeoutExpired:
            raise SolutionError(f"compiling took longer than {timeout_s:.0f} s") from None
        built = staging / f"{name}.so"
        if done.returncode != 0 or not built.exists():
            # the compiler's messages; torch's Python traceback after them says nothing more
            output = (done.stdout + done.stderr).split("Traceback (most recent call last)")[0].strip()
            raise SolutionError(f"compilation failed (exit status {done.returncode}):\n{output[-LOG_TAIL_CHARS:]}")
        try:
            staging.rename(final)
        except OSError:  # a parallel build of the same content finished first: use it
            if not library.exists():
                raise
        return library
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_entry(solution: Solution, library: Path):
    """The entry function of a built extension (importing it runs the library's initializers)."""
    name = extension_name(solution)
    module = sys.modules.get(name)
    if not isinstance(module, ModuleType):
        spec = importlib.util.spec_from_file_location(name, library)
        if spec is None or spec.loader is None:
            raise SolutionError(f"{library} cannot be imported as a Python extension")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    function = getattr(module, solution.entry_function, None)
    if not callable(function):
        raise SolutionError(f"the compiled module exposes no {solution.entry_function!r} "
                            f"(define it with m.def(\"{solution.entry_function}\", ...) in "
                            f"PYBIND11_MODULE(TORCH_EXTENSION_NAME, m))")
    return function


def _compile(staging: Path) -> None:
    """The throwaway build process: torch's JIT extension build into the staging directory."""
    import torch.utils.cpp_extension as extension

    job = json.loads((staging / "job.json").read_text())
    extension.load(name=job["name"], sources=job["sources"], extra_cflags=job["cflags"],
                   extra_cuda_cflags=job["cuda_cflags"], extra_ldflags=job["ld_flags"],
                   extra_include_paths=job["include"], build_directory=str(staging), verbose=True)


if __name__ == "__main__":
    _compile(Path(sys.argv[1]))
