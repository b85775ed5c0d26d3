"""One frozen settings object: where things live and which ceilings score them.

The CLI builds it once, from its options and the environment (`Settings.from_environment`), and
passes it down; library code takes it as an argument and never reads environment variables, so
a job run from Python behaves exactly as the same job run from `kb`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

REPOSITORY = Path(__file__).resolve().parents[2]

# option -> environment variable the CLI reads for it
ENVIRONMENT = {
    "db": "KB_DB",
    "data_root": "KB_DATA_ROOT",
    "tasks_root": "KB_TASKS_ROOT",
    "cache_dir": "KB_CACHE_DIR",     # a directory, or "off" (no disk caches)
}


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "kernelbench"


@dataclass(frozen=True)
class Settings:
    db: Path = Path("kernelbench.db")
    data_root: Path = Path(".")                    # safetensors inputs are read relative to it
    tasks_root: Path = REPOSITORY / "tasks235"     # where a bare task name is looked up
    cache_dir: Path | None = None                  # None: no disk caches (the CLI's default is ~/.cache/kernelbench)
    hardware: str | None = None                    # roofline hardware; None: the GPU present, else H200
    profile: str = "datasheet"                     # datasheet | measured ceilings

    @property
    def roofline_cache(self) -> Path | None:
        """Where counted workloads are remembered across runs (None: in memory only)."""
        return self.cache_dir / "roofline" if self.cache_dir else None

    @property
    def profile_dir(self) -> Path:
        """Where `kb calibrate` saves measured hardware profiles."""
        return (self.cache_dir or _default_cache_dir()) / "profiles"

    def with_options(self, **options) -> "Settings":
        """A copy with the options that were given (None means: keep)."""
        given = {k: v for k, v in options.items() if v is not None}
        for name in ("db", "data_root", "tasks_root"):
            if name in given:
                given[name] = Path(given[name])
        return replace(self, **given)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **options) -> "Settings":
        """Defaults, overridden by the environment, overridden by explicit options (the CLI edge only)."""
        environ = os.environ if environ is None else environ
        found: dict = {name: environ[var] for name, var in ENVIRONMENT.items() if environ.get(var)}
        cache = options.pop("cache_dir", None) or found.pop("cache_dir", None)
        settings = replace(cls().with_options(**found).with_options(**options),
                           cache_dir=None if cache == "off" else Path(cache) if cache else _default_cache_dir())
        return settings


DEFAULTS = Settings()
