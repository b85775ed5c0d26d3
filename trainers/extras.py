"""The optional libraries of the `train` extra, loaded when first needed, so `kb` itself starts
without them and a missing one is a one-line message, not a traceback."""

from __future__ import annotations

import importlib

from kernelbench.core.errors import KernelBenchError

EXTRA = "train"


def require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise KernelBenchError(f"{module} is not installed: pip install 'kernelbench[{EXTRA}]'") from None
