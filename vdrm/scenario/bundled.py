"""The bundled scenarios: the ready ``*.toml`` machines, found by name.

In a source checkout they live in ``fixtures/scenarios/`` at the top of the repository
(tests and the README use them there). A built wheel carries copies inside the package,
in ``vdrm/scenario/fixtures/`` (``setup.py`` copies them at build time), so an installed
``vdrm`` knows them too. :func:`resolve` turns a bare name (``busy-game``, or
``busy-game.toml``) into a path; anything that exists as given, or that names a
directory, is left alone, so ``--scenario my-bug.toml`` still means the file here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "fixtures"
_CHECKOUT = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"
SUFFIX = ".toml"


@dataclass(frozen=True)
class Bundled:
    """One bundled scenario: its name, its file and the first line of its description."""

    name: str
    path: Path
    summary: str


def directories() -> list[Path]:
    """Where bundled scenarios are looked for, first match wins."""
    return [d for d in (_PACKAGED, _CHECKOUT) if d.is_dir()]


def resolve(name: str) -> str:
    """The file a ``--scenario`` value means: as given if it exists or has a directory
    part, else the bundled scenario of that name (``.toml`` optional); unchanged if there
    is none (the loader then reports the missing file)."""
    if os.path.exists(name) or os.sep in name:
        return name
    stem = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
    for directory in directories():
        path = directory / (stem + SUFFIX)
        if path.is_file():
            return str(path)
    return name


def bundled() -> list[Bundled]:
    """Every bundled scenario, sorted by name (a packaged copy hides the checkout's)."""
    found: dict[str, Bundled] = {}
    for directory in directories():
        for path in sorted(directory.glob("*" + SUFFIX)):
            if path.stem not in found:
                found[path.stem] = Bundled(path.stem, path, _summary(path))
    return [found[name] for name in sorted(found)]


def _summary(path: Path) -> str:
    """The first sentence-line of the scenario's ``description``, unwrapped."""
    try:
        with open(path, "rb") as f:
            text = str(tomllib.load(f).get("description", ""))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return f"(unreadable: {e})"
    paragraph = text.strip().split("\n\n")[0]
    one = " ".join(paragraph.split())
    return one.split(". ")[0].rstrip(".") + "." if one else ""
