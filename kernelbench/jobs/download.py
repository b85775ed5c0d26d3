"""`kb tasks download`: the official SOL-ExecBench dataset from the Hugging Face Hub, as problem directories.

The dataset (`nvidia/SOL-ExecBench`) has one config per subset, L1, L2, Quant and FlashInfer-Bench,
and one row per problem with the columns name, description, hf_id, axes, inputs, outputs,
reference, custom_inputs_entrypoint and workloads; axes, inputs, outputs and workloads hold JSON
text. The Hub serves every config as parquet under the revision `refs/convert/parquet`
(`<config>/train/0000.parquet`). `snapshot_download` fetches those files into the Hugging Face
cache, or with `local_files_only` finds them there without the network, and each row becomes
OUT/<config>/<name>/{definition.json, workload.jsonl} (the layout of SOL-ExecBench's own download
script), which is then loaded like any problem.

huggingface_hub and pyarrow come with the `data` extra; they are imported when a download runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import DEFINITION_FILE, WORKLOAD_FILE, load_problem

REPO_ID = "nvidia/SOL-ExecBench"
CONFIGS = ("L1", "L2", "Quant", "FlashInfer-Bench")
REVISION = "refs/convert/parquet"
JSON_COLUMNS = ("axes", "inputs", "outputs", "workloads", "constraints")
# definition.json's keys in the order SOL-ExecBench's download script writes them; other columns follow
DEFINITION_KEYS = ("name", "hf_id", "description", "op_type", "axes", "custom_inputs_entrypoint", "inputs", "outputs",
                   "constraints", "reference")


@dataclass
class DownloadReport:
    snapshot: Path                                          # where the parquet files are (the Hub cache)
    written: list[Path] = field(default_factory=list)       # problem directories
    failed: dict[str, str] = field(default_factory=dict)    # "config/name" -> why it is not a valid problem


def download_dataset(out_dir: Path, configs: Sequence[str] = CONFIGS, *, repo_id: str = REPO_ID,
                     revision: str = REVISION, cache_dir: Path | None = None,
                     local_files_only: bool = False) -> DownloadReport:
    """Fetch the configs' parquet files (or find them in the cache) and write one directory per problem."""
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise KernelBenchError(f"unknown configs {unknown}; the dataset has {', '.join(CONFIGS)}")
    try:  # the optional `data` extra
        import pyarrow.parquet
        from huggingface_hub import errors, snapshot_download
    except ImportError as exc:
        raise KernelBenchError(f"{exc.name} is missing: pip install 'kernelbench[data]'") from None
    try:
        snapshot = Path(snapshot_download(
            repo_id, repo_type="dataset", revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            allow_patterns=[f"{config}/*.parquet" for config in configs]))
    except errors.LocalEntryNotFoundError as exc:
        raise KernelBenchError(f"{repo_id}@{revision} is not in the Hugging Face cache: {exc}") from None
    except errors.HfHubHTTPError as exc:
        raise KernelBenchError(f"{repo_id}@{revision}: download failed: {exc}") from None
    report = DownloadReport(snapshot)
    for config in configs:
        files = sorted(snapshot.glob(f"{config}/**/*.parquet"))
        if not files:
            raise KernelBenchError(f"{repo_id}@{revision}: no parquet files for config {config} in {snapshot}")
        for file in files:
            for row in pyarrow.parquet.read_table(file).to_pylist():
                label = f"{config}/{row.get('name')}"
                try:
                    report.written.append(write_problem(row, Path(out_dir) / config))
                except KernelBenchError as exc:
                    report.failed[label] = str(exc)
    return report


def write_problem(row: dict[str, Any], root: Path) -> Path:
    """One dataset row as root/<name>/{definition.json, workload.jsonl}; loaded back to check it."""
    name = row.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise KernelBenchError(f"row name {name!r} is not a safe directory name")
    values = {key: _decoded(key, value) for key, value in row.items()}
    workloads = values.pop("workloads", None)
    if not isinstance(workloads, list):
        raise KernelBenchError(f"{name}: the workloads column holds no list")
    ordered = [k for k in DEFINITION_KEYS if k in values] + [k for k in values if k not in DEFINITION_KEYS]
    definition = {k: values[k] for k in ordered if values[k] is not None or k in ("hf_id", "custom_inputs_entrypoint")}
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DEFINITION_FILE).write_text(json.dumps(definition, indent=4) + "\n")
    (directory / WORKLOAD_FILE).write_text("".join(json.dumps(w) + "\n" for w in workloads))
    load_problem(directory)
    return directory


def _decoded(key: str, value: Any) -> Any:
    if key in JSON_COLUMNS and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise KernelBenchError(f"column {key}: invalid JSON: {exc.msg}") from None
    return value
