"""An OpenAI-compatible chat client with a per-task budget of calls and tokens.

Everything arrives in `LLMConfig`; the CLI fills it from its options or OPENAI_BASE_URL and
OPENAI_API_KEY. Base URL and key are always handed to the SDK explicitly, so the SDK's own fallback
to those variables never applies below the CLI. Retries with exponential backoff on 429, 5xx,
timeouts and dropped connections are the SDK's (it honours Retry-After); a call that still fails
comes back as a `Reply` with an error, never as an exception: the loop goes on without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kernelbench.core.errors import KernelBenchError

try:
    import openai
except ImportError:   # the `llm` extra is optional: everything else works without it
    openai = None

DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "none"            # the SDK insists on a key; local endpoints accept any
CHARS_PER_TOKEN = 4        # estimate when a server reports no usage


@dataclass(frozen=True)
class LLMConfig:
    model: str
    base_url: str = DEFAULT_BASE_URL
    api_key: str = ""
    timeout_s: float = 120.0             # one HTTP request
    max_retries: int = 3                 # per call, on 429 / 5xx / timeout / connection errors
    rounds: int = 4                      # propose -> screen -> feed back
    max_calls: int = 8                   # per task
    max_tokens: int = 200_000            # per task, prompt and completion together
    max_completion_tokens: int = 8192    # per call (less when the task's budget has less left)
    temperature: float | None = None     # None: the endpoint's default


@dataclass
class Reply:
    text: str | None                     # None when the call failed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0                    # HTTP requests made, retries included
    error: str | None = None
    status_code: int | None = None       # the HTTP status of a failed call, when there was one

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def hopeless(self) -> bool:
        """A refusal that asking again will not change (bad key, unknown model, prompt too long)."""
        return self.status_code is not None and 400 <= self.status_code < 500 and self.status_code not in (408, 409, 429)


@dataclass
class Budget:
    max_calls: int
    max_tokens: int
    calls: int = 0
    tokens: int = 0

    def spent(self) -> str | None:
        """Why no further call may be made, or None."""
        if self.calls >= self.max_calls:
            return f"call budget spent ({self.calls} of {self.max_calls} calls)"
        if self.tokens >= self.max_tokens:
            return f"token budget spent ({self.tokens} of {self.max_tokens} tokens)"
        return None

    def charge(self, reply: Reply) -> None:
        self.calls += 1
        self.tokens += reply.tokens


class ChatClient:
    def __init__(self, config: LLMConfig):
        require_sdk()
        self.config = config
        self.budget = Budget(config.max_calls, config.max_tokens)
        self._requests = 0
        self._sdk = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or NO_KEY,
                                  timeout=config.timeout_s, max_retries=config.max_retries,
                                  http_client=openai.DefaultHttpxClient(event_hooks={"request": [self._count]}))

    def _count(self, request) -> None:
        self._requests += 1

    def close(self) -> None:
        self._sdk.close()

    def chat(self, messages: list[dict]) -> Reply:
        """One chat completion, charged to the task's budget (the caller checks `budget.spent()` first)."""
        self._requests = 0
        started = time.monotonic()
        options = {} if self.config.temperature is None else {"temperature": self.config.temperature}
        limit = max(1, min(self.config.max_completion_tokens, self.budget.max_tokens - self.budget.tokens))
        try:
            completion = self._sdk.chat.completions.create(model=self.config.model, messages=messages,
                                                           max_tokens=limit, **options)
            text = _content(completion)
            usage = completion.usage
        except Exception as exc:  # noqa: BLE001 - whatever the endpoint does, the task goes on without this call
            reply = Reply(None, 0, 0, time.monotonic() - started, self._requests, _describe(exc),
                          getattr(exc, "status_code", None))
            self.budget.charge(reply)
            return reply
        prompt_tokens = usage.prompt_tokens if usage and usage.prompt_tokens is not None else _estimate(messages)
        completion_tokens = (usage.completion_tokens if usage and usage.completion_tokens is not None
                             else len(text) // CHARS_PER_TOKEN)
        reply = Reply(text, prompt_tokens, completion_tokens, time.monotonic() - started, self._requests)
        self.budget.charge(reply)
        return reply


def require_sdk() -> None:
    if openai is None:
        raise KernelBenchError("--llm needs the openai package: pip install 'kernelbench[llm]'")


def _content(completion) -> str:
    choices = getattr(completion, "choices", None)
    if not choices:
        raise ValueError("the response has no choices")
    content = choices[0].message.content
    if not content:
        raise ValueError(f"the answer is empty (finish_reason {choices[0].finish_reason!r})")
    return content


def _estimate(messages: list[dict]) -> int:
    return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:499] + "…"
