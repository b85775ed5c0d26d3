"""`kb report --html DIR`: the store as a static HTML report (overview plus one page per task)."""

from __future__ import annotations

from pathlib import Path

import click

from kernelbench.core.store import Store
from kernelbench.jobs.report import count_noun, write_report

from .common import console


@click.command("report")
@click.option("--html", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write index.html and the task pages into (created if missing).")
@click.pass_obj
def report_command(settings, directory):
    """Write the SOL report: overview, a sortable and filterable task table, one page per task."""
    store = Store(settings.db, read_only=True)
    with console.status("rendering the report..."):
        pages = write_report(store, settings, directory)
    console.print(f"wrote {directory / 'index.html'} and {count_noun(len(pages) - 1, 'task page')}")
