"""kernelbench: score GPU kernels by their distance to the hardware's speed of light."""

import os

__version__ = "0.1.0"

if os.environ.get("TRITON_INTERPRET") == "1":   # Triton's CPU interpreter: its casts round as the GPU's do
    from kernelbench.core.interpreter_casts import faithful_interpreter_casts

    faithful_interpreter_casts()
