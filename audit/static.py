"""Static rules: an AST scan of every Python source of a solution, and a token scan of CUDA/C++ text.

Rules look at resolved names, not at text: `import torch as t; t.backends.cuda.matmul.allow_tf32 = True`
resolves to `torch.backends.cuda.matmul.allow_tf32`, while the same words in a comment or a
string do nothing. CUDA/C++ sources, and Python strings that hold CUDA/C++ code (`__global__`,
`#include`), are scanned as code with comments and string literals removed.

The scan runs in the evaluator's parent process, before any of the solution's code runs, so a
solution cannot tamper with it. Rules about state kept across calls (caching, skipped work) live
in audit.caching; rules about what the entry point produces (constant outputs, shapes keyed to
the workloads) in audit.outputs.
"""

from __future__ import annotations

import ast
import builtins
import re
from typing import Iterable

from .caching import scan_cross_call_state
from .cuda_text import scan_cuda_text
from .findings import Finding, unique
from .outputs import constant_output, shape_specialization
from .rules import RULES

__all__ = ["RULES", "scan_solution", "scan_python", "scan_cuda_text"]

PYTHON_SUFFIXES = (".py",)
CUDA_SUFFIXES = (".cu", ".cuh", ".cpp", ".cc", ".cxx", ".c", ".h", ".hpp", ".hxx", ".inl")

# ------------------------------------------------------------------ name tables

SUBPROCESS_MODULES = {"subprocess", "pty", "multiprocessing", "pexpect", "sh", "plumbum", "torch.multiprocessing"}
NETWORK_MODULES = {"socket", "urllib", "http", "requests", "httpx", "aiohttp", "ftplib", "smtplib", "telnetlib",
                   "xmlrpc", "websocket", "websockets", "paramiko", "grpc", "urllib3", "ssl", "socketserver",
                   "poplib", "imaplib", "nntplib", "huggingface_hub", "webbrowser", "asyncssh", "zmq"}
THREAD_MODULES = {"threading", "_thread", "concurrent", "multiprocessing", "asyncio", "torch.multiprocessing"}
EVALUATOR_MODULES = {"kernelbench", "audit"}

SUBPROCESS_CALLS = {"os.system", "os.popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.posix_spawnp",
                    "os.startfile", "os.kill", "os.killpg", "pty.spawn", "asyncio.create_subprocess_exec",
                    "asyncio.create_subprocess_shell"}
SUBPROCESS_PREFIXES = ("os.exec", "os.spawn", "subprocess.", "multiprocessing.", "torch.multiprocessing.")
LIBC_SYMBOLS = {"system", "popen", "fork", "vfork", "execv", "execve", "execvp", "execl", "execlp", "posix_spawn"}
NETWORK_CALLS = ("socket.", "urllib.", "http.", "requests.", "torch.hub.load", "torch.hub.download_url_to_file",
                 "torch.hub.load_state_dict_from_url", "torch.utils.model_zoo.")
THREAD_CALLS = {"torch.jit.fork", "torch.jit._fork", "signal.signal", "signal.setitimer", "signal.alarm"}

INTROSPECTION_CALLS = {
    "sys._getframe", "sys._current_frames", "sys._getframemodulename", "sys.settrace", "sys.setprofile",
    "sys.exc_info", "threading.settrace", "threading.setprofile", "threading.settrace_all_threads",
    "threading.setprofile_all_threads", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "inspect.currentframe", "inspect.stack", "inspect.getouterframes", "inspect.getinnerframes", "inspect.trace",
    "inspect.getframeinfo", "traceback.extract_stack", "traceback.walk_stack", "traceback.format_stack",
    "traceback.print_stack", "traceback.walk_tb", "traceback.StackSummary.extract", "ctypes.string_at",
    "ctypes.wstring_at", "torch.cuda.memory_snapshot", "torch.cuda.memory.memory_snapshot",
    "torch.cuda.memory._snapshot", "torch._C._cuda_memorySnapshot", "torch.cuda.memory._record_memory_history",
    "torch.cuda.list_gpu_processes",
}
# frame and raw-memory attributes; an exception's __traceback__ alone (to print it) is fine
FRAME_WALK_ATTRS = {"f_back", "f_locals", "f_globals", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "ag_frame",
                    "from_address"}

MONKEYPATCH_CALLS = {"unittest.mock.patch", "unittest.mock.patch.object", "unittest.mock.patch.dict",
                     "mock.patch", "mock.patch.object", "torch.utils._python_dispatch._push_mode",
                     "torch._C._push_on_torch_dispatch_stack", "torch._C._push_on_torch_function_stack",
                     "torch.overrides._push_mode", "torch._C._set_torch_function_mode", "sys.addaudithook"}
LIBRARY_REGISTRATION_CALLS = {"torch.library.Library", "torch.library.impl", "torch.library.register_kernel",
                              "torch.library.register_fake", "torch.library.register_autograd",
                              "torch.library.register_torch_dispatch", "torch.library.register_vmap"}
MODE_BASES = {"torch.utils._python_dispatch.TorchDispatchMode", "torch.overrides.TorchFunctionMode",
              "torch.utils._mode_utils.TorchDispatchMode"}
TENSOR_BASES = {"torch.Tensor", "torch._C.TensorBase", "torch._C._TensorBase", "torch.nn.Parameter",
                "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer", "torch.nn.Buffer"}
SUBCLASS_CALLS = {"_make_subclass", "_make_wrapper_subclass", "as_subclass"}

PRECISION_FLAGS = {"allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction",
                   "allow_fp16_accumulation", "fp32_precision"}
STRICT_VALUES = {False, "ieee", "none", "highest"}
PRECISION_CALLS = {"torch.set_float32_matmul_precision", "torch.set_flush_denormal", "torch.set_autocast_enabled",
                   "torch.set_autocast_gpu_dtype", "torch.set_autocast_dtype", "torch.set_autocast_cpu_dtype"}
GLOBAL_STATE_CALLS = {
    "os.putenv", "os.unsetenv", "os.nice", "os.setpriority", "os.sched_setaffinity", "os.chdir", "os.umask",
    "resource.setrlimit", "sys.setswitchinterval", "torch.set_num_threads", "torch.set_num_interop_threads",
    "torch.set_default_dtype", "torch.set_default_device", "torch.set_default_tensor_type",
    "torch.use_deterministic_algorithms", "torch.set_deterministic_debug_mode",
    "torch.cuda.set_per_process_memory_fraction", "torch.cuda.memory.set_per_process_memory_fraction",
    "torch.cuda.set_sync_debug_mode", "torch.cuda.memory._set_allocator_settings", "torch.cuda.set_device",
    "torch.backends.cuda.preferred_blas_library", "torch.backends.cuda.preferred_linalg_library",
    "torch.backends.cuda.preferred_rocm_fa_library", "torch.backends.cuda.enable_flash_sdp",
    "torch.backends.cuda.enable_mem_efficient_sdp", "torch.backends.cuda.enable_math_sdp",
    "torch.backends.cuda.enable_cudnn_sdp", "torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp",
    "torch.set_warn_always",
}
GLOBAL_STATE_PREFIXES = ("torch._C._set_", "pynvml.nvmlDeviceSet", "pynvml.nvmlDeviceReset", "nvidia_smi.",
                         "pynvml.nvmlSet")
ENV_METHODS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}
# config modules exist to be set; a solution tuning torch.compile is not tampering
CONFIG_MODULE = re.compile(r"^torch\.(_inductor|_dynamo|_functorch|fx\.experimental\._config|_export)\.config\b")

FILE_CALLS = {"builtins.open", "io.open", "os.open", "os.fdopen", "torch.load", "torch.save", "numpy.load",
              "numpy.save", "numpy.savez", "numpy.fromfile", "numpy.memmap", "numpy.loadtxt", "pickle.load",
              "pickle.dump", "shelve.open", "sqlite3.connect", "safetensors.torch.load_file",
              "safetensors.torch.save_file", "safetensors.safe_open", "os.listdir", "os.scandir", "os.walk",
              "glob.glob", "shutil.copy", "shutil.copyfile", "pathlib.Path"}
PATH_METHODS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob", "rglob"}
DYNAMIC_CALLS = {"builtins.exec", "builtins.eval", "builtins.compile", "marshal.loads", "types.FunctionType",
                 "types.CodeType", "runpy.run_path", "runpy.run_module", "builtins.breakpoint"}

STREAM_CALLS = {"torch.cuda.Stream", "torch.cuda.stream", "torch.cuda.set_stream", "torch.cuda.StreamContext",
                "torch.cuda.ExternalStream", "torch.Stream", "torch.cuda.streams.Stream", "cupy.cuda.Stream",
                "cupy.cuda.stream.Stream", "torch.cuda.graphs.graph_pool_handle"}
CURRENT_STREAM_CALLS = {"torch.cuda.current_stream", "torch.cuda.default_stream", "torch.cuda.default_stream",
                        "cupy.cuda.get_current_stream", "torch.accelerator.current_stream"}

PERSISTING_IDENT = re.compile(r"access_?policy_?window|persisting_?l2|hit_?ratio|hit_?prop|miss_?prop|"
                              r"access_?property_?persisting|reset_?persisting", re.IGNORECASE)
SET_LIMIT = re.compile(r"(cuda|cu|)(device|ctx)_?set_?limit$", re.IGNORECASE)
SET_STREAM_ATTR = re.compile(r"(stream|kernel_?node|graph_?kernel_?node)_?set_?attribute$", re.IGNORECASE)
PERSISTING_LIMIT_ID, ACCESS_POLICY_WINDOW_ID = 6, 1  # cudaLimitPersistingL2CacheSize, cudaStreamAttributeAccessPolicyWindow

CUDA_LOOKING = re.compile(r"__global__|__device__|#include|extern\s+\"C\"|cudaStream|\bcuda[A-Z]\w+\(")
BUILTIN_NAMES = set(dir(builtins))


# ------------------------------------------------------------------ entry point

def scan_solution(solution, problem=None) -> list[Finding]:
    """Every static finding over the solution's sources (`problem`, when given, enables shape rules)."""
    findings: list[Finding] = []
    trees: dict[str, ast.Module] = {}
    for source in solution.sources:
        if source.path.endswith(PYTHON_SUFFIXES):
            try:
                trees[source.path] = ast.parse(source.content, filename=source.path)
            except (SyntaxError, ValueError):
                continue  # the build reports it (COMPILE_ERROR); nothing to scan
        elif source.path.lower().endswith(CUDA_SUFFIXES):
            findings += scan_cuda_text(source.path, source.content)
    scans = [PythonScan(path, tree) for path, tree in trees.items()]
    for scan in scans:
        findings += scan.run()
    findings += _unsynced_streams(scans)
    findings += scan_cross_call_state(trees, solution)
    entry = trees.get(solution.entry_file)
    if entry is not None:
        findings += constant_output(solution.entry_file, entry, solution.entry_function, solution.destination_passing_style)
    if problem is not None:
        for path, tree in trees.items():
            findings += shape_specialization(path, tree, problem)
    return unique(findings)


def scan_python(path: str, content: str) -> list[Finding]:
    """The per-file rules on one Python source (no cross-file or cross-call rules)."""
    scan = PythonScan(path, ast.parse(content, filename=path))
    return unique(scan.run() + _unsynced_streams([scan]))


# ------------------------------------------------------------------ name resolution

class Resolver:
    """Maps local names to the dotted names they stand for: imports, aliases, getattr with a constant."""

    def __init__(self, tree: ast.Module):
        self.aliases: dict[str, str] = {"__builtins__": "builtins"}
        self.defined: set[str] = set()
        self.imports: list[tuple[int, str]] = []  # (line, module) for every import, static or by constant name
        self.dynamic_imports: list[int] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, ast.arg):
                self.defined.add(node.arg)
            elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                self.defined.add(node.id)
            elif isinstance(node, ast.Import):
                for item in node.names:
                    self.imports.append((node.lineno, item.name))
                    if item.asname:
                        self.aliases[item.asname] = item.name
                    else:
                        top = item.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                self.imports.append((node.lineno, node.module))
                for item in node.names:
                    if item.name != "*":
                        self.aliases[item.asname or item.name] = f"{node.module}.{item.name}"
        for _ in range(3):  # aliases of aliases: `m = torch.backends.cuda.matmul`
            for node in ast.walk(tree):
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    name = self.dotted(node.value)
                    for target in targets:
                        if isinstance(target, ast.Name) and name:
                            self.aliases[target.id] = name
                elif isinstance(node, ast.Call):
                    module = self.import_call(node)
                    if module is not None:
                        self.imports.append((node.lineno, module))
        self.defined -= set(self.aliases)

    def import_call(self, call: ast.Call) -> str | None:
        """`__import__("x")` / `importlib.import_module("x")` -> "x"; a computed name is recorded as dynamic."""
        func = self.dotted(call.func, allow_import_calls=False)
        if func not in ("builtins.__import__", "importlib.import_module", "importlib.__import__"):
            return None
        if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
            return call.args[0].value
        if call.lineno not in self.dynamic_imports:
            self.dynamic_imports.append(call.lineno)
        return None

    def dotted(self, node: ast.AST, allow_import_calls: bool = True) -> str | None:
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in BUILTIN_NAMES and node.id not in self.defined:
                return f"builtins.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value, allow_import_calls)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self.dotted(node.func, allow_import_calls=False)
            if func == "builtins.getattr" and len(node.args) >= 2 and _const_str(node.args[1]) is not None:
                base = self.dotted(node.args[0], allow_import_calls)
                return f"{base}.{node.args[1].value}" if base else None
            if allow_import_calls and func in ("builtins.__import__", "importlib.import_module"):
                name = _const_str(node.args[0]) if node.args else None
                if name:
                    return name.split(".")[0] if func == "builtins.__import__" and not _has_fromlist(node) else name
            return None
        return None

    def is_module_rooted(self, name: str | None) -> bool:
        """Whether a dotted name starts at an imported module (not at a builtin or a local object)."""
        return bool(name) and not name.startswith("builtins.")


def _has_fromlist(call: ast.Call) -> bool:
    return len(call.args) >= 4 or any(k.arg == "fromlist" for k in call.keywords)


def _const_str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _matches(name: str | None, exact: Iterable[str] = (), prefixes: Iterable[str] = ()) -> bool:
    return bool(name) and (name in exact or any(name.startswith(p) for p in prefixes))


def _root_in(module: str, roots: set[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in roots for i in range(1, len(parts) + 1))


# ------------------------------------------------------------------ the per-file scan

class PythonScan(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module):
        self.path, self.tree = path, tree
        self.names = Resolver(tree)
        self.findings: list[Finding] = []
        self.stream_uses: list[int] = []
        self.joins: list[int] = []
        self.current_stream_names: set[str] = set()

    def flag(self, rule: str, node: ast.AST | int, what: str) -> None:
        line = node if isinstance(node, int) else getattr(node, "lineno", 0)
        self.findings.append(Finding(rule, f"{self.path}:{line}: {what}"))

    def run(self) -> list[Finding]:
        for line, module in self.names.imports:
            self.check_import(line, module)
        for line in self.names.dynamic_imports:
            self.flag("dynamic-code", line, "imports a module by computed name")
        self.visit(self.tree)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CUDA_LOOKING.search(node.value):
                for finding in scan_cuda_text(self.path, node.value, first_line=node.lineno):
                    self.findings.append(finding)
        return self.findings

    # -------------------------------------------------------------- imports

    def check_import(self, line: int, module: str) -> None:
        if _root_in(module, EVALUATOR_MODULES) or module.startswith("kb_reference"):
            self.flag("evaluator-import", line, f"imports {module}")
        if _root_in(module, SUBPROCESS_MODULES) or module in ("asyncio.subprocess",):
            self.flag("subprocess", line, f"imports {module}")
        if _root_in(module, NETWORK_MODULES):
            self.flag("network", line, f"imports {module}")
        if _root_in(module, THREAD_MODULES):
            self.flag("background-thread", line, f"imports {module}")

    # -------------------------------------------------------------- definitions

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            name = self.names.dotted(base)
            if name in TENSOR_BASES:
                self.flag("lazy-output", node, f"class {node.name} subclasses {name}")
            elif name in MODE_BASES or (name or "").endswith(("TorchDispatchMode", "TorchFunctionMode")):
                self.flag("monkeypatch", node, f"class {node.name} is a {name.rsplit('.', 1)[-1]} (intercepts torch ops)")
        for item in node.body:
            targets = []
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                targets = [item.name]
            elif isinstance(item, ast.Assign):
                targets = [t.id for t in item.targets if isinstance(t, ast.Name)]
            if "__class__" in targets:
                self.flag("lazy-output", item, f"class {node.name} spoofs __class__ (a proxy posing as a tensor)")
        self.generic_visit(node)

    def visit_FunctionDef(self, node) -> None:
        if node.name in ("__torch_function__", "__torch_dispatch__"):
            self.flag("lazy-output", node, f"defines {node.name} (intercepts operations on its outputs)")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    # -------------------------------------------------------------- assignments

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.check_store(target, node.value, node)
        self.note_current_stream(node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.check_store(node.target, None, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.check_store(node.target, node.value, node)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.check_store(target, None, node, deleting=True)
        self.generic_visit(node)

    def check_store(self, target: ast.AST, value: ast.AST | None, node: ast.AST, deleting: bool = False) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.check_store(element, None, node, deleting)
            return
        if isinstance(target, ast.Attribute):
            base = self.names.dotted(target.value)
            if self.names.is_module_rooted(base) or base == "builtins" or (base or "").startswith("builtins"):
                self.check_attribute_store(f"{base}.{target.attr}", value, node, deleting)
            elif target.attr in ("__code__", "__globals__") and base:
                self.flag("monkeypatch", node, f"replaces {base}.{target.attr}")
        elif isinstance(target, ast.Subscript):
            container = self.names.dotted(target.value)
            if container == "os.environ":
                self.flag("global-state", node, "writes os.environ")
            elif container == "sys.modules":
                self.flag("monkeypatch", node, "replaces an entry of sys.modules")
            elif container == "builtins" or (container or "").startswith("builtins."):
                pass
            elif isinstance(target.value, ast.Attribute) and target.value.attr == "__dict__":
                owner = self.names.dotted(target.value.value)
                if owner:
                    self.flag("monkeypatch", node, f"writes {owner}.__dict__")
            elif isinstance(target.value, ast.Call) and self.names.dotted(target.value.func) == "builtins.vars":
                self.flag("monkeypatch", node, "writes vars(...) of an object")

    def check_attribute_store(self, name: str, value: ast.AST | None, node: ast.AST, deleting: bool) -> None:
        if CONFIG_MODULE.match(name):
            return
        leaf = name.rsplit(".", 1)[-1]
        if name.startswith("torch.backends."):
            if leaf in PRECISION_FLAGS and not _strict(value, deleting):
                self.flag("precision-downgrade", node, f"sets {name} = {_show(value)}")
            else:
                self.flag("global-state", node, f"sets {name}")
        elif name == "os.environ":
            self.flag("global-state", node, "replaces os.environ")
        else:
            verb = "deletes" if deleting else "assigns"
            self.flag("monkeypatch", node, f"{verb} {name}")

    def note_current_stream(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Call) and self.names.dotted(node.value.func) in CURRENT_STREAM_CALLS:
            self.current_stream_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}

    # -------------------------------------------------------------- attribute reads

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):
            name = self.names.dotted(node)
            if name == "sys.modules":
                self.flag("introspection", node, "reads sys.modules")
            elif name == "gc.garbage":
                self.flag("introspection", node, "reads gc.garbage")
            elif node.attr in FRAME_WALK_ATTRS:
                self.flag("introspection", node, f"reads .{node.attr} (stack frames or raw memory)")
        if PERSISTING_IDENT.search(node.attr):
            self.flag("persisting-l2", node, f"uses {node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if PERSISTING_IDENT.search(node.id):
            self.flag("persisting-l2", node, f"uses {node.id}")

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg and PERSISTING_IDENT.search(node.arg):
            self.flag("persisting-l2", node.value, f"passes {node.arg}=")
        self.generic_visit(node)

    # -------------------------------------------------------------- calls

    def visit_Call(self, node: ast.Call) -> None:
        name = self.names.dotted(node.func)
        attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
        self.check_call(node, name, attr)
        self.generic_visit(node)

    def check_call(self, node: ast.Call, name: str | None, attr: str | None) -> None:  # noqa: C901 - a rule table
        args = node.args
        first = args[0] if args else None
        if name in ("builtins.setattr", "builtins.delattr", "object.__setattr__", "builtins.object.__setattr__",
                    "builtins.type.__setattr__") and len(args) >= 2:
            base = self.names.dotted(args[0])
            if self.names.is_module_rooted(base):
                field = _const_str(args[1])
                self.check_attribute_store(f"{base}.{field}" if field else f"{base}.<computed>",
                                           args[2] if len(args) > 2 else None, node, name.endswith("delattr"))
        elif attr in ("update", "__setitem__", "setdefault") and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "__dict__" \
                and self.names.dotted(node.func.value.value):
            self.flag("monkeypatch", node, f"updates {self.names.dotted(node.func.value.value)}.__dict__")
        if name is not None and name.startswith("os.environ.") and attr in ENV_METHODS:
            self.flag("global-state", node, f"calls os.environ.{attr}")
        if name in MONKEYPATCH_CALLS:
            self.flag("monkeypatch", node, f"calls {name}")
        if name in LIBRARY_REGISTRATION_CALLS:
            namespace = (_const_str(first) or "") if first is not None else ""
            if not namespace or namespace.split("::")[0] in ("aten", "prims", "prim", "_c10d_functional"):
                self.flag("monkeypatch", node, f"registers kernels into {namespace or 'a computed namespace'} via {name}")
        if name in PRECISION_CALLS:
            value = _const_str(first) if first is not None else None
            if not (name == "torch.set_float32_matmul_precision" and value == "highest") and not _is_false(first):
                self.flag("precision-downgrade", node, f"calls {name}({_show(first)})")
        if _matches(name, GLOBAL_STATE_CALLS, GLOBAL_STATE_PREFIXES):
            self.flag("global-state", node, f"calls {name}")
        if _mentions(node, "nvidia-smi") and (_matches(name, SUBPROCESS_CALLS, SUBPROCESS_PREFIXES)
                                              or attr in LIBC_SYMBOLS):
            self.flag("global-state", node, "runs nvidia-smi (clocks, power limits)")
        if _matches(name, SUBPROCESS_CALLS, SUBPROCESS_PREFIXES):
            self.flag("subprocess", node, f"calls {name}")
        elif name in ("ctypes.CDLL", "ctypes.PyDLL", "ctypes.cdll.LoadLibrary", "ctypes.util.find_library",
                      "ctypes.CDLL.__init__") and _is_libc(first):
            self.flag("subprocess", node, f"loads libc via {name} (system/fork within reach)")
        elif attr in LIBC_SYMBOLS and not self.names.is_module_rooted(name):
            self.flag("subprocess", node, f"calls .{attr}() on a native library or object")
        if _matches(name, (), NETWORK_CALLS):
            self.flag("network", node, f"calls {name}")
        if name in THREAD_CALLS:
            self.flag("background-thread", node, f"calls {name}")
        if name in INTROSPECTION_CALLS and not (name == "sys.exc_info"):
            self.flag("introspection", node, f"calls {name}")
        if attr in SUBCLASS_CALLS:
            self.flag("lazy-output", node, f"calls .{attr}() (tensor subclass)")
        if name in DYNAMIC_CALLS:
            self.flag("dynamic-code", node, f"calls {name.replace('builtins.', '')}")
        if name in FILE_CALLS or (attr in PATH_METHODS and self._is_path_object(node.func.value)):
            self.check_file_call(node, name or f".{attr}")
        self.check_persisting_call(node, name, attr)
        if name in STREAM_CALLS:
            self.stream_uses.append(node.lineno)
        if self._is_join(node, name, attr):
            self.joins.append(node.lineno)

    def _is_path_object(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Call):
            return self.names.dotted(node.func) in ("pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath")
        return False

    def check_file_call(self, node: ast.Call, name: str) -> None:
        path = node.args[0] if node.args else next((k.value for k in node.keywords
                                                      if k.arg in ("file", "f", "path", "filename", "fname")), None)
        if isinstance(node.func, ast.Attribute) and node.func.attr in PATH_METHODS and name.startswith("."):
            path = node.func.value
        if path is None or _mentions_name(path, "__file__") or _is_bytes_io(path, self.names):
            return
        text = _const_str(path) or ""
        if text.startswith("/proc/"):
            self.flag("introspection", node, f"{name}({text!r}) reads process state")
        else:
            self.flag("file-access", node, f"{name}({_show(path)}) outside the solution's directory")

    def check_persisting_call(self, node: ast.Call, name: str | None, attr: str | None) -> None:
        leaf = attr or (name.rsplit(".", 1)[-1] if name else None) or \
            (node.func.id if isinstance(node.func, ast.Name) else None)
        if not leaf:
            return
        if SET_LIMIT.search(leaf) and node.args and (_int_const(node.args[0]) == PERSISTING_LIMIT_ID):
            self.flag("persisting-l2", node, f"{leaf}(6 = cudaLimitPersistingL2CacheSize, ...)")
        if SET_STREAM_ATTR.search(leaf) and len(node.args) >= 2 and _int_const(node.args[1]) == ACCESS_POLICY_WINDOW_ID:
            self.flag("persisting-l2", node, f"{leaf}(..., 1 = access policy window, ...)")

    def _is_join(self, node: ast.Call, name: str | None, attr: str | None) -> bool:
        """A call that makes the caller's stream (or the host) wait for other streams' work."""
        if name in ("torch.cuda.synchronize", "torch.cuda.current_stream.synchronize", "torch.accelerator.synchronize"):
            return True
        if attr == "synchronize" or (attr == "wait" and not node.args):
            return True
        if attr in ("wait_stream", "wait_event") and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            if isinstance(receiver, ast.Call) and self.names.dotted(receiver.func) in CURRENT_STREAM_CALLS:
                return True
            return isinstance(receiver, ast.Name) and receiver.id in self.current_stream_names
        return False


def _unsynced_streams(scans: list[PythonScan]) -> list[Finding]:
    uses = [(s.path, line) for s in scans for line in s.stream_uses]
    if uses and not any(s.joins for s in scans):
        path, line = uses[0]
        return [Finding("unsynced-stream", f"{path}:{line}: creates or switches CUDA streams but never joins them "
                                           "back (no current_stream().wait_stream/wait_event, event/stream/device "
                                           "synchronize)")]
    return []


# ------------------------------------------------------------------ small AST helpers

def _strict(value: ast.AST | None, deleting: bool) -> bool:
    if deleting or value is None:
        return False
    return isinstance(value, ast.Constant) and value.value in STRICT_VALUES and not (value.value is True)


def _is_false(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _int_const(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _show(node: ast.AST | None, limit: int = 60) -> str:
    if node is None:
        return "..."
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mentions(node: ast.AST, word: str) -> bool:
    """A string constant among the call's arguments (lists included) contains `word`."""
    for arg in list(node.args) + [k.value for k in node.keywords]:
        for sub in ast.walk(arg):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and word in sub.value:
                return True
    return False


def _mentions_name(node: ast.AST, name: str) -> bool:
    return any(isinstance(sub, ast.Name) and sub.id == name for sub in ast.walk(node))


def _is_bytes_io(node: ast.AST, names: Resolver) -> bool:
    return isinstance(node, ast.Call) and names.dotted(node.func) in ("io.BytesIO", "io.StringIO")


def _is_libc(node: ast.AST | None) -> bool:
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return True  # CDLL(None): the process's own symbols, libc included
    text = _const_str(node)
    return text is not None and bool(re.match(r"^(c|libc(\.so.*|-.*)?|msvcrt)$", text.rsplit("/", 1)[-1]))
