"""A candidate: one Python file with `train(ctx)` and `build_model(config)`.

    train(ctx) -> None                  trains within ctx's clock; ctx.watch(model, config) names the result
    build_model(config) -> nn.Module    rebuilds that model (untrained) from the JSON config, for the evaluator

The model maps token ids, an int64 tensor (B, T), to logits (B, T, V) with V >= ctx.vocab_size;
it must be causal (logits at t depend on tokens <= t only), compute the same function in train
and eval mode (no dropout), and keep no state between calls: the evaluator checks all three.

Both children import the file from a private copy of the text that was scanned, under a module
name of its own, so what runs is exactly what was audited.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kernelbench.core.errors import KernelBenchError

MODULE_NAME = "kb_train_candidate"
FILE_NAME = "candidate.py"


class CandidateError(KernelBenchError):
    """The candidate file cannot be read or lacks its entry points."""


@dataclass(frozen=True)
class Candidate:
    name: str       # the file's stem
    source: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @classmethod
    def read(cls, path: str | Path) -> "Candidate":
        path = Path(path)
        try:
            return cls(path.stem, path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise CandidateError(f"{path}: cannot read the candidate: {exc}") from None

    def materialize(self) -> Path:
        """A fresh private directory holding the candidate as candidate.py."""
        directory = Path(tempfile.mkdtemp(prefix="kb_train_candidate_")).resolve()
        os.chmod(directory, 0o700)
        (directory / FILE_NAME).write_text(self.source)
        return directory


def import_candidate(directory: str | Path):
    """Import candidate.py from its private directory (in a child process)."""
    path = Path(directory) / FILE_NAME
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def entry_point(module, name: str):
    function = getattr(module, name, None)
    if not callable(function):
        raise CandidateError(f"the candidate defines no callable {name}()")
    return function


def remove(directory: str | Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
