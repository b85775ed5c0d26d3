"""The client against a stub OpenAI endpoint on loopback: retries, failures as values, the budget, and
base URL and key taken only from its configuration."""

from __future__ import annotations

import pytest

from kernelbench.generate.llm.client import ChatClient, LLMConfig
from llm_stub import Answer, Hang, Raw, Status, StubLLM

pytest.importorskip("openai")
HELLO = [{"role": "user", "content": "hello " * 40}]


def client(stub: StubLLM, **overrides) -> ChatClient:
    values = dict(model="stub-model", base_url=stub.base_url, api_key="given-key", timeout_s=1.0, max_retries=2)
    return ChatClient(LLMConfig(**{**values, **overrides}))


def test_429_and_5xx_are_retried_then_answered(monkeypatch):
    # the library never falls back to the SDK's environment variables: only the CLI reads them
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "key-from-the-environment")
    with StubLLM([Status(429), Status(503), Answer("fine")]) as stub:
        reply = client(stub).chat(HELLO)
    assert reply.text == "fine" and reply.error is None and reply.attempts == 3
    assert reply.prompt_tokens > 0 and reply.completion_tokens == 1
    assert all(r["headers"]["authorization"] == "Bearer given-key" for r in stub.requests)
    assert stub.requests[-1]["body"]["model"] == "stub-model" and stub.requests[-1]["body"]["messages"] == HELLO


@pytest.mark.parametrize("script, error", [
    ([Status(429)] * 3, "RateLimitError"),
    ([Hang(3)] * 3, "APITimeoutError"),
    ([Raw(b"this is not json")], "JSONDecodeError"),
    ([Raw(b'{"id": "x", "choices": []}')], "no choices"),
])
def test_a_call_that_keeps_failing_is_a_reply_with_its_error(script, error):
    with StubLLM(script) as stub:
        chat = client(stub)
        reply = chat.chat(HELLO)
    assert reply.text is None and error in reply.error and not reply.hopeless
    assert reply.attempts == len(script) == len(stub.requests)
    assert chat.budget.calls == 1


def test_a_refusal_is_not_asked_again():
    with StubLLM([Status(401)]) as stub:
        reply = client(stub).chat(HELLO)
    assert reply.hopeless and reply.attempts == 1 and reply.status_code == 401


def test_the_budget_counts_calls_and_tokens():
    with StubLLM([], then=Answer("x" * 400)) as stub:
        chat = client(stub, max_calls=2)
        chat.chat(HELLO), chat.chat(HELLO)
        assert chat.budget.spent() == "call budget spent (2 of 2 calls)"
        tight = client(stub, max_tokens=150, max_completion_tokens=1000)
        tight.chat(HELLO)
        # the answer may use only what is left of the task's tokens
        assert stub.requests[-1]["body"]["max_tokens"] == 150
        assert tight.budget.tokens == 60 + 100 and "token budget spent" in tight.budget.spent()
    with StubLLM([Answer("no usage reported", usage=False)]) as stub:
        estimated = client(stub)
        reply = estimated.chat(HELLO)
    assert reply.prompt_tokens == len(HELLO[0]["content"]) // 4 and estimated.budget.tokens == reply.tokens
