"""A stub OpenAI chat-completions endpoint on loopback, answering from a script (tests only).

    with StubLLM([Status(429), Answer("```python\\n...```"), Hang(5)]) as stub:
        LLMConfig(model="stub", base_url=stub.base_url, ...)

Each request takes the next step of the script; once it is used up, every request gets `then`.
Every request's body and headers are kept in `stub.requests`, in arrival order.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    text: str
    usage: bool = True


@dataclass(frozen=True)
class Status:
    code: int
    retry_after_ms: int = 10     # the SDK waits this long before it retries


@dataclass(frozen=True)
class Hang:
    seconds: float


@dataclass(frozen=True)
class Raw:
    body: bytes


def fenced(code: str, language: str = "python") -> str:
    return f"Here is a faster version.\n\n```{language}\n{code.strip()}\n```\n"


class StubLLM:
    def __init__(self, script: list, then=Answer("I have nothing more to add.")):
        self.script, self.then = list(script), then
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "StubLLM":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_step(self, request: dict):
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.then

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                step = stub.next_step({"path": self.path, "body": body,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                if isinstance(step, Hang):
                    time.sleep(step.seconds)
                    return
                if isinstance(step, Status):
                    self.send(step.code, b'{"error": {"message": "stub says no", "type": "stub"}}',
                              {"retry-after-ms": str(step.retry_after_ms)})
                    return
                if isinstance(step, Raw):
                    self.send(200, step.body)
                    return
                reply = {"id": "stub-1", "object": "chat.completion", "created": int(time.time()),
                         "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": step.text}}]}
                if step.usage:
                    prompt = sum(len(m["content"]) for m in body["messages"]) // 4
                    reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": len(step.text) // 4,
                                      "total_tokens": prompt + len(step.text) // 4}
                self.send(200, json.dumps(reply).encode())

            def send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client gave up (timeout) before the answer came

        return Handler
