"""Every template family, registered by importing its module here (discover by import)."""

from kernelbench.generate.families import attention, conv, cuda, fused, gemm, rowwise, scaled_gemm  # noqa: F401  (registers the families)
from kernelbench.generate.family import FAMILIES

# The registry's order is a preference: without a search (budget 0) a workload's first guess comes from the first
# family proposing for it (kernelbench.generate.template_source). scaled_gemm takes only a proven scaled fp8
# product, which the fused family would run as an fp32 matmul of dequantized copies: it goes first.
FAMILIES.update({name: FAMILIES.pop(name) for name in [n for n in FAMILIES if n != "scaled_gemm"]})
