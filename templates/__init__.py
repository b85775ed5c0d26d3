"""The generator's jinja2 sources: one template per family (`<family>.py.j2`), shared macros in
`macros.j2`. Rendered with the family's parameters into the sources of a solution, beside which
`lean_launch.py` (Triton launches with less host work) ships as it is."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

DIRECTORY = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    # StrictUndefined: a parameter a family forgot to pass is an error at render time, not an empty string
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(DIRECTORY)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def render(name: str, **parameters) -> str:
    """Render templates/<name> with `parameters`."""
    return environment().get_template(name).render(**parameters)


LEAN_LAUNCH_FILE = "lean_launch.py"   # shipped verbatim beside every generated Triton kernel.py (macros.lean_import)


@lru_cache(maxsize=1)
def lean_launch_source() -> str:
    return (DIRECTORY / LEAN_LAUNCH_FILE).read_text()
