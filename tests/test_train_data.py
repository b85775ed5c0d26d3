"""Training data: the real formats (token shards, parquet text shards) read and written, the
download code on local files, the datasets built from them, and the shipped corpus and tokenizer."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from trainers.context import TokenStream
from trainers.corpus import DATA_DIR, TRAIN_FILE, VAL_FILE, is_validation, read_documents
from trainers.datasets import DataError, open_dataset
from trainers.download import SOURCES, DownloadError, download
from trainers.shards import (HEADER_BYTES, MAGIC, ShardError, read_text_shard, read_token_shard, write_text_shard,
                             write_token_shard)
from trainers.tokenizer import TOKENIZER_FILE, encode_documents, load_tokenizer, token_bytes


def modded_nanogpt_shard(path, tokens, *, magic=MAGIC, version=1, count=None):
    """A token shard written the way modded-nanogpt's data scripts write them, byte by byte."""
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = magic, version, len(tokens) if count is None else count
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())
    return path


def test_token_shard_in_the_real_layout_reads_back(tmp_path):
    tokens = np.array([50256, 15496, 11, 995, 0, 65535], dtype=np.uint16)
    path = modded_nanogpt_shard(tmp_path / "fineweb_train_000001.bin", tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * len(tokens)
    np.testing.assert_array_equal(read_token_shard(path), tokens)
    ours = write_token_shard(tmp_path / "ours.bin", tokens)
    assert ours.read_bytes() == path.read_bytes()   # what we write is the real format


@pytest.mark.parametrize("corruption, message", [
    ({"magic": 20240519}, "magic 20240519"),
    ({"version": 2}, "version 2"),
    ({"count": 7}, "header says 7 tokens"),
])
def test_token_shard_with_a_bad_header_is_refused(tmp_path, corruption, message):
    path = modded_nanogpt_shard(tmp_path / "bad.bin", [1, 2, 3], **corruption)
    with pytest.raises(ShardError, match=message):
        read_token_shard(path)


def test_token_shard_shorter_than_its_header_is_refused(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ShardError, match="shorter than"):
        read_token_shard(path)


def test_parquet_text_shard_round_trip_over_row_groups(tmp_path):
    documents = [f"document {i}: " + "x" * i for i in range(50)]
    path = write_text_shard(tmp_path / "shard_00000.parquet", documents, row_group_size=7)
    assert list(read_text_shard(path)) == documents


def test_parquet_shard_without_a_text_column_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["a", "b"]}), tmp_path / "shard_00000.parquet")
    with pytest.raises(ShardError, match="no `text` column"):
        list(read_text_shard(tmp_path / "shard_00000.parquet"))


def test_token_stream_reads_across_shards_and_wraps():
    stream = TokenStream([np.arange(5), np.arange(10, 13)], start=6)
    np.testing.assert_array_equal(stream.take(6), [11, 12, 0, 1, 2, 3])
    np.testing.assert_array_equal(stream.take(4), [4, 10, 11, 12])


# ---------------------------------------------------------------------- datasets

def test_bin_directory_dataset_separates_validation_shards(tmp_path):
    modded_nanogpt_shard(tmp_path / "fineweb_train_000001.bin", np.arange(1000) % 300)
    modded_nanogpt_shard(tmp_path / "fineweb_train_000002.bin", np.arange(500) % 300)
    modded_nanogpt_shard(tmp_path / "fineweb_val_000000.bin", np.arange(200) % 250)
    dataset = open_dataset(tmp_path, cache_dir=None)
    assert [p.name for p in dataset.train_shards] == ["fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    assert len(dataset.val_tokens()) == 200 and len(dataset.val_tokens(50)) == 50
    assert dataset.vocab_size == 256 and dataset.token_bytes is None   # no tokenizer: loss only, no bpb
    assert tmp_path.resolve() in dataset.protected


def test_bin_directory_with_a_tokenizer_gives_bits_per_byte(tmp_path):
    modded_nanogpt_shard(tmp_path / "x_train_000001.bin", np.arange(100))
    modded_nanogpt_shard(tmp_path / "x_val_000000.bin", np.arange(100))
    dataset = open_dataset(tmp_path, cache_dir=None, tokenizer=DATA_DIR / TOKENIZER_FILE)
    assert dataset.vocab_size == 4096 and dataset.token_bytes is not None


def test_parquet_directory_is_tokenized_into_the_cache_with_the_last_shard_held_out(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_text_shard(data / "shard_00000.parquet", ["The quick brown fox."] * 40)
    write_text_shard(data / "shard_00001.parquet", ["jumps over the lazy dog"] * 40)
    write_text_shard(data / "shard_00002.parquet", ["Validation text, never trained on."] * 5)
    dataset = open_dataset(data, cache_dir=tmp_path / "cache")
    tokenizer = load_tokenizer(DATA_DIR / TOKENIZER_FILE)
    expected = encode_documents(tokenizer, ["Validation text, never trained on."] * 5)
    np.testing.assert_array_equal(dataset.val_tokens(), expected)
    assert all(str(p).startswith(str(tmp_path / "cache")) for p in dataset.train_shards)
    assert data.resolve() in dataset.protected and dataset.val_shards[0].parent in dataset.protected
    again = open_dataset(data, cache_dir=tmp_path / "cache")
    assert again.train_shards == dataset.train_shards   # the cache is reused


@pytest.mark.parametrize("files, message", [([], "no \\*.bin"), (["shard_00000.parquet"], "one parquet shard only")])
def test_a_directory_without_usable_shards_is_refused(tmp_path, files, message):
    for name in files:
        write_text_shard(tmp_path / name, ["a"])
    with pytest.raises(DataError, match=message):
        open_dataset(tmp_path, cache_dir=None)


# ---------------------------------------------------------------------- shipped corpus and tokenizer

def test_shipped_split_follows_the_rule_and_shares_no_document():
    names = {}
    for file in (TRAIN_FILE, VAL_FILE):
        with gzip.open(DATA_DIR / file, "rt") as f:
            names[file] = [json.loads(line)["name"] for line in f]
    assert all(is_validation(n) for n in names[VAL_FILE]) and not any(is_validation(n) for n in names[TRAIN_FILE])
    assert not set(names[TRAIN_FILE]) & set(names[VAL_FILE])
    assert sum(len(t.encode()) for t in read_documents(DATA_DIR / TRAIN_FILE)) > 1_500_000


def test_token_bytes_count_exactly_the_text_bytes():
    tokenizer = load_tokenizer(DATA_DIR / TOKENIZER_FILE)
    documents = read_documents(DATA_DIR / VAL_FILE)
    tokens = encode_documents(tokenizer, documents)
    assert token_bytes(tokenizer)[tokens].sum() == sum(len(d.encode()) for d in documents)
    assert token_bytes(tokenizer)[tokenizer.token_to_id("<|bos|>")] == 0


# ---------------------------------------------------------------------- downloads (local files only)

def test_download_fetches_validation_and_training_shards_from_a_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"):
        modded_nanogpt_shard(mirror / name, np.arange(64))
    out = tmp_path / "fineweb10B"
    fetched = download("fineweb10b", out, shards=2, base_url=mirror.as_uri())
    assert [p.name for p in fetched] == ["fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    assert len(open_dataset(out, cache_dir=None).val_tokens()) == 64
    (mirror / "fineweb_train_000001.bin").unlink()
    assert download("fineweb10b", out, shards=2, base_url=mirror.as_uri()) == fetched   # present files are kept


def test_download_of_parquet_sources_names_the_real_files(tmp_path):
    assert SOURCES["climbmix"].files("climbmix", 2) == ["shard_00000.parquet", "shard_00001.parquet",
                                                        "shard_06542.parquet"]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for i in range(3):
        write_text_shard(mirror / f"shard_{i:05d}.parquet", [f"text of shard {i}"])
    fetched = download("fineweb-edu", tmp_path / "edu", shards=2, base_url=mirror.as_uri())
    assert [p.name for p in fetched] == ["shard_00000.parquet", "shard_00001.parquet", "shard_00002.parquet"]


def test_a_missing_file_fails_at_once_with_its_url(tmp_path):
    with pytest.raises(DownloadError, match="fineweb_val_000000.bin"):
        download("fineweb10b", tmp_path / "out", base_url=(tmp_path / "empty").as_uri())
    assert not list((tmp_path / "out").iterdir())   # no partial file left behind


def test_committed_shards_are_the_corpus_under_the_shipped_tokenizer():
    dataset = open_dataset("shipped", cache_dir=None)
    tokenizer = load_tokenizer(DATA_DIR / TOKENIZER_FILE)
    np.testing.assert_array_equal(dataset.val_tokens(), encode_documents(tokenizer, read_documents(DATA_DIR / VAL_FILE)))
    np.testing.assert_array_equal(dataset.token_bytes, token_bytes(tokenizer))
    assert dataset.train_token_count() > 400_000 and dataset.vocab_size == tokenizer.get_vocab_size()
