"""A byte-level BPE tokenizer (Hugging Face `tokenizers`), trained on the training split only.

Byte-level: every token stands for a definite byte string, so the bytes of any token sequence
are known, which is what bits per byte needs (`token_bytes`). Documents are joined with a
<|bos|> token (id 0), which stands for no bytes and so is never scored.

    python -m trainers.tokenizer trainers/data      # after rebuilding the corpus: tokenizer, shards, token bytes
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .corpus import DATA_DIR, TRAIN_FILE, VAL_FILE, read_documents
from .extras import require
from .shards import write_token_shard

TOKENIZER_FILE = "tokenizer.json"
TRAIN_SHARD, VAL_SHARD, TOKEN_BYTES_FILE = "train.bin", "val.bin", "token_bytes.npy"
VOCAB_SIZE = 4096
BOS = "<|bos|>"


def train_tokenizer(documents: list[str], vocab_size: int = VOCAB_SIZE):
    lib = require("tokenizers")
    models, pre_tokenizers, decoders, trainers = lib.models, lib.pre_tokenizers, lib.decoders, lib.trainers
    tokenizer = lib.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path):
    """A tokenizers.Tokenizer from its JSON file."""
    return require("tokenizers").Tokenizer.from_file(str(path))


def encode_documents(tokenizer, documents: list[str]) -> np.ndarray:
    """All documents as one uint16 stream, each preceded by <|bos|>."""
    bos = tokenizer.token_to_id(BOS)
    pieces = []
    for encoding in tokenizer.encode_batch(documents, add_special_tokens=False):
        pieces.append(np.array([bos, *encoding.ids], dtype=np.uint16))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint16)


def token_bytes(tokenizer) -> np.ndarray:
    """Bytes each token id stands for (0 for special tokens), from the byte-level alphabet."""
    byte_of = _unicode_to_byte()
    specials = {token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special}
    out = np.zeros(tokenizer.get_vocab_size(), dtype=np.int32)
    for token, index in tokenizer.get_vocab().items():
        if token not in specials:
            out[index] = sum(1 for ch in token if ch in byte_of)
    return out


def _unicode_to_byte() -> dict[str, int]:
    """The byte-level alphabet: printable bytes stand for themselves, the other 68 bytes are
    shifted to code points 256 and up, in byte order (the GPT-2 convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {chr(b): b for b in printable}
    shifted = 256
    for b in range(256):
        if b not in printable:
            mapping[chr(shifted)] = b
            shifted += 1
    return mapping


def build(data_dir: Path) -> None:
    """Train the tokenizer on the training split; write it, both splits as token shards, and the
    bytes of each token (what the shipped dataset reads: no tokenizer library at run time)."""
    tokenizer = train_tokenizer(read_documents(data_dir / TRAIN_FILE))
    tokenizer.save(str(data_dir / TOKENIZER_FILE))
    for text_file, shard in ((TRAIN_FILE, TRAIN_SHARD), (VAL_FILE, VAL_SHARD)):
        write_token_shard(data_dir / shard, encode_documents(tokenizer, read_documents(data_dir / text_file)))
    np.save(data_dir / TOKEN_BYTES_FILE, token_bytes(tokenizer))


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_DIR)
