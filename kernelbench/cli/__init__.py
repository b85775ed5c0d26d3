"""The `kb` command line: click noun groups with small verbs; rich tables; --json for scripts.

The group builds the one Settings object (options over the environment over defaults) that every
command passes down; below this package nothing reads environment variables.
"""

from __future__ import annotations

import click

from kernelbench.core.settings import Settings

from . import evaluate, exchange, jobs, knowledge, llm, report, roofline, tasks, train
from .common import KbGroup, console  # noqa: F401  (console: tests widen it)


@click.group(cls=KbGroup)
@click.option("--db", default=None, help="SQLite store (default: $KB_DB or ./kernelbench.db).")
@click.option("--cache-dir", default=None, help="Disk caches, or 'off' (default: $KB_CACHE_DIR or ~/.cache/kernelbench).")
@click.pass_context
def main(ctx, db, cache_dir):
    """kernelbench: optimize GPU kernels and score them against the speed of light."""
    ctx.obj = Settings.from_environment(db=db, cache_dir=cache_dir)


for command in (tasks.tasks, roofline.roofline_command, roofline.calibrate_command,
                evaluate.eval_command, evaluate.baseline_command, evaluate.audit_command,
                jobs.optimize_command, jobs.batch_command, jobs.leaderboard_command, knowledge.knowledge_group,
                llm.llm, report.report_command, exchange.export_command, exchange.import_command, train.train):
    main.add_command(command)
