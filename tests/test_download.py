"""kb tasks download: the dataset's parquet layout into problem directories, through huggingface_hub's
cache logic, with no network (the Hub's download is replaced by a copy from a local folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY_DEFINITION, TINY_WORKLOADS
from kernelbench.cli import main
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import load_problem
from kernelbench.jobs.download import REPO_ID, REVISION, download_dataset

huggingface_hub = pytest.importorskip("huggingface_hub")   # the `data` extra
pyarrow = pytest.importorskip("pyarrow")
parquet = pytest.importorskip("pyarrow.parquet")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
COLUMNS = ("name", "description", "hf_id", "axes", "inputs", "outputs", "reference", "custom_inputs_entrypoint", "workloads")


def dataset_row(definition: dict, workloads: list[dict]) -> dict:
    """One row as the dataset stores it: axes, inputs, outputs and workloads as JSON text."""
    row = {key: definition.get(key) for key in COLUMNS if key != "workloads"}
    for key in ("axes", "inputs", "outputs"):
        row[key] = json.dumps(definition[key])
    row["workloads"] = json.dumps(workloads)
    return row


def write_config(root: Path, config: str, rows: list[dict]) -> None:
    """<config>/train/0000.parquet, as the Hub's parquet conversion lays it out."""
    (root / config / "train").mkdir(parents=True)
    parquet.write_table(pyarrow.Table.from_pylist(rows), root / config / "train" / "0000.parquet")


@pytest.fixture
def remote(tmp_path) -> Path:
    """What the Hub serves at refs/convert/parquet: two configs, one problem each."""
    root = tmp_path / "remote"
    second = {**TINY_DEFINITION, "name": "tiny_rmsnorm_two", "hf_id": None, "description": "second"}
    write_config(root, "L1", [dataset_row(TINY_DEFINITION, TINY_WORKLOADS)])
    write_config(root, "L2", [dataset_row(second, TINY_WORKLOADS[:1])])
    return root


@pytest.fixture
def hub(monkeypatch, remote):
    """huggingface_hub.snapshot_download without the network: a download fills the cache as the real
    one does (datasets--owner--name/refs/<revision> -> commit, snapshots/<commit>/<files>) from
    `remote`; with local_files_only the real function answers from that cache."""
    calls = []
    real = huggingface_hub.snapshot_download

    def fake_snapshot_download(repo_id, *, repo_type, revision, cache_dir, local_files_only, allow_patterns, **_):
        if local_files_only:
            return real(repo_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir, local_files_only=True,
                        allow_patterns=allow_patterns)
        calls.append(dict(repo_id=repo_id, repo_type=repo_type, revision=revision, allow_patterns=allow_patterns))
        storage = Path(cache_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
        snapshot = storage / "snapshots" / COMMIT
        for pattern in allow_patterns:
            for file in remote.glob(pattern.replace("*.parquet", "**/*.parquet")):
                target = snapshot / file.relative_to(remote)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, target)
        (storage / "refs" / revision).parent.mkdir(parents=True, exist_ok=True)
        (storage / "refs" / revision).write_text(COMMIT)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    return calls


def test_download_writes_problem_directories_and_the_cache_serves_them_offline(tmp_path, hub):
    cache, out = tmp_path / "hf_cache", tmp_path / "out"
    report = download_dataset(out, ("L1", "L2"), cache_dir=cache)
    assert hub == [dict(repo_id=REPO_ID, repo_type="dataset", revision=REVISION,
                        allow_patterns=["L1/*.parquet", "L2/*.parquet"])]
    assert [p.relative_to(out).as_posix() for p in report.written] == ["L1/tiny_rmsnorm", "L2/tiny_rmsnorm_two"]
    assert not report.failed
    problem = load_problem(out / "L1" / "tiny_rmsnorm")
    assert problem.subset == "L1" and [w.uuid for w in problem.workloads] == [w["uuid"] for w in TINY_WORKLOADS]
    written = json.loads((out / "L1" / "tiny_rmsnorm" / "definition.json").read_text())
    assert written["axes"] == TINY_DEFINITION["axes"] and written["reference"] == TINY_DEFINITION["reference"]
    assert list(written)[:3] == ["name", "hf_id", "description"] and written["custom_inputs_entrypoint"] is None

    # offline, huggingface_hub's own snapshot_download resolves the revision from the cache it filled
    again = download_dataset(tmp_path / "again", ("L1",), cache_dir=cache, local_files_only=True)
    assert again.snapshot == report.snapshot and [p.name for p in again.written] == ["tiny_rmsnorm"]
    assert len(hub) == 1   # no second download
    with pytest.raises(KernelBenchError, match="not in the Hugging Face cache"):
        download_dataset(tmp_path / "x", ("L1",), cache_dir=tmp_path / "empty_cache", local_files_only=True)


def test_an_invalid_row_is_reported_and_the_others_written(tmp_path, remote, hub):
    bad = dataset_row({**TINY_DEFINITION, "name": "broken"}, [{"uuid": "w", "axes": {}, "inputs": {}}])
    unsafe = dataset_row({**TINY_DEFINITION, "name": "../escape"}, TINY_WORKLOADS)
    parquet.write_table(pyarrow.Table.from_pylist([bad, unsafe]), remote / "L2" / "train" / "0001.parquet")
    report = download_dataset(tmp_path / "out", ("L2",), cache_dir=tmp_path / "cache")
    assert [p.name for p in report.written] == ["tiny_rmsnorm_two"]
    assert "var axis has no value" in report.failed["L2/broken"]
    assert "not a safe directory name" in report.failed["L2/../escape"]
    assert not (tmp_path / "escape").exists()


def test_download_command(tmp_path, hub):
    result = CliRunner().invoke(main, ["tasks", "download", "--config", "L1", "--out", str(tmp_path / "out"),
                                       "--hf-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0 and "1 problems written" in result.output, result.output
    result = CliRunner().invoke(main, ["tasks", "download", "--config", "Quant", "--offline", "--out", str(tmp_path / "out"),
                                       "--hf-cache", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not in the Hugging Face cache" in result.output, result.output
