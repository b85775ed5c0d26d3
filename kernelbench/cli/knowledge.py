"""`kb knowledge`: the generator's knowledge base (winning configurations per family, shape class, GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from kernelbench.core.store import Store
from kernelbench.generate import knowledge

from .common import console


@click.group("knowledge")
def knowledge_group():
    """Winning configurations the search remembered (seeds for later searches and for --budget 0)."""


@knowledge_group.command("list")
@click.option("--gpu", default=None, help="Only this GPU (H100, H200, ..., cpu).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@click.pass_obj
def list_command(settings, gpu, as_json):
    """Entries in the store, then the shipped file of each GPU."""
    store = Store(settings.db, read_only=True)
    gpus = [gpu] if gpu else sorted({row["gpu"] for row in store.knowledge()} |
                                    {p.stem for p in knowledge.SHIPPED.glob("*.json")})
    entries = [("store", e) for g in gpus for e in knowledge.stored(store, g)]
    entries += [("shipped", e) for g in gpus for e in knowledge.shipped(g)]
    if as_json:
        for origin, entry in entries:
            click.echo(json.dumps({"origin": origin, **entry.to_json()}))
        return
    table = Table(title=f"knowledge base: {len(entries)} entries")
    for column in ("origin", "gpu", "family", "shape class", "dtypes", "config", "ms", "task"):
        table.add_column(column, overflow="fold")
    for origin, e in entries:
        table.add_row(origin, e.gpu, f"{e.family} v{e.version}", e.shape_class, e.dtypes,
                      json.dumps(e.config, sort_keys=True), f"{e.time_ms:.4g}", e.task)
    console.print(table)


@knowledge_group.command("export")
@click.option("--gpu", required=True, help="The GPU whose entries to export (H100, H200, ...).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Default: the file shipped with kernelbench for that GPU.")
@click.pass_obj
def export_command(settings, gpu, out_path):
    """Write the store's best entry per family, dtypes and shape class as a shipped knowledge file."""
    path = out_path or knowledge.SHIPPED / f"{gpu}.json"
    count = knowledge.export(Store(settings.db, read_only=True), gpu, path)
    console.print(f"wrote {count} entries to {path}", highlight=False)
