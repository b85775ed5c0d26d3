"""The knowledge base: each family's winning configuration per (dtypes, shape class, GPU), reused across tasks.

Winners are remembered in the store after every search; a search on another task of the same family
screens them first, and `kb optimize --budget 0` (no search) renders them directly. Files shipped
in `kernelbench/generate/knowledge/<GPU>.json` (exported from GPU runs with `kb knowledge export`)
seed a fresh installation the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kernelbench.core.problem import Problem
from kernelbench.core.store import Store

SHIPPED = Path(__file__).resolve().parent / "knowledge"


@dataclass(frozen=True)
class Entry:
    family: str
    version: str
    dtypes: str
    shape_class: str
    gpu: str
    config: dict
    time_ms: float
    task: str

    def to_json(self) -> dict:
        return asdict(self)


def dtype_signature(problem: Problem) -> str:
    specs = [*problem.definition.inputs.values(), *problem.definition.outputs.values()]
    return ",".join(spec.dtype for spec in specs)


def shipped(gpu: str, directory: Path = SHIPPED) -> list[Entry]:
    path = directory / f"{gpu}.json"
    if not path.is_file():
        return []
    return [Entry(**entry) for entry in json.loads(path.read_text())]


def stored(store: Store, gpu: str) -> list[Entry]:
    return [Entry(family=row["family"], version=row["family_version"], dtypes=row["dtypes"],
                  shape_class=row["shape_class"], gpu=row["gpu"], config=json.loads(row["config"]),
                  time_ms=row["time_ms"], task=row["definition"]) for row in store.knowledge(gpu)]


def seeds(store: Store, problem: Problem, gpu: str, versions: dict[str, str],
          directory: Path = SHIPPED) -> list[Entry]:
    """Entries for the families in `versions` (name -> version) on this GPU: this store's first (newest
    first), then the shipped file's; the same dtypes before others; each configuration once per class."""
    signature = dtype_signature(problem)
    found = [e for e in [*reversed(stored(store, gpu)), *shipped(gpu, directory)]
             if versions.get(e.family) == e.version]
    found.sort(key=lambda e: e.dtypes != signature)   # stable: keeps newest-first within each group
    unique: dict[tuple, Entry] = {}
    for entry in found:
        unique.setdefault((entry.family, entry.shape_class, json.dumps(entry.config, sort_keys=True)), entry)
    return list(unique.values())


def remember(store: Store, problem: Problem, gpu: str, entries: list[Entry]) -> None:
    for e in entries:
        store.record_knowledge(e.family, e.version, dtype_signature(problem), e.shape_class, gpu, e.config,
                               e.time_ms, problem.name)


def export(store: Store, gpu: str, path: Path) -> int:
    """Write this store's entries for `gpu` (the best per family, dtypes and class) as a shipped file."""
    best: dict[tuple, Entry] = {}
    for entry in stored(store, gpu):
        key = (entry.family, entry.version, entry.dtypes, entry.shape_class)
        if key not in best or entry.time_ms < best[key].time_ms:
            best[key] = entry
    entries = sorted(best.values(), key=lambda e: (e.family, e.dtypes, e.shape_class))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([e.to_json() for e in entries], indent=1) + "\n")
    return len(entries)
