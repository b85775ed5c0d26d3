"""The LLM log in the store (table llm_exchanges): every prompt and response with its model, tokens,
latency and attempts, the candidate it became and its fate; and, read back, what won on other tasks
of the same family (what one task teaches the next).

A row is written when the call returns and updated as the answer goes through parsing, the audit,
screening and the evaluation. Whether its candidate was chosen is not stored here: the task's
recorded result (table results, same run) says so, and `exchanges` joins it in.
"""

from __future__ import annotations

import json
import time

from kernelbench.core import statuses
from kernelbench.core.solution import parse_solution
from kernelbench.core.store import Store

from .client import Reply

AUDIT_CLEAN = "clean"    # a summary's audit_status when no rule fired (kernelbench.jobs.summary)
CHOSEN = ("EXISTS (SELECT 1 FROM results r WHERE r.definition = e.definition AND r.run_id = e.run_id "
          "AND r.solution_hash = e.candidate_hash AND r.status = 'PASSED')")


class ExchangeLog:
    """The rows of one task's research loop."""

    def __init__(self, store: Store, definition: str, run_id: str, model: str, families: list[str]):
        self.store, self.definition, self.run_id, self.model = store, definition, run_id, model
        self.families = json.dumps(families)

    def call(self, round_: int, messages: list[dict], reply: Reply) -> int:
        stage, status = ("call", "CALL_FAILED") if reply.text is None else ("parse", "ANSWERED")
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO llm_exchanges (definition, run_id, model, round, families, prompt, response, "
                "prompt_tokens, completion_tokens, latency_s, attempts, error, stage, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.definition, self.run_id, self.model, round_, self.families, json.dumps(messages), reply.text,
                 reply.prompt_tokens, reply.completion_tokens, reply.latency_s, reply.attempts, reply.error,
                 stage, status, time.time()))
            return cursor.lastrowid

    def fate(self, row: int, stage: str, status: str, *, candidate_hash: str | None = None,
             error: str | None = None, detail: dict | None = None) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE llm_exchanges SET stage = ?, status = ?, candidate_hash = COALESCE(?, candidate_hash), "
                       "error = COALESCE(?, error), detail = ? WHERE id = ?",
                       (stage, status, candidate_hash, error, json.dumps(detail) if detail is not None else None, row))


def exchanges(store: Store, definition: str | None = None, run_id: str | None = None,
              limit: int | None = None) -> list[dict]:
    """Rows newest last, each with `chosen` (its candidate became the task's recorded result)."""
    query, args = f"SELECT e.*, {CHOSEN} AS chosen FROM llm_exchanges e WHERE 1=1", []
    if definition:
        query, args = query + " AND e.definition = ?", args + [definition]
    if run_id:
        query, args = query + " AND e.run_id = ?", args + [run_id]
    query += " ORDER BY e.id DESC" + (" LIMIT ?" if limit else "")
    rows = store.db.execute(query, args + ([limit] if limit else [])).fetchall()
    out = []
    for row in reversed(rows):
        entry = dict(row)
        entry["chosen"] = bool(entry["chosen"])
        for key in ("families", "prompt", "detail"):
            entry[key] = json.loads(entry[key]) if entry[key] is not None else None
        out.append(entry)
    return out


def winners(store: Store, families: list[str], definition: str, limit: int = 3) -> list[dict]:
    """The chosen solutions (not a baseline variant, passed, audit clean) of other tasks whose research
    loop ran in one of `families`, newest first, one per task."""
    if not families:
        return []
    rows = store.db.execute(
        "SELECT r.definition, r.sol_score, r.data AS summary, s.data AS solution, c.source, c.proposer, "
        "x.families, env.hardware FROM results r "
        "JOIN (SELECT DISTINCT definition, run_id, families FROM llm_exchanges) x "
        "  ON x.definition = r.definition AND x.run_id = r.run_id "
        "JOIN solutions s ON s.hash = r.solution_hash "
        "JOIN candidates c ON c.definition = r.definition AND c.run_id = r.run_id "
        "  AND c.solution_hash = r.solution_hash AND c.source != 'baseline' "
        "LEFT JOIN environments env ON env.id = r.environment_id "
        "WHERE r.status = ? AND r.definition != ? GROUP BY r.id ORDER BY r.id DESC",
        (statuses.PASSED, definition)).fetchall()
    found: dict[str, dict] = {}
    for row in rows:
        summary = json.loads(row["summary"])
        if row["definition"] in found or summary.get("audit_status") != AUDIT_CLEAN \
                or not set(json.loads(row["families"])) & set(families):
            continue
        found[row["definition"]] = {
            "task": row["definition"], "score": f"{row['sol_score']:.3f}", "hardware": row["hardware"] or "?",
            "origin": f"from {row['source']}" + (f", {row['proposer']}" if row["proposer"] else ""),
            "solution": parse_solution(json.loads(row["solution"]))}
        if len(found) == limit:
            break
    return list(found.values())
