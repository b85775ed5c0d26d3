"""Every template family, registered by importing its module here (discover by import)."""

from kernelbench.generate.families import (  # noqa: F401  (registers the families)
    attention,
    attention_backward,
    conv,
    cuda,
    fused,
    gemm,
    grouped_gemm,
    paged_attention,
    rowwise,
    scaled_gemm,
)
from kernelbench.generate.family import FAMILIES

# The registry's order is a preference: without a search (budget 0) a workload's first guess comes from the first
# family proposing for it (kernelbench.generate.template_source). scaled_gemm and grouped_gemm take only a proven
# scaled fp8 product or a proven loop of per-expert products, which the fused family would run as library calls
# (an fp32 matmul of dequantized copies; one matmul per expert behind data guards): they go first. So does
# paged_attention, which takes only a proven paged decode (the fused family's program of it syncs and gathers), and
# attention_backward, which takes only a proven attention backward (the fused family's materializes [S, S]).
PREFERRED = ("scaled_gemm", "grouped_gemm", "paged_attention", "attention_backward")
FAMILIES.update({name: FAMILIES.pop(name) for name in [n for n in FAMILIES if n not in PREFERRED]})
