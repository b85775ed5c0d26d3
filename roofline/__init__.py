"""Analytic speed-of-light bounds: hardware profiles, counting from the reference, T_SOL.

    from roofline import sol_for_problem
    sols = sol_for_problem(load_problem("tasks235/L1/001_llama3_8b_rmsnorm"), hardware="H200")
"""

from .counter import Count, CountError, count_workload
from .hardware import DATASHEETS, HardwareProfile, ProfileError, load_profile, save_profile
from .model import (WorkloadSOL, bound, prefetch_counts, published_sol, sol_for_problem, sol_for_workload,
                    sol_ms_by_uuid)

__all__ = ["Count", "CountError", "count_workload", "DATASHEETS", "HardwareProfile", "ProfileError",
           "load_profile", "save_profile", "WorkloadSOL", "bound", "prefetch_counts", "published_sol", "sol_for_problem",
           "sol_for_workload", "sol_ms_by_uuid"]
