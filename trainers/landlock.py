"""Deny this process (and what it spawns) reading files under some directories: Linux Landlock.

The audit hook sees reads made through Python; a read made in C (torch.from_file, a compiled
extension, ctypes) raises no audit event. Landlock is enforced by the kernel: once restricted,
no code in the process or its children can open those files, whatever it calls.

Landlock only allows, so "everything but D" is spelled as allow rules for every entry of every
directory on the way from / to each denied path, except those on the way. Only reading files is
restricted (listing directories, writing and executing are not), so imports keep working.
Limits: threads that already existed keep their freedom (restrict before starting any); entries
created later directly in a directory on the way are unreadable (so the compilers' cache
directories are created first); unavailable on kernels without Landlock (then `deny_reads`
returns False and only the audit hook watches).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446   # the same on x86_64 and arm64
_RULE_PATH_BENEATH = 1
_ACCESS_READ_FILE = 1 << 2
_PR_SET_NO_NEW_PRIVS = 38


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1)) >= 1


def allowed_entries(denied: list[Path]) -> list[Path]:
    """The paths to allow: every entry of every directory on the way to a denied path, except the
    denied paths and the directories on the way (which are opened up entry by entry instead)."""
    denied = {Path(os.path.realpath(p)) for p in denied}
    on_the_way = {parent for path in denied for parent in path.parents}
    allowed = []
    for directory in sorted(on_the_way):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            entry = directory / name
            real = Path(os.path.realpath(entry))
            if entry in denied or entry in on_the_way or real in on_the_way or any(
                    real == d or d in real.parents for d in denied):
                continue
            allowed.append(entry)
    return allowed


def deny_reads(denied: list[Path]) -> bool:
    """Restrict this process: files under `denied` can no longer be opened for reading. Returns
    False (and changes nothing) where Landlock is not available."""
    if not denied or not available():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    handled = ctypes.c_uint64(_ACCESS_READ_FILE)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(handled), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        for entry in allowed_entries(denied):
            try:
                fd = os.open(entry, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneath(_ACCESS_READ_FILE, fd)
                libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)
