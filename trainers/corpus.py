"""The shipped corpus: English technical prose every Python installation carries, built offline.

Documents are the docstrings of the standard library (one document per module: the module's,
its public classes', methods' and functions' docstrings) and pydoc's documentation topics (one
document per topic), about 2 MB. A document is validation data when the SHA-256 of its name
falls in 1 of VAL_EVERY buckets; the split is by document, so no validation paragraph has a
twin in the training text.

The committed copy (trainers/data/{train,val}.jsonl.gz, built on CPython 3.11) is the canonical
one: docstrings change between Python versions, so rebuilding elsewhere gives another corpus.

    python -m trainers.corpus trainers/data        # rebuild (then retrain the tokenizer)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import inspect
import io
import json
import pkgutil
import sys
import warnings
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_FILE, VAL_FILE = "train.jsonl.gz", "val.jsonl.gz"
VAL_EVERY = 20
# modules with effects on import (a browser, a window, printing) or that are test suites
SKIPPED_MODULES = {"antigravity", "this", "idlelib", "test", "tests", "tkinter", "turtle", "turtledemo", "ensurepip",
                   "venv", "lib2to3", "pydoc_data", "__main__", "msilib", "winreg", "winsound"}


def is_validation(name: str) -> bool:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") % VAL_EVERY == 0


def stdlib_documents() -> dict[str, str]:
    """Document name -> text, in sorted order of names (deterministic for a given Python)."""
    documents: dict[str, str] = {}
    for name in _stdlib_module_names():
        module = _quiet_import(name)
        text = _module_text(module, name) if module is not None else ""
        if text:
            documents[f"module:{name}"] = text
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        documents[f"topic:{topic}"] = topics[topic].strip()
    return dict(sorted(documents.items()))


def build(out_dir: str | Path) -> dict[str, int]:
    """Write train.jsonl.gz and val.jsonl.gz under out_dir; returns document and byte counts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {TRAIN_FILE: [], VAL_FILE: []}
    for name, text in stdlib_documents().items():
        splits[VAL_FILE if is_validation(name) else TRAIN_FILE].append({"name": name, "text": text})
    counts = {}
    for file, rows in splits.items():
        payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        with open(out_dir / file, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(payload)  # mtime 0 and no name: the same corpus gives the same bytes
        counts[file] = len(rows)
        counts[file + " bytes"] = sum(len(row["text"].encode()) for row in rows)
    return counts


def read_documents(path: str | Path) -> list[str]:
    """The texts of a corpus file (gzip JSONL, one {"name", "text"} per line)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def _stdlib_module_names() -> list[str]:
    names = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIPPED_MODULES:
            continue
        names.append(top)
        module = _quiet_import(top)
        if module is None or not hasattr(module, "__path__"):
            continue
        for info in pkgutil.walk_packages(module.__path__, top + ".", onerror=lambda _: None):
            if not any(part.startswith("_") or part in SKIPPED_MODULES for part in info.name.split(".")):
                names.append(info.name)
    return sorted(set(names))


def _quiet_import(name: str):
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # a module that needs a platform, a display or an optional library
        return None


def _module_text(module, name: str) -> str:
    parts = [inspect.cleandoc(module.__doc__)] if isinstance(module.__doc__, str) else []
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(value, "__module__", None) != name:
            continue
        if inspect.isclass(value) or inspect.isroutine(value):
            parts.append(inspect.getdoc(value) or "")
        if inspect.isclass(value):
            for method_name, method in sorted(vars(value).items()):
                doc = getattr(method, "__doc__", None)
                if not method_name.startswith("_") and isinstance(doc, str):
                    parts.append(inspect.cleandoc(doc))
    return "\n\n".join(dict.fromkeys(p.strip() for p in parts if p and p.strip()))


if __name__ == "__main__":
    print(json.dumps(build(sys.argv[1] if len(sys.argv) > 1 else DATA_DIR), indent=1))
