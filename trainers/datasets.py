"""Where a run's tokens come from: the shipped corpus, a directory of token shards, or of parquet text.

    --data shipped   the committed corpus (trainers/data), as the committed token shards of the
                     shipped tokenizer (no tokenizer library needed)
    --data DIR       *.bin token shards (modded-nanogpt: fineweb_train_*.bin, fineweb_val_*.bin)
                     or *.parquet text shards (nanochat, autoresearch: the last shard, or any with
                     "val" in its name, is validation)

Everything is turned into token shards before a run starts: the training child maps its shards
before any candidate code runs, so it never needs to open a file of the data directory itself,
and the validation tokens go to the evaluator through a pipe. Tokenized text is cached under the
cache directory by the hash of its sources, which makes that cache as protected as the data.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernelbench.core.errors import KernelBenchError

from .corpus import DATA_DIR, TRAIN_FILE, VAL_FILE, read_documents
from .shards import read_text_shard, read_token_shard, write_token_shard
from .tokenizer import (TOKEN_BYTES_FILE, TOKENIZER_FILE, TRAIN_SHARD, VAL_SHARD, VOCAB_SIZE, encode_documents,
                        load_tokenizer, token_bytes)

SHIPPED = "shipped"
SHIPPED_TOKENIZER = DATA_DIR / TOKENIZER_FILE
PARQUET_BATCH_DOCUMENTS = 1024


class DataError(KernelBenchError):
    """The data directory holds nothing usable, or its parts do not fit together."""


@dataclass(frozen=True)
class Dataset:
    name: str
    train_shards: tuple[Path, ...]          # token shards the training child maps
    val_shards: tuple[Path, ...]            # token shards only the evaluator's parent reads
    vocab_size: int
    token_bytes: np.ndarray | None = field(default=None, compare=False)   # bytes per token id; None: no bpb
    protected: tuple[Path, ...] = ()        # directories a candidate must not read

    def val_tokens(self, limit: int | None = None) -> np.ndarray:
        """The first `limit` validation tokens (all when None), in shard order."""
        pieces, left = [], limit
        for shard in self.val_shards:
            tokens = read_token_shard(shard)
            take = tokens if left is None else tokens[:left]
            pieces.append(np.array(take, dtype=np.uint16))
            if left is not None:
                left -= len(take)
                if left <= 0:
                    break
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint16)

    def train_token_count(self) -> int:
        return sum(len(read_token_shard(shard)) for shard in self.train_shards)


def open_dataset(data: str | Path = SHIPPED, *, cache_dir: Path | None, tokenizer: str | Path | None = None,
                 max_train_tokens: int | None = None) -> Dataset:
    """Resolve --data (and --tokenizer) into token shards, tokenizing text into the cache first."""
    if str(data) == SHIPPED and tokenizer is None:
        return Dataset(SHIPPED, (DATA_DIR / TRAIN_SHARD,), (DATA_DIR / VAL_SHARD,), VOCAB_SIZE,
                       np.load(DATA_DIR / TOKEN_BYTES_FILE), (DATA_DIR,))
    if str(data) == SHIPPED:  # the shipped text under another tokenizer
        return _text_dataset(SHIPPED, [DATA_DIR / TRAIN_FILE], [DATA_DIR / VAL_FILE], read_documents,
                             Path(tokenizer or SHIPPED_TOKENIZER), cache_dir, max_train_tokens, DATA_DIR)
    directory = Path(data).resolve()
    if not directory.is_dir():
        raise DataError(f"{data}: no such directory (use --data shipped, or a directory of .bin or .parquet shards)")
    bins = sorted(directory.glob("*.bin"))
    if bins:
        return _token_dataset(directory, bins, tokenizer)
    parquets = sorted(directory.glob("*.parquet"))
    if parquets:
        val = [p for p in parquets if "val" in p.name] or parquets[-1:]
        train = [p for p in parquets if p not in val]
        if not train:
            raise DataError(f"{directory}: one parquet shard only; it is the validation shard, none is left to train on")
        return _text_dataset(str(directory), train, val, read_text_shard, Path(tokenizer or SHIPPED_TOKENIZER),
                             cache_dir, max_train_tokens, directory)
    raise DataError(f"{directory}: no *.bin token shards and no *.parquet text shards")


def _token_dataset(directory: Path, bins: list[Path], tokenizer) -> Dataset:
    val = [p for p in bins if "val" in p.name]
    train = [p for p in bins if p not in val]
    if not val or not train:
        raise DataError(f"{directory}: needs training shards and validation shards (a name with 'val'), "
                        f"found {len(train)} and {len(val)}")
    largest = max(int(np.max(read_token_shard(p), initial=0)) for p in val)
    table = token_bytes(load_tokenizer(tokenizer)) if tokenizer else None
    vocab = len(table) if table is not None else _round_vocab(largest + 1)
    if largest >= vocab:
        raise DataError(f"{directory}: token id {largest} does not fit the tokenizer's {vocab} ids")
    return Dataset(str(directory), tuple(train), tuple(val), vocab, table, (directory,))


def _text_dataset(name: str, train_files, val_files, read, tokenizer_path: Path, cache_dir: Path | None,
                  max_train_tokens: int | None, source_dir: Path) -> Dataset:
    if not tokenizer_path.is_file():
        raise DataError(f"{tokenizer_path}: no tokenizer file")
    tokenizer = load_tokenizer(tokenizer_path)
    key = hashlib.sha256()
    for path in (tokenizer_path, *train_files, *val_files):
        stat = Path(path).stat()
        key.update(f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    key.update(f"max={max_train_tokens}".encode())
    directory = (cache_dir / "trainers" / key.hexdigest()[:16]) if cache_dir else None
    shards = []
    for split, files, limit in (("train", train_files, max_train_tokens), ("val", val_files, None)):
        shard = directory / f"{split}.bin" if directory else None
        if shard is None or not shard.is_file():
            tokens = _tokenize(tokenizer, files, read, limit)
            if shard is None:  # no cache: a private temporary file per process
                shard = Path(tempfile.mkdtemp(prefix="kb-train-tokens-")) / f"{split}.bin"
            shard.parent.mkdir(parents=True, exist_ok=True)
            write_token_shard(shard, tokens)
        shards.append(shard)
    protected = (source_dir, shards[1].parent)
    return Dataset(name, (shards[0],), (shards[1],), tokenizer.get_vocab_size(), token_bytes(tokenizer), protected)


def _tokenize(tokenizer, files, read, limit: int | None) -> np.ndarray:
    pieces, count = [], 0
    for file in files:
        batch: list[str] = []
        for document in read(file):
            batch.append(document)
            if len(batch) == PARQUET_BATCH_DOCUMENTS:
                pieces.append(encode_documents(tokenizer, batch))
                count += len(pieces[-1])
                batch = []
                if limit is not None and count >= limit:
                    return np.concatenate(pieces)[:limit]
        if batch:
            pieces.append(encode_documents(tokenizer, batch))
            count += len(pieces[-1])
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint16)
    return tokens if limit is None else tokens[:limit]


def _round_vocab(n: int) -> int:
    """Without a tokenizer, the vocabulary is the largest id seen, rounded up to a multiple of 128."""
    return -(-n // 128) * 128
