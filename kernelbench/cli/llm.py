"""`kb llm log`: every exchange of the LLM research loop with its outcome; and `--llm MODEL` for `kb optimize`.

The endpoint's base URL and key come from the options or from OPENAI_BASE_URL and OPENAI_API_KEY, read
here at the CLI edge (click's envvar) and handed down in an LLMConfig.
"""

from __future__ import annotations

import datetime
import functools
import json

import click
from rich.table import Table

from kernelbench.core.store import Store
from kernelbench.generate.llm import LLMConfig
from kernelbench.generate.llm.client import DEFAULT_BASE_URL, require_sdk
from kernelbench.generate.llm.log import exchanges

from .common import console, error_summary


@click.group("llm")
def llm() -> None:
    """The LLM proposer (kb optimize TASK --llm MODEL) and its log."""


@llm.command("log")
@click.option("--task", default=None, help="Only this task's exchanges.")
@click.option("--run", "run_id", default=None, help="Only this run's exchanges (an optimize run id).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the last N exchanges.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per exchange, prompt and response included.")
@click.pass_obj
def log_command(settings, task, run_id, limit, as_json):
    """Every prompt and response: model, tokens, latency, the candidate it became and its fate."""
    rows = exchanges(Store(settings.db, read_only=True), task, run_id, limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"LLM exchanges ({len(rows)})")
    for column in ("id", "when", "task", "model", "round", "tokens in/out", "latency (s)", "requests", "stage",
                   "outcome", "candidate", "why"):
        table.add_column(column, overflow="fold")
    for row in rows:
        outcome = f"[bold green]CHOSEN[/bold green] ({row['status']})" if row["chosen"] else row["status"]
        table.add_row(str(row["id"]), datetime.datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M:%S"),
                      row["definition"], row["model"], str(row["round"]),
                      f"{row['prompt_tokens'] or 0}/{row['completion_tokens'] or 0}", f"{row['latency_s'] or 0:.2f}",
                      str(row["attempts"] or 0), row["stage"], outcome, (row["candidate_hash"] or "-")[:12], why(row))
    console.print(table)


def why(row: dict) -> str:
    """One line: the call's or the parser's error, the audit's rules, the screening error, or the score."""
    detail = row["detail"] or {}
    if row["stage"] in ("call", "parse"):
        return row["error"] or ""
    if "repeat_of_round" in detail:
        return f"the same solution as round {detail['repeat_of_round']}"
    if row["stage"] == "screening":
        return error_summary(detail.get("log", ""), limit=200)
    rules = sorted({finding.split(":", 1)[0] for finding in detail.get("findings", [])})
    if rules:
        return "audit: " + ", ".join(rules)
    return f"S {detail['sol_score']:.3f}" + (" (best of the loop)" if detail.get("became_best") else "")


def llm_options(function):
    """Add --llm MODEL and the endpoint's options to a command; it receives `llm: LLMConfig | None`."""
    defaults = LLMConfig(model="")
    options = [
        click.option("--llm", "llm_model", default=None, metavar="MODEL",
                     help="Also ask MODEL, at an OpenAI-compatible endpoint, for faster solutions; each is screened, "
                          "audited and timed like any candidate."),
        click.option("--llm-base-url", envvar="OPENAI_BASE_URL", default=DEFAULT_BASE_URL, show_default=True,
                     show_envvar=True, help="The endpoint."),
        click.option("--llm-api-key", envvar="OPENAI_API_KEY", default="", show_envvar=True,
                     help="The endpoint's key (none for a local server)."),
        click.option("--llm-rounds", type=click.IntRange(1), default=defaults.rounds, show_default=True,
                     help="Rounds of propose -> screen -> feed back."),
        click.option("--llm-max-calls", type=click.IntRange(1), default=defaults.max_calls, show_default=True,
                     help="Calls per task."),
        click.option("--llm-max-tokens", type=click.IntRange(1), default=defaults.max_tokens, show_default=True,
                     help="Tokens per task, prompts and answers together."),
        click.option("--llm-timeout", type=click.FloatRange(min=0, min_open=True), default=defaults.timeout_s,
                     show_default=True, help="Seconds per request (retried with backoff on timeouts, 429 and 5xx)."),
    ]

    @functools.wraps(function)
    def command(*args, llm_model, llm_base_url, llm_api_key, llm_rounds, llm_max_calls, llm_max_tokens, llm_timeout,
                **kwargs):
        config = None
        if llm_model:
            require_sdk()
            config = LLMConfig(model=llm_model, base_url=llm_base_url, api_key=llm_api_key, rounds=llm_rounds,
                               max_calls=llm_max_calls, max_tokens=llm_max_tokens, timeout_s=llm_timeout)
        return function(*args, llm=config, **kwargs)

    for option in reversed(options):
        command = option(command)
    return command
