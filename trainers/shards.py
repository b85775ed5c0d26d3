"""The real on-disk formats of LLM-training data, read and written.

- Token shards (modded-nanogpt, llm.c): a header of 256 little-endian int32 -- magic 20240520,
  version 1, the token count -- then that many uint16 tokens. Read as a memory map, so a 200 MB
  shard costs nothing until its pages are touched.
- Text shards (nanochat, autoresearch): parquet files with a string column `text`, one document
  a row, read one row group at a time (pyarrow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from kernelbench.core.errors import KernelBenchError

from .extras import require

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TEXT_COLUMN = "text"


class ShardError(KernelBenchError):
    """A data file is not in the format its name promises: the message names the file and why."""


def write_token_shard(path: str | Path, tokens) -> Path:
    """Write tokens (< 65536 each) as a token shard; the file appears whole or not at all."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 1 << 16):
        raise ShardError(f"{path}: token ids must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, tokens.size)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    partial.replace(path)
    return path


def read_token_shard(path: str | Path) -> np.ndarray:
    """The tokens of a shard as a read-only uint16 memory map; checks magic, version and length."""
    path = Path(path)
    try:
        size = path.stat().st_size
        header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    except OSError as exc:
        raise ShardError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if header.size < HEADER_INTS:
        raise ShardError(f"{path}: {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    if header[0] != MAGIC:
        raise ShardError(f"{path}: magic {header[0]}, expected {MAGIC} (not a token shard)")
    if header[1] != VERSION:
        raise ShardError(f"{path}: version {header[1]}, expected {VERSION}")
    count = int(header[2])
    if size != HEADER_BYTES + 2 * count:
        raise ShardError(f"{path}: header says {count} tokens ({HEADER_BYTES + 2 * count} bytes), "
                         f"the file has {size} bytes")
    if count == 0:
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))


def write_text_shard(path: str | Path, documents: list[str], row_group_size: int = 1024) -> Path:
    """Write documents as a parquet text shard (column `text`), as nanochat's shards are."""
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.table({TEXT_COLUMN: pa.array(documents, type=pa.string())}), partial,
                   row_group_size=row_group_size)
    partial.replace(path)
    return path


def read_text_shard(path: str | Path) -> Iterator[str]:
    """The documents of a parquet text shard, one row group in memory at a time."""
    pq = require("pyarrow.parquet")
    try:
        shard = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a file that is no parquet
        raise ShardError(f"{path}: not a parquet file: {exc}") from None
    if TEXT_COLUMN not in shard.schema_arrow.names:
        raise ShardError(f"{path}: no `{TEXT_COLUMN}` column (has {', '.join(shard.schema_arrow.names)})")
    for group in range(shard.num_row_groups):
        yield from shard.read_row_group(group, columns=[TEXT_COLUMN]).column(TEXT_COLUMN).to_pylist()
