"""The runtime guard: what a solution did while it ran inside the evaluator's child process.

    guard = RuntimeGuard("cuda:0")
    guard.install()                      # after torch/triton/kernelbench are imported, before the solution
    with guard.armed():
        entry = load_entry_point(...)    # import-time tricks count too
    ...
    with guard.armed():
        outputs = entry(*inputs)         # every solution call, timed ones included
    guard.check_call(before, inputs, outputs)     # before = InputSnapshot(inputs) taken ahead of the call;
                                                  # right after the call, before any synchronize
    guard.check_state()                  # after each workload
    guard.findings()

install() snapshots the identities of torch/time/triton/kernelbench functions (and the
classes, modules and reference module the evaluator relies on), the backend and precision
flags, the environment, the dispatch-mode stacks, the persisting-L2 set-aside (CUDA) and the
live threads, then registers a process-wide audit hook (audit.hooks). While armed, or in a
thread the solution started, the hook records: processes, sockets and URLs; frame and gc
inspection, tracing; environment writes; patching of watched classes; imports of the
evaluator; file opens outside the solution's directory, the Python installation and the
compilers' caches. check_call compares inputs with a snapshot taken before the call and inspects the outputs;
check_state compares every snapshot with now. This is a tripwire inside the same process, not
a sandbox: a solution that wants to can tamper with it, which the static scan (in the parent)
and the evaluator-level probes (audit.checks) are there to catch.
"""

from __future__ import annotations

import _thread
import os
import sys
import tempfile
import types
from typing import Collection, Mapping

import torch

from . import hooks
from .findings import Finding
from .snapshots import (EVALUATOR_ROOTS, backend_flags, dispatch_state, set_flag, snapshot_identities,
                        watched_namespaces)
from .tensors import InputSnapshot, overlaps

MAX_FINDINGS = 64
PLAIN_SCALARS = (int, float, bool, complex)

SUBPROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                     "os.forkpty", "os.startfile", "pty.spawn", "os.kill", "os.killpg"}
NETWORK_EVENTS = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
                  "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg", "urllib.Request",
                  "http.client.connect", "ftplib.connect", "smtplib.connect", "telnetlib.Telnet.open",
                  "poplib.connect", "imaplib.open", "nntplib.connect", "webbrowser.open"}
INTROSPECTION_EVENTS = {"sys._getframe", "sys._current_frames", "sys._getframemodulename", "gc.get_objects",
                        "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile"}
FRAME_ATTRS = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"}
RAW_MEMORY_EVENTS = {"ctypes.string_at", "ctypes.wstring_at", "ctypes.cdata"}
LIBC_SYMBOLS = {"system", "popen", "fork", "vfork", "execv", "execve", "execvp", "execl", "execlp", "posix_spawn"}
SYSTEM_DIRS = ("/dev/", "/sys/", "/proc/", "/etc/", "/usr/", "/opt/", "/lib/", "/lib64/", "/bin/", "/sbin/",
               "/run/nvidia", "/var/lib/nvidia", "/var/run/nvidia")
SHARED_MEMORY_DIRS = ("/dev/shm/", "/dev/mqueue/", "/run/shm/")  # under /dev, but places to leave results for later


class _Armed:
    """`with guard.armed():` -- reusable and nestable, cheap enough for timed calls."""
    __slots__ = ("guard",)

    def __init__(self, guard: "RuntimeGuard"):
        self.guard = guard

    def __enter__(self):
        self.guard._armed_depth += 1
        return self.guard

    def __exit__(self, *exc) -> None:
        guard = self.guard
        guard._armed_depth -= 1
        if not guard._armed_depth and guard._running_threads:
            guard._threads_outlived_call()


class RuntimeGuard:
    def __init__(self, device: str = "cpu", *, allowed_paths=(), trusted_paths=(), block: bool = False):
        self.device = torch.device(device)
        self.block = block
        self._allowed_extra = [str(p) for p in allowed_paths]
        self._trusted_extra = [str(p) for p in trusted_paths]
        self._armed_depth = 0
        self._armed = _Armed(self)
        self._solution_threads: dict[int, tuple[str]] = {}  # ident -> (origin,) for threads the solution started
        self._running_threads: dict[int, str] = {}
        self._findings: dict[Finding, None] = {}
        self._library_env_keys: set[str] = set()
        self._installed = False
        self.places: hooks.Places | None = None

    # -------------------------------------------------------------- public API

    def install(self) -> None:
        if self._installed:
            return
        hooks.install()  # patches thread start first, so the snapshot below sees the patched functions
        self.places = hooks.Places(self._trusted_extra)
        self._allowed = hooks._dirs([*self.places.site, *self.places.stdlib, sys.prefix, sys.base_prefix,
                                     sys.exec_prefix, sys.base_exec_prefix, *hooks.cache_dirs(),
                                     *self.places.trusted, *self.places.guard, *self._allowed_extra,
                                     os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")])
        self._namespaces = watched_namespaces()
        self._identities = snapshot_identities(self._namespaces)
        self._modules = {name: module for name, module in sys.modules.items()
                         if isinstance(module, types.ModuleType)}
        self._watched_classes = {id(obj) for _, obj in self._namespaces if isinstance(obj, type)}
        self._watched_modules = {getattr(obj, "__name__", "") for _, obj in self._namespaces
                                 if isinstance(obj, types.ModuleType)}
        self._flags = backend_flags(self.device)
        self._environ = dict(os.environ)
        self._cwd = os.getcwd()
        self._tempdir = hooks._normcase(hooks._abspath(tempfile.gettempdir()))
        self._dispatch = dispatch_state()
        self._thread_idents = set(sys._current_frames())
        self._l2_limit = self._persisting_l2()
        self._stream = self._window = None
        if self.device.type == "cuda" and torch.cuda.is_available():
            from .gpu import access_policy_window

            self._stream, self._window = torch.cuda.current_stream(), access_policy_window()
        self._installed = True
        hooks.GUARDS.append(self)

    def uninstall(self) -> None:
        """Stop watching (the process-wide hook stays, idle). For tests and in-process harnesses."""
        if self in hooks.GUARDS:
            hooks.GUARDS.remove(self)

    def armed(self) -> _Armed:
        return self._armed

    def allow_path(self, path) -> None:
        """Let the solution open files under `path` (its materialized directory, a data root)."""
        self._allowed = self._allowed + hooks._dirs([path])

    def findings(self) -> list[Finding]:
        return list(self._findings)

    def check_call(self, inputs_before: InputSnapshot, inputs_after: list, outputs: list, *,
                   aliases: Mapping[int, Collection[int]] | None = None) -> None:
        """After one solution call: outputs' types and readiness, inputs unchanged, no aliasing but the
        reference's (`aliases`: output position -> the input positions the reference's output shares
        memory with, audit.effects), no solution code still running. Call it right after the call
        returns, before any synchronize: on CUDA it snapshots the outputs on the current stream and
        then synchronizes itself."""
        plain = []
        for i, value in enumerate(outputs):
            if value is None or type(value) in PLAIN_SCALARS or type(value) is torch.Tensor:
                plain.append(value)
                continue
            self.record("lazy-output", f"output {i} is a {type(value).__module__}.{type(value).__qualname__}, "
                                       "not a plain torch.Tensor")
        if self.device.type == "cuda" and torch.cuda.is_available():
            self._check_streams(plain)
        for i in inputs_before.changed(inputs_after):
            self.record("input-mutation", f"input {i} was modified in place by the solution")
        aliases = aliases or {}
        for i, out in enumerate(plain):
            if not isinstance(out, torch.Tensor):
                continue
            for j, value in enumerate(inputs_after):
                if type(value) is torch.Tensor and j not in aliases.get(i, ()) and overlaps(out, value):
                    self.record("output-aliases-input", f"output {i} shares memory with input {j}, "
                                                        "the reference's does not")
        self._check_live_threads()

    def check_state(self) -> None:
        """Compare the install-time snapshots with now: patched functions, flags, environment..."""
        self._check_identities()
        flags = backend_flags(self.device)
        for name, (before, rule) in self._flags.items():
            now = flags.get(name, (None, rule))[0]
            if now != before:
                self.record(rule, f"{name} changed from {before!r} to {now!r}")
        changed = sorted(k for k in set(self._environ) | set(os.environ)
                         if self._environ.get(k) != os.environ.get(k) and k not in self._library_env_keys)
        if changed:
            self.record("global-state", f"environment changed: {', '.join(changed[:8])}")
        if os.getcwd() != self._cwd:
            self.record("global-state", f"working directory changed to {os.getcwd()}")
        dispatch = dispatch_state()
        for key, before in self._dispatch.items():
            now = dispatch.get(key)
            if key == "aten impls":
                added = sorted(now - before)
                if added:
                    self.record("monkeypatch", f"aten kernels re-registered from Python: {', '.join(added[:5])}")
            elif now != before:
                rule = "introspection" if key in ("trace", "profile") else "monkeypatch"
                self.record(rule, f"{key} changed from {before!r} to {now!r}")
        for name, module in self._modules.items():
            if name in self._watched_modules and sys.modules.get(name) is not module:
                self.record("monkeypatch", f"sys.modules[{name!r}] was replaced")
        self._check_solution_namespaces()
        self._check_l2()

    def restore(self) -> None:
        """Undo what can be undone of the solution's changes: patched functions, flags, environment,
        working directory, tracing, dispatch modes. For in-process audits (tests, `kb audit`); the
        evaluator's child process simply exits instead."""
        for namespace, name, old, code in self._identities.values():
            current = vars(namespace).get(name, _MISSING)
            if current is not old:
                if not self._library_wrapper(current, old):
                    (type.__setattr__ if isinstance(namespace, type) else setattr)(namespace, name, old)
            elif code is not None and current.__code__ is not code:
                current.__code__ = code
        for name, module in self._modules.items():
            if name in self._watched_modules and sys.modules.get(name) is not module:
                sys.modules[name] = module
        flags = backend_flags(self.device)
        for name, (before, _) in self._flags.items():
            if flags.get(name, (before,))[0] != before:
                set_flag(name, before)
        if dict(os.environ) != self._environ:
            os.environ.clear()
            os.environ.update(self._environ)
        if os.getcwd() != self._cwd:
            os.chdir(self._cwd)
        try:
            if sys.gettrace() is not self._dispatch["trace"]:
                sys.settrace(self._dispatch["trace"])
            if sys.getprofile() is not self._dispatch["profile"]:
                sys.setprofile(self._dispatch["profile"])
            while torch._C._len_torch_dispatch_stack() > self._dispatch["torch dispatch mode stack"]:
                torch._C._pop_torch_dispatch_stack()
            while torch._C._len_torch_function_stack() > self._dispatch["torch function mode stack"]:
                torch._C._pop_torch_function_stack()
        except (AttributeError, KeyError, TypeError):
            pass

    # -------------------------------------------------------------- recording

    def record(self, rule: str, evidence: str) -> None:
        if len(self._findings) < MAX_FINDINGS:
            self._findings.setdefault(Finding(rule, evidence), None)

    def _on_event(self, event: str, args: tuple, frame, ident: int) -> None:  # noqa: C901 - an event table
        places = self.places
        threads = self._solution_threads
        if event == "open":
            self._on_open(args, frame)
        elif event in SUBPROCESS_EVENTS or event in NETWORK_EVENTS:
            origin = places.solution_origin(frame, ident, threads)
            rule = "subprocess" if event in SUBPROCESS_EVENTS else "network"
            if origin:
                self.record(rule, f"{origin}: {event} {_show_args(args)}")
                if self.block:
                    raise hooks.Blocked(f"{event} refused by the kernelbench audit")
        elif event in INTROSPECTION_EVENTS:
            origin = places.introspection_origin(frame, ident, threads)
            if origin:
                self.record("introspection", f"{origin}: {event}")
        elif event == "object.__getattr__" and len(args) >= 2 and args[1] in FRAME_ATTRS:
            origin = places.immediate_origin(frame)
            if origin:
                self.record("introspection", f"{origin}: reads .{args[1]} of a {type(args[0]).__name__}")
        elif event in RAW_MEMORY_EVENTS:
            origin = places.immediate_origin(frame)
            if origin:
                self.record("introspection", f"{origin}: {event} (reads raw memory)")
        elif event in ("os.putenv", "os.unsetenv"):
            key = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            origin = places.solution_origin(frame, ident, threads)
            if origin:
                self.record("global-state", f"{origin}: {event} {key}")
            else:
                self._library_env_keys.add(key)
        elif event == "os.chdir":
            origin = places.solution_origin(frame, ident, threads)
            if origin:
                self.record("global-state", f"{origin}: os.chdir {_show_args(args)}")
        elif event == "sys.addaudithook":
            origin = places.solution_origin(frame, ident, threads)
            if origin:
                self.record("monkeypatch", f"{origin}: installs an audit hook")
        elif event in ("object.__setattr__", "object.__delattr__") and args:
            self._on_setattr(event, args, frame, ident)
        elif event == "import" and args and isinstance(args[0], str) and args[0].startswith(EVALUATOR_ROOTS):
            origin = places.solution_origin(frame, ident, threads)
            if origin:
                self.record("evaluator-import", f"{origin}: imports {args[0]}")
        elif event == "ctypes.dlopen" and args:
            name = args[0]
            if name is None or "libc." in os.path.basename(str(name)):
                origin = places.solution_origin(frame, ident, threads)
                if origin:
                    self.record("subprocess", f"{origin}: loads libc through ctypes")
        elif event == "ctypes.dlsym" and len(args) >= 2 and str(args[1]) in LIBC_SYMBOLS:
            origin = places.solution_origin(frame, ident, threads)
            if origin:
                self.record("subprocess", f"{origin}: looks up {args[1]} in a native library")
        elif event == "tempfile.mkdtemp" and args:
            self._allowed = self._allowed + hooks._dirs([args[0]])
        elif event == "tempfile.mkstemp" and args:  # the file and its siblings by suffix (Triton: x.ptx -> x.ptx.o)
            self._allowed = self._allowed + (hooks._normcase(hooks._abspath(os.fsdecode(args[0]))),)

    def _on_open(self, args: tuple, frame) -> None:
        path = args[0] if args else None
        if isinstance(path, int) or path is None:
            return
        if frame is not None and self.places.kind(frame.f_code.co_filename) == "guard":
            return  # the guard's own reads (libcudart, /proc)
        path = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
        full = hooks._normcase(hooks._abspath(path))
        if full.startswith("/proc/"):
            parts = full.split("/")
            if len(parts) > 2 and (parts[-1] == "mem" or (parts[2].isdigit() and int(parts[2]) != os.getpid())):
                self.record("introspection", f"opens {full} (another process or raw memory)")
            return
        shared = full.startswith(SHARED_MEMORY_DIRS)
        if full == self._tempdir:
            return  # the temp directory itself (compilers sync it), not a file in it
        if not shared and ((full + os.sep).startswith(self._allowed) or full.startswith(SYSTEM_DIRS)
                           or self._in_solution_dir(full, frame) or self._is_loaded_source(full)
                           or _is_package_metadata(full)):
            return
        origin = self.places.stack_has_solution(frame) or "during a solution call"
        self.record("file-access", f"{origin}: opens {full}")

    def _is_loaded_source(self, full: str) -> bool:
        """The source of code already loaded (linecache, inspect and dynamo read it), or an import probe."""
        if full in self.places.trusted_files or "__editable__" in full or full.endswith("__path_hook__"):
            return True
        return any(isinstance(getattr(m, "__file__", None), str) and hooks._normcase(hooks._abspath(m.__file__)) == full
                   for m in list(sys.modules.values()))

    def _in_solution_dir(self, full: str, frame) -> bool:
        """Files beside the solution's own code (its sources, a .cu file it reads, its __pycache__):
        the directories of solution modules and of solution frames on the stack."""
        files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
        while frame is not None:
            files.append(frame.f_code.co_filename)
            frame = frame.f_back
        for file in files:
            if isinstance(file, str) and not file.startswith("<") and self.places.kind(file) == "solution":
                directory = hooks._normcase(os.path.dirname(hooks._abspath(file))) + os.sep
                if full.startswith(directory):
                    self._allowed = self._allowed + (directory,)
                    return True
        return False

    def _on_setattr(self, event: str, args: tuple, frame, ident: int) -> None:
        target, name = args[0], args[1] if len(args) > 1 else "?"
        watched = id(target) in self._watched_classes or (
            isinstance(target, type) and str(getattr(target, "__module__", "")).startswith(("torch", "triton")))
        if isinstance(target, types.FunctionType) and name in ("__code__", "__defaults__", "__kwdefaults__"):
            watched = str(getattr(target, "__module__", "")).startswith(("torch", "triton", *EVALUATOR_ROOTS))
        if not watched:
            return
        origin = self.places.solution_origin(frame, ident, self._solution_threads)
        if origin:
            verb = "sets" if event == "object.__setattr__" else "deletes"
            self.record("monkeypatch", f"{origin}: {verb} {getattr(target, '__qualname__', target)!s}.{name}")

    # -------------------------------------------------------------- threads

    def _thread_started(self, ident: int, origin: str) -> None:
        self._solution_threads[ident] = (origin,)
        self._running_threads[ident] = origin

    def _thread_finished(self, ident: int) -> None:
        self._solution_threads.pop(ident, None)
        self._running_threads.pop(ident, None)

    def _threads_outlived_call(self) -> None:
        for ident, origin in list(self._running_threads.items()):
            self.record("background-thread", f"a thread started at {origin} was still running when the call returned")

    def _check_live_threads(self) -> None:
        frames = sys._current_frames()
        # Never bind our own frame to a local: frame -> its locals -> frame is a cycle that keeps the
        # caller's frames, and the inputs in them, alive until the cyclic GC happens to run.
        frames.pop(_thread.get_ident(), None)
        for ident, frame in frames.items():
            if ident in self._thread_idents:
                continue
            where = self.places.stack_has_solution(frame)
            if where:
                self.record("background-thread", f"thread {ident} is running solution code ({where}) after the "
                                                 "call returned")

    # -------------------------------------------------------------- snapshots

    def _check_identities(self) -> None:
        for key, (namespace, name, old, old_code) in self._identities.items():
            current = vars(namespace).get(name, _MISSING)
            if current is _MISSING:
                self.record("monkeypatch", f"{key} was deleted")
            elif current is not old:
                if not self._library_wrapper(current, old):
                    self.record("monkeypatch", f"{key} was replaced by {_describe(current)}")
            elif old_code is not None and getattr(current, "__code__", None) is not old_code:
                self.record("monkeypatch", f"{key}.__code__ was replaced")

    def _library_wrapper(self, current, old) -> bool:
        """torch itself wraps a few functions lazily (dynamo's manual_seed): allowed when the new
        object wraps the old one and its code is a library's."""
        if getattr(current, "__wrapped__", None) is not old:
            return False
        code = getattr(current, "__code__", None)
        return code is not None and self.places.kind(code.co_filename) in ("library", "stdlib")

    def _check_solution_namespaces(self) -> None:
        """Module-level references from the solution's modules to the evaluator (cached imports raise no event)."""
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if self._modules.get(name) is module or not isinstance(file, str) or self.places.kind(file) != "solution":
                continue
            for attr, value in list(vars(module).items()):
                owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
                if isinstance(owner, str) and owner.startswith(EVALUATOR_ROOTS):
                    self.record("evaluator-import", f"{os.path.basename(file)}: {attr} refers to {owner}")

    def _check_streams(self, outputs: list) -> None:
        """CUDA: work still pending on the solution's streams once the caller's stream drained, outputs that
        change after the call returned, the current stream left switched, a persisting-L2 window or set-aside."""
        from .gpu import access_policy_window, pending_streams, unsettled_outputs

        for stream in pending_streams(self._solution_streams()):
            self.record("unsynced-stream", f"stream {stream.cuda_stream:#x} still had work when the caller's stream "
                                           "had finished (not joined back)")
        late = unsettled_outputs(outputs)
        if late:
            self.record("unsynced-stream", f"outputs {late} changed after the call returned (work on a stream not "
                                           "joined to the caller's)")
        if torch.cuda.current_stream() != self._stream:
            self.record("unsynced-stream", "the call returned with another stream current than the caller's")
        window = access_policy_window()
        if window and window != self._window:
            self.record("persisting-l2", f"the current stream has an access-policy window of {window[1]} bytes "
                                         f"(hit ratio {window[2]:.2f})")
        self._check_l2()

    def _solution_streams(self) -> list:
        """CUDA streams held by the solution's modules (module globals, or in a list/tuple/dict there)."""
        streams = []
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if self._modules.get(name) is module or not isinstance(file, str) or self.places.kind(file) != "solution":
                continue
            for value in list(vars(module).values()):
                items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
                streams += [v for v in items if isinstance(v, torch.cuda.Stream)]
        return streams

    def _persisting_l2(self) -> int | None:
        if self.device.type != "cuda" or not torch.cuda.is_available():
            return None
        from .gpu import persisting_l2_limit

        return persisting_l2_limit()

    def _check_l2(self) -> None:
        if self._l2_limit is None:
            return
        now = self._persisting_l2()
        if now is not None and now != self._l2_limit:
            self.record("persisting-l2", f"the persisting-L2 set-aside changed from {self._l2_limit} to {now} bytes")


_MISSING = object()


def _is_package_metadata(full: str) -> bool:
    """Installed packages' metadata (importlib.metadata reads every *.dist-info / *.egg-info on
    sys.path for entry points, e.g. under torch.compile): read-only, not a place for results."""
    return any(part.endswith((".dist-info", ".egg-info")) for part in full.split(os.sep)[:-1])


def _describe(value) -> str:
    code = getattr(value, "__code__", None)
    where = f" ({os.path.basename(code.co_filename)}:{code.co_firstlineno})" if code is not None else ""
    return f"{type(value).__name__} {getattr(value, '__qualname__', '')}{where}".strip()


def _show_args(args: tuple, limit: int = 120) -> str:
    text = " ".join(repr(a) for a in args[:2])
    return text if len(text) <= limit else text[: limit - 3] + "..."
