"""Process-wide plumbing of the runtime guard: one audit hook (sys.addaudithook), tracking of
threads the solution starts, and deciding whose code raised an event.

An audit hook cannot be removed, so it is installed once per process and hands events to the
guards registered at the time; with no guard armed and no solution thread running it returns
at once. Every reference the hook needs is bound here at import, so a solution that later
replaces `sys._getframe` or `threading.get_ident` does not blind it.

Whose code? Code present when the guard was installed (the evaluator, the tests), the
standard library, site-packages, the kernelbench and audit packages and the compilers' caches
are "library"; everything loaded later from elsewhere (the solution's directory, code it
wrote) is "solution". An event counts against the solution when the first frame outside the
standard library that led to it is the solution's (so torch.compile spawning the C++ compiler,
or Triton writing its cache, is not the solution's doing), or when it happens in a thread the
solution started.
"""

from __future__ import annotations

import _thread
import getpass
import os
import site
import sys
import sysconfig
import tempfile
import threading

_getframe = sys._getframe
_get_ident = _thread.get_ident
_normcase, _abspath, _sep = os.path.normcase, os.path.abspath, os.sep

GUARDS: list = []               # registered RuntimeGuard objects
_in_hook: set[int] = set()      # threads currently inside the hook (reentrancy)
_installed = False

# stdlib modules whose purpose is to read frames: calls through them count as the caller's
INSPECTING_STDLIB = {"inspect.py", "traceback.py", "pdb.py", "bdb.py", "trace.py", "cProfile.py", "profile.py"}


class Blocked(PermissionError):
    """Raised from the hook to refuse an operation when the guard blocks (block=True)."""


def install() -> None:
    global _installed
    if _installed:
        return
    _patch_thread_start()
    sys.addaudithook(_hook)
    _installed = True


def _hook(event: str, args: tuple) -> None:
    if not GUARDS:
        return
    ident = _get_ident()
    if ident in _in_hook:
        return
    watching = [g for g in GUARDS if g._armed_depth or ident in g._solution_threads]
    if not watching:
        return
    _in_hook.add(ident)
    try:
        frame = _getframe(1)
        for guard in watching:
            guard._on_event(event, args, frame, ident)
    except Blocked:
        raise
    except Exception:  # the hook must never break the operation it audits
        pass
    finally:
        _in_hook.discard(ident)


# ------------------------------------------------------------------ threads

def _patch_thread_start() -> None:
    originals: dict[int, object] = {}
    for owner, name in ((_thread, "start_new_thread"), (_thread, "start_joinable_thread"),
                        (threading, "_start_new_thread"), (threading, "_start_joinable_thread")):
        original = getattr(owner, name, None)
        if original is None or getattr(original, "_kb_audit", False):
            continue
        wrapper = originals.setdefault(id(original), _start_wrapper(original))
        setattr(owner, name, wrapper)


def _start_wrapper(original):
    def start(function, *args, **kwargs):
        ident = _get_ident()
        origins = []
        if GUARDS and ident not in _in_hook:
            _in_hook.add(ident)
            try:
                frame = _getframe(1)
                for guard in GUARDS:
                    if guard._armed_depth or ident in guard._solution_threads:
                        origin = guard.places.solution_origin(frame, ident, guard._solution_threads)
                        if origin:
                            origins.append((guard, origin))
            finally:
                _in_hook.discard(ident)
        if origins:
            function = _tracked(function, origins)
        return original(function, *args, **kwargs)

    start._kb_audit = True
    start.__wrapped__ = original
    return start


def _tracked(function, origins):
    def run(*args, **kwargs):
        ident = _get_ident()
        for guard, origin in origins:
            guard._thread_started(ident, origin)
        try:
            return function(*args, **kwargs)
        finally:
            for guard, _ in origins:
                guard._thread_finished(ident)

    return run


# ------------------------------------------------------------------ whose code

def _dirs(paths) -> tuple[str, ...]:
    out = []
    for path in paths:
        if path:
            path = _normcase(_abspath(str(path))).rstrip(_sep) + _sep
            if path not in out:
                out.append(path)
    return tuple(out)


def cache_dirs() -> list[str]:
    """Where torch.compile and Triton keep generated code and caches."""
    user = "unknown"
    try:
        user = getpass.getuser()
    except Exception:
        pass
    home = os.path.expanduser("~")
    return [os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(tempfile.gettempdir(), f"torchinductor_{user}"),
            os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.environ.get("TRITON_HOME") or home, ".triton"),
            os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
            os.environ.get("CUDA_CACHE_PATH") or os.path.join(home, ".nv")]


class Places:
    """Classifies code files as guard / stdlib / library / generated / solution."""

    def __init__(self, trusted_paths=()):
        paths = sysconfig.get_paths()
        site_dirs = [paths.get("purelib"), paths.get("platlib")]
        try:
            site_dirs += site.getsitepackages() + [site.getusersitepackages()]
        except Exception:
            pass
        self.guard = _dirs([os.path.dirname(__file__)])
        self.site = _dirs(site_dirs)
        self.stdlib = _dirs([paths.get("stdlib"), paths.get("platstdlib")])
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.trusted = _dirs([os.path.join(here, "kernelbench"), *cache_dirs(), *trusted_paths])
        # code already loaded when the guard is installed is the harness's, wherever it lives
        self.trusted_files = {_normcase(_abspath(m.__file__)) for m in list(sys.modules.values())
                              if isinstance(getattr(m, "__file__", None), str)}
        self._kinds: dict[str, str] = {}

    def kind(self, filename: str) -> str:
        known = self._kinds.get(filename)
        if known is not None:
            return known
        if filename.startswith("<frozen"):
            kind = "stdlib"
        elif filename.startswith("<"):
            kind = "generated"
        else:
            path = _normcase(_abspath(filename))
            if path.startswith(self.guard):
                kind = "guard"
            elif path.startswith(self.site) or path.startswith(self.trusted):
                kind = "library"
            elif path.startswith(self.stdlib):
                kind = "stdlib"
            elif path in self.trusted_files:
                kind = "library"
            else:
                kind = "solution"
        self._kinds[filename] = kind
        return kind

    def solution_origin(self, frame, ident: int, solution_threads: dict) -> str | None:
        """'file:line' of the solution code responsible for the event at `frame`, or None."""
        while frame is not None:
            kind = self.kind(frame.f_code.co_filename)
            if kind == "solution":
                return _where(frame)
            if kind == "library":
                return None
            frame = frame.f_back
        origin = solution_threads.get(ident)
        return f"a thread started at {origin[0]}" if origin else None

    def introspection_origin(self, frame, ident: int, solution_threads: dict) -> str | None:
        """Like solution_origin, but a frame read by a benign stdlib module (logging, warnings,
        namedtuple...) is that module's business; inspect/traceback act for their caller."""
        frame = self._skip(frame, ("guard", "generated"))
        if frame is None:
            return None
        kind = self.kind(frame.f_code.co_filename)
        if kind == "stdlib" and os.path.basename(frame.f_code.co_filename) not in INSPECTING_STDLIB:
            return None
        return self.solution_origin(frame, ident, solution_threads)

    def immediate_origin(self, frame) -> str | None:
        """The solution's code if it raised the event itself (not through any library)."""
        frame = self._skip(frame, ("guard", "generated"))
        return _where(frame) if frame is not None and self.kind(frame.f_code.co_filename) == "solution" else None

    def _skip(self, frame, kinds):
        while frame is not None and self.kind(frame.f_code.co_filename) in kinds:
            frame = frame.f_back
        return frame

    def stack_has_solution(self, frame) -> str | None:
        while frame is not None:
            if self.kind(frame.f_code.co_filename) == "solution":
                return _where(frame)
            frame = frame.f_back
        return None


def _where(frame) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
