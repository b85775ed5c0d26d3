"""The harness's child processes: spawn, talk over two private pipes, account for CPU, kill.

Like kernelbench.eval.sandbox, a child is a fresh interpreter in its own session that dies with
its parent; unlike it, a training child is a long conversation with a clock: the parent sends
requests (a JSON line, then an optional binary payload of `payload_bytes`), the child answers
with JSON lines, each carrying the nonce the parent gave it. A line without that nonce, or one
that is not JSON, was written by someone else (the candidate) and is reported as forged.

The child's stdout and stderr go to a log file, so nothing a candidate prints can be read as a
message. The parent reads the child's CPU time per thread and per process of its session from
/proc, where the child cannot tamper with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOG_TAIL_CHARS = 4000
_PR_SET_PDEATHSIG = 1
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
FORGED = "forged"


class Child:
    """Parent side: `python -c <bootstrap> READ_FD WRITE_FD` running `module.main(channel)`."""

    def __init__(self, module: str, *, cwd: str | Path):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self.nonce = secrets.token_hex(16)
        self.log = tempfile.TemporaryFile()
        bootstrap = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); import {module} as m; "
                     f"from trainers.process import Channel; m.main(Channel(int(sys.argv[1]), int(sys.argv[2])))")
        self.process = subprocess.Popen(
            [sys.executable, "-c", bootstrap, str(to_child_r), str(from_child_w)], stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(to_child_r, from_child_w), cwd=str(cwd),
            start_new_session=True, preexec_fn=_die_with_parent)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = self.process.pid
        self._buffer = b""
        self.timed_out = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, message: dict, payload: bytes = b"") -> None:
        header = json.dumps({**message, "nonce": self.nonce, "payload_bytes": len(payload)}).encode() + b"\n"
        try:
            _write_all(self._to_child, header + payload)
        except (BrokenPipeError, OSError):
            pass  # the child is gone; receive() reports how

    def receive(self, timeout_s: float) -> dict | None:
        """The next message; None when the child died or sent nothing within timeout_s. A line
        without this child's nonce comes back as {"kind": "forged", "line": ...}."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                return None
            ready, _, _ = select.select([self._from_child], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    return None
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return {"kind": FORGED, "line": line[:200].decode(errors="replace")}
        if not isinstance(message, dict) or message.pop("nonce", None) != self.nonce:
            return {"kind": FORGED, "line": line[:200].decode(errors="replace")}
        return message

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            try:  # the whole session: the candidate's own subprocesses go too
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def close(self) -> None:
        self.kill()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()

    def exit_reason(self) -> str:
        code = self.process.poll()
        if code is None:
            return "the process is still running"
        if code < 0:
            try:
                return f"the process died with {signal.Signals(-code).name}"
            except ValueError:
                return f"the process died with signal {-code}"
        return f"the process exited with code {code}"

    def output_tail(self) -> str:
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - LOG_TAIL_CHARS))
        return self.log.read().decode(errors="replace").strip()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) of each thread of the child ("thread TID") and of every other
        process in its session ("process PID"); the main thread is "thread PID"."""
        out = {}
        for tid in _listdir(f"/proc/{self.pid}/task"):
            seconds = _cpu_seconds(f"/proc/{self.pid}/task/{tid}/stat")
            if seconds is not None:
                out[f"thread {tid}"] = seconds
        for pid in session_processes(self.pid):
            if pid != self.pid:
                seconds = _cpu_seconds(f"/proc/{pid}/stat")
                if seconds is not None:
                    out[f"process {pid}"] = seconds
        return out


class Channel:
    """Child side of the two pipes. Every function it uses is bound when it is made, before any
    candidate code runs, so patching json or os later changes nothing here."""

    def __init__(self, read_fd: int, write_fd: int):
        self._read_fd, self._write_fd = read_fd, write_fd
        self._read, self._write, self._dumps, self._loads = os.read, os.write, json.dumps, json.loads
        self._buffer = b""
        self._nonce = None

    def receive(self) -> tuple[dict, bytes]:
        """The next request and its payload (blocks)."""
        while b"\n" not in self._buffer:
            chunk = self._read(self._read_fd, 1 << 20)
            if not chunk:
                raise EOFError("the parent closed the pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = self._loads(line)
        self._nonce = message.pop("nonce")
        size = message.pop("payload_bytes", 0)
        while len(self._buffer) < size:
            chunk = self._read(self._read_fd, max(1 << 20, size - len(self._buffer)))
            if not chunk:
                raise EOFError("the parent closed the pipe")
            self._buffer += chunk
        payload, self._buffer = self._buffer[:size], self._buffer[size:]
        return message, payload

    def send(self, message: dict) -> None:
        data = self._dumps({**message, "nonce": self._nonce}, default=str).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[self._write(self._write_fd, view):]


def session_processes(session: int) -> list[int]:
    """Processes whose session id is `session` (a child and whatever it spawned without setsid)."""
    found = []
    for entry in _listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(f"/proc/{entry}/stat")
            if fields is not None and int(fields[3]) == session:
                found.append(int(entry))
    return found


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (zombies included: they are reaped by the caller)."""
    found = set()
    for entry in _listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(f"/proc/{entry}/stat")
            if fields is not None and int(fields[1]) == pid:
                found.add(int(entry))
    return found


def kill_and_reap(pid: int, session: int) -> bool:
    """Kill and reap a child of this process; True when it was alive outside `session` (it escaped)."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    escaped = fields is not None and fields[0] != "Z" and int(fields[3]) != session
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return escaped


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children, not init's (Linux): a daemon a
    candidate double-forks to outlive its session then shows up in children_of(os.getpid())."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


def _stat_fields(path: str) -> list[str] | None:
    """Fields of /proc/.../stat after the command name: [state, ppid, pgrp, session, ..., utime (11), stime (12)]."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _cpu_seconds(path: str) -> float | None:
    fields = _stat_fields(path)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
