"""Every template family, registered by importing its module here (discover by import)."""

from kernelbench.generate.families import attention, conv, cuda, fused, gemm, grouped_gemm, rowwise  # noqa: F401  (registers the families)
