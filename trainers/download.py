"""Download the real training data: the shards the anchors train on, into a directory --data reads.

    fineweb10b     modded-nanogpt: GPT-2 tokens of FineWeb 10B as token shards (~100M tokens each);
                   fineweb_val_000000.bin and fineweb_train_000001.bin ... (103 in all)
    fineweb-edu    nanochat: FineWeb-Edu 100B text as parquet shards shard_00000.parquet ...
                   (1823 in all); the last one downloaded is the validation shard
    climbmix       autoresearch: ClimbMix 400B text as parquet shards (6543 in all); the last shard
                   of the set, shard_06542, is the pinned validation shard

Nothing downloads at run time: `kb train download` is the only place that reaches the network,
files are written whole (a .partial renamed on success) and skipped when already present.
`base_url` may be any URL urllib opens, file:// included (the tests use a local directory).
"""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kernelbench.core.errors import KernelBenchError

HUB = "https://huggingface.co/datasets"
ATTEMPTS = 4


class DownloadError(KernelBenchError):
    """A file could not be fetched after several attempts."""


@dataclass(frozen=True)
class Source:
    base_url: str
    train_count: int          # how many training shards exist
    description: str

    def files(self, name: str, shards: int) -> list[str]:
        shards = max(1, min(shards, self.train_count))
        if name == "fineweb10b":
            return ["fineweb_val_000000.bin", *(f"fineweb_train_{i:06d}.bin" for i in range(1, shards + 1))]
        if name == "climbmix":
            return [*(f"shard_{i:05d}.parquet" for i in range(shards)), f"shard_{self.train_count:05d}.parquet"]
        return [f"shard_{i:05d}.parquet" for i in range(shards + 1)]


SOURCES = {
    "fineweb10b": Source(f"{HUB}/kjj0/fineweb10B-gpt2/resolve/main", 103, "FineWeb 10B, GPT-2 token shards"),
    "fineweb-edu": Source(f"{HUB}/karpathy/fineweb-edu-100b-shuffle/resolve/main", 1822, "FineWeb-Edu 100B, parquet text"),
    "climbmix": Source(f"{HUB}/karpathy/climbmix-400b-shuffle/resolve/main", 6542, "ClimbMix 400B, parquet text"),
}


def download(name: str, out_dir: str | Path, *, shards: int = 1, base_url: str | None = None,
             on_file=None) -> list[Path]:
    """Fetch the validation shard and `shards` training shards of SOURCES[name] into out_dir."""
    if name not in SOURCES:
        raise DownloadError(f"unknown source {name!r} (known: {', '.join(SOURCES)})")
    source = SOURCES[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fetched = []
    for file in source.files(name, shards):
        target = out_dir / file
        if not target.is_file():
            fetch(f"{(base_url or source.base_url).rstrip('/')}/{file}", target)
        fetched.append(target)
        if on_file:
            on_file(target)
    return fetched


def fetch(url: str, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            partial.replace(target)
            return
        except (urllib.error.URLError, OSError) as exc:
            partial.unlink(missing_ok=True)
            missing = (isinstance(exc, urllib.error.HTTPError) and exc.code < 500) or \
                isinstance(getattr(exc, "reason", None), FileNotFoundError)
            if missing or attempt == ATTEMPTS - 1:
                raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from None
            time.sleep(2 ** attempt)
