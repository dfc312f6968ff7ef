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
_PACKAGED_TRACES = Path(__file__).resolve().parent / "traces"
_CHECKOUT_TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
SUFFIX = ".toml"
TRACE_SUFFIX = ".json"


@dataclass(frozen=True)
class Bundled:
    """One bundled scenario: its name, its file and the first line of its description."""

    name: str
    path: Path
    summary: str


def directories(traces: bool = False) -> list[Path]:
    """Where bundled scenarios (or traces) are looked for, first match wins."""
    candidates = (_PACKAGED_TRACES, _CHECKOUT_TRACES) if traces else (_PACKAGED, _CHECKOUT)
    return [d for d in candidates if d.is_dir()]


def resolve(name: str, *, traces: bool = False) -> str:
    """The file a ``--scenario`` value means: as given if it exists or has a directory
    part, else the bundled scenario of that name (``.toml`` optional); unchanged if there
    is none (the loader then reports the missing file)."""
    suffix = TRACE_SUFFIX if traces else SUFFIX
    if os.path.exists(name) or os.sep in name:
        return name
    stem = name[:-len(suffix)] if name.endswith(suffix) else name
    for directory in directories(traces):
        path = directory / (stem + suffix)
        if path.is_file():
            return str(path)
    return name


def resolve_trace(name: str) -> str:
    """The file a ``vdrm replay TRACE`` argument means (bundled traces by name)."""
    return resolve(name, traces=True)


def bundled(traces: bool = False) -> list[Bundled]:
    """Every bundled scenario (or trace), sorted by name (a packaged copy hides the checkout's)."""
    found: dict[str, Bundled] = {}
    suffix = TRACE_SUFFIX if traces else SUFFIX
    for directory in directories(traces):
        for path in sorted(directory.glob("*" + suffix)):
            if path.stem not in found:
                found[path.stem] = Bundled(path.stem, path, _trace_summary(path) if traces else _summary(path))
    return [found[name] for name in sorted(found)]


def bundled_traces() -> list[Bundled]:
    return bundled(traces=True)


def _trace_summary(path: Path) -> str:
    import json

    try:
        with open(path) as f:
            return str(json.load(f).get("description", "")).split("\n")[0]
    except (OSError, ValueError) as e:
        return f"(unreadable: {e})"


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
