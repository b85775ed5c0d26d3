"""Run work in a child process with wall-clock limits; turn crashes and hangs into statuses.

The child is a fresh interpreter (`python -m <module> FD`): it reads its request as JSON on
stdin and writes one JSON line per finished item to the pipe FD, so nothing a solution prints
can be mistaken for a result. If it dies (segfault, abort, CUDA fault) or stays silent past the
limit, the item in progress gets RUNTIME_ERROR or TIMEOUT with the tail of the child's output,
the child is killed, and a fresh child takes the remaining items.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from kernelbench.core import statuses

LOG_TAIL_CHARS = 3000
_PR_SET_PDEATHSIG = 1
_LIVE: set["_Child"] = set()  # children of this process, so an interrupted batch can stop them all


def kill_all() -> None:
    """Kill every child still running (Ctrl-C of a batch): their items are simply not recorded."""
    for child in list(_LIVE):
        child.kill()


def run_items(module: str, request: dict, items: list[str], *, build_timeout_s: float, item_timeout_s: float,
              on_result: Callable[[str, dict], None], env: dict | None = None) -> None:
    """Feed `items` to children running `python -m module`, request {**request, "workloads": items}.

    The child first builds what the items share (imports the solution) and says {"kind": "built"}
    within build_timeout_s; then every item gets item_timeout_s of its own, the first included.
    Messages: {"kind": "result", "uuid": item, "restart": bool, ...} for one item (restart: the child
    exits after it, the next items go to a fresh child), or {"kind": "fatal", "status", "log"}
    which ends every remaining item with that status. A child that dies or hangs while building
    ends every remaining item too: the next child would build the same thing.
    """
    pending = list(items)
    while pending:
        with _Child(module, {**request, "workloads": list(pending)}, env) as child:
            message = child.receive(build_timeout_s)
            if message is None or message["kind"] != "built":
                outcome = _build_failure(child, message, build_timeout_s)
                for item in pending:
                    on_result(item, outcome)
                return
            while pending:
                message = child.receive(item_timeout_s)
                if message is None:  # the child died or hung on pending[0]
                    on_result(pending.pop(0), child.death_report(item_timeout_s))
                    break
                if message["kind"] == "fatal":
                    for item in pending:
                        on_result(item, {"status": message["status"], "log": message["log"]})
                    pending.clear()
                    break
                pending.remove(message["uuid"])
                on_result(message["uuid"], message)
                if message.get("restart"):  # the child stops after this item (e.g. a CUDA fault): start afresh
                    break


def _build_failure(child: "_Child", message: dict | None, build_timeout_s: float) -> dict[str, Any]:
    if message is None:
        report = child.death_report(build_timeout_s)
        report["log"] = "while building: " + report["log"]
        return report
    if message["kind"] == "fatal":
        return {"status": message["status"], "log": message["log"]}
    return {"status": statuses.RUNTIME_ERROR, "log": f"the child sent {message['kind']!r} before building"}


class _Child:
    def __init__(self, module: str, request: dict, env: dict | None):
        read_fd, write_fd = os.pipe()
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, str(write_fd)], stdin=subprocess.PIPE, stdout=self.log,
            stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=env, start_new_session=True,
            preexec_fn=_die_with_parent)
        os.close(write_fd)
        self.reader = os.fdopen(read_fd, "rb")
        self.buffer = b""
        self.timed_out = False
        _LIVE.add(self)
        self.process.stdin.write(json.dumps(request).encode())
        self.process.stdin.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        _LIVE.discard(self)
        self.reader.close()
        self.log.close()

    def receive(self, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                self.kill()
                return None
            ready, _, _ = select.select([self.reader], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self.reader.fileno(), 1 << 20)
                if not chunk:  # EOF: the child is gone
                    return None
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            try:  # the whole session: a solution's own subprocesses go too
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def output_tail(self) -> str:
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - LOG_TAIL_CHARS))
        return self.log.read().decode(errors="replace")

    def death_report(self, limit: float) -> dict[str, Any]:
        if self.timed_out:
            return {"status": statuses.TIMEOUT, "log": f"no result within {limit:g} s; the process was killed"}
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code is not None and code < 0:
            try:
                reason = f"the process died with {signal.Signals(-code).name}"
            except ValueError:
                reason = f"the process died with signal {-code}"
        else:
            reason = f"the process exited with code {code} before reporting"
        tail = self.output_tail().strip()
        return {"status": statuses.RUNTIME_ERROR, "log": reason + (f"\n--- output tail ---\n{tail}" if tail else "")}


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies (a kill -9 of a batch leaves no orphans)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def serve(handler: Callable[[dict, Callable[[dict], None]], None]) -> None:
    """The child side: read the request from stdin, give handler a `send` that writes to the pipe."""
    pipe = os.fdopen(int(sys.argv[1]), "wb", buffering=0)
    request = json.loads(sys.stdin.read())
    write, dumps = pipe.write, json.dumps  # bound before any solution code runs: patching them changes nothing

    def send(message: dict) -> None:
        write(dumps(message, default=str).encode() + b"\n")

    try:
        handler(request, send)
    finally:
        pipe.close()
