"""The runtime guard of the training and evaluation children: audit.runtime.RuntimeGuard, plus
the training benchmarks' own tripwires.

- Protected paths (the data directory, the evaluator's code, the token cache): any open of a
  file under them while the candidate runs is `val-data-access`, whatever code opens it and
  through whatever symlink (paths are resolved). Source lines read for a traceback are exempt.
- The trainers package is watched like kernelbench and audit: patching its functions is
  `monkeypatch`, importing it from candidate code is `evaluator-import`.
- Threads the candidate started that still run when `train` returns are `work-after-deadline`.

Findings outside the training rules (backend flags, TF32, environment writes: a training script's
own business) are dropped by `training_findings`.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

from audit import hooks
from audit.runtime import RuntimeGuard
from audit.snapshots import snapshot_identities

from .rules import RULES

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_NAME = __name__.split(".")[0]
TRACEBACK_READERS = ("linecache.py", "tokenize.py", "traceback.py")


class TrainingGuard(RuntimeGuard):
    def __init__(self, device: str, *, protected=(), allowed_paths=()):
        super().__init__(device, allowed_paths=allowed_paths, trusted_paths=[PACKAGE_DIR])
        self.protected = hooks._dirs(os.path.realpath(p) for p in protected)

    def install(self) -> None:
        super().install()
        namespaces = []
        for name, module in list(sys.modules.items()):
            if isinstance(module, types.ModuleType) and (name == PACKAGE_NAME or name.startswith(PACKAGE_NAME + ".")):
                namespaces.append((name, module))
                namespaces += [(f"{name}.{value.__qualname__}", value) for value in list(vars(module).values())
                               if isinstance(value, type) and getattr(value, "__module__", None) == name]
        self._identities.update(snapshot_identities(namespaces))
        self._watched_classes |= {id(value) for _, value in namespaces if isinstance(value, type)}
        self._watched_modules |= {label for label, value in namespaces if isinstance(value, types.ModuleType)}

    def training_findings(self) -> list:
        return [f for f in self.findings() if f.rule in RULES]

    def _on_event(self, event: str, args: tuple, frame, ident: int) -> None:
        if event == "open" and args and self._opens_protected(args[0], frame):
            return
        if event == "import" and args and isinstance(args[0], str) and args[0].split(".")[0] == PACKAGE_NAME:
            origin = self.places.solution_origin(frame, ident, self._solution_threads)
            if origin:
                self.record("evaluator-import", f"{origin}: imports {args[0]}")
        super()._on_event(event, args, frame, ident)

    def _opens_protected(self, path, frame) -> bool:
        if isinstance(path, int) or path is None:
            return False
        path = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
        full = hooks._normcase(os.path.realpath(path))
        if not (full + os.sep).startswith(self.protected):
            return False
        opener = self.places._skip(frame, ("guard",))
        if full.endswith(".py") and opener is not None and os.path.basename(opener.f_code.co_filename) in TRACEBACK_READERS:
            return True  # source lines for a traceback through the harness
        origin = self.places.stack_has_solution(frame) or "during the candidate's run"
        self.record("val-data-access", f"{origin}: opens {full}")
        return True

    def _threads_outlived_call(self) -> None:
        for origin in list(self._running_threads.values()):
            self.record("work-after-deadline", f"a thread started at {origin} was still running when train() returned")
