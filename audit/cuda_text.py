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
    ("introspection", re.compile(r"/proc/(self|\d+)/mem\b|\bprocess_vm_readv\b|\bdlsym\s*\(")),
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
