"""Token rules over CUDA/C++ code (sources, and CUDA code held in Python strings), with comments
and string literals blanked first so that only code counts; line numbers are kept."""

from __future__ import annotations

import re

from .findings import Finding

_CUDA_RULES = [
    ("persisting-l2", re.compile(r"\b(accessPolicyWindow|cudaLimitPersistingL2CacheSize|CU_LIMIT_PERSISTING_L2_CACHE_SIZE|"
                                 r"cudaAccessPropertyPersisting|CU_ACCESS_PROPERTY_PERSISTING|hitRatio|hitProp|"
                                 r"cudaCtxResetPersistingL2Cache|cuCtxResetPersistingL2Cache|"
                                 r"cudaStreamAttributeAccessPolicyWindow|CU_STREAM_ATTRIBUTE_ACCESS_POLICY_WINDOW)\b")),
    ("subprocess", re.compile(r"(?<![\w.>])(system|popen|fork|vfork|execv|execve|execvp|execl|execlp|posix_spawn)\s*\(")),
    ("network", re.compile(r"(?<![\w.:>])(socket|connect|gethostbyname|getaddrinfo)\s*\(|#\s*include\s*<(sys/socket|netdb|arpa/inet)\.h>")),
    ("global-state", re.compile(r"(?<![\w.:>])(setenv|putenv|unsetenv)\s*\(|\bnvmlDeviceSet\w+|\bnvidia-smi\b")),
    ("background-thread", re.compile(r"\bstd::(thread|async|jthread)\b|\bpthread_create\s*\(")),
    ("introspection", re.compile(r"/proc/(self|\d+)/mem\b|\bprocess_vm_readv\b|\bdlsym\s*\(|"
                                 r"\b(PyEval_GetFrame|PyThreadState_GetFrame|PyEval_GetLocals|PyEval_GetGlobals|"
                                 r"PyFrame_\w+|PyGC_\w+|PyObject_GC_\w+)\b")),
    # C++ solutions: the catalogue's attacks spelled in C++ (the Python spellings are audit.static's)
    ("unsynced-stream", re.compile(r"\b(cudaStreamCreate\w*|cuStreamCreate\w*|getStreamFromPool|"
                                   r"getStreamFromExternal|cudaStreamBeginCapture\w*|cudaGraphLaunch)\s*\(")),
    ("file-access", re.compile(r"(?<![\w.:>])(fopen|freopen|open|openat|creat|mmap|shm_open|opendir)\s*\(|"
                               r"\bstd::(i|o)?fstream\b|\bstd::filesystem\b|\btorch::(load|save|pickle_load)\s*\(")),
    ("dynamic-code", re.compile(r"\b(PyRun_\w+|Py_CompileString\w*|PyImport_\w+|dlopen)\s*\(|"
                                r"\b(py|pybind11)::(module_?::import|exec|eval\w*)\b")),
    ("monkeypatch", re.compile(r"\b(PyObject_SetAttr\w*|PyDict_SetItem\w*|PyModule_AddObject\w*)\s*\(|"
                               r"\b(py|pybind11)::(setattr|delattr)\s*\(|"
                               # defining a CUDA API function interposes it (timers, synchronization)
                               r"^[^;{}()#\n]*\b(cuda|cu)(EventRecord|EventElapsedTime|EventSynchronize|EventQuery|DeviceSynchronize|"
                               r"StreamSynchronize|CtxSynchronize|LaunchKernel|LaunchKernelEx)(_v2)?\s*\([^;{}]*\)\s*\{",
                               re.MULTILINE)),
    ("precision-downgrade", re.compile(r"\bset(AllowTF32\w*|AllowFP16Reduction\w*|AllowBF16Reduction\w*|"
                                       r"Float32MatmulPrecision|AllowFP16Accumulation\w*)\s*\(|"
                                       r"\bCUBLAS_TF32_TENSOR_OP_MATH\b|\bCUBLAS_COMPUTE_32F_FAST_\w+\b")),
    ("global-state", re.compile(r"\b(cudaDeviceSetCacheConfig|cudaDeviceSetSharedMemConfig|cudaSetDeviceFlags|"
                                r"cudaDeviceReset|cudaSetDevice|cuCtxSetCacheConfig|"
                                r"set_num_threads|setNumThreads|at::set_num_threads)\s*\(")),
]
_COMMENTS_AND_STRINGS = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.DOTALL)


def scan_cuda_text(path: str, text: str, first_line: int = 1) -> list[Finding]:
    """Token rules over CUDA/C++ code with comments and string literals blanked (line numbers kept)."""
    def blank(match: re.Match) -> str:
        kept = match.group(0)
        if kept.startswith('"') and ("nvidia-smi" in kept or "/proc/" in kept):
            return kept  # these strings are the evidence
        return re.sub(r"[^\n]", " ", kept)

    code = _COMMENTS_AND_STRINGS.sub(blank, text)
    findings = []
    for rule, pattern in _CUDA_RULES:
        for match in pattern.finditer(code):
            line = first_line + code.count("\n", 0, match.start())
            findings.append(Finding(rule, f"{path}:{line}: {match.group(0).strip()}"))
    return findings
