"""Mutation fuzzing of scenario files: every mutant is loaded and built as the daemon would.

Each mutant is one of the fixture scenarios with a few random edits: a value replaced by
one of :data:`HOSTILE_VALUES` (nested lists, non-ASCII digits, inf and nan, huge or
negative numbers, wrong types), a key renamed, a line deleted or duplicated, a table
header dropped. A mutant must either load and build a device, or be refused with a
:class:`~vdrm.scenario.load.ScenarioError` that names a line, or with the engine's own
:class:`~vdrm.errors.VdrmError` (what ``mount.py --scenario`` reports as a bad
scenario). Anything else is a traceback, a vdrm bug.
"""

from __future__ import annotations

import random
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from vdrm.errors import VdrmError
from vdrm.scenario.load import ScenarioError, loads
from vdrm.scenario.run import Scenario

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"

HOSTILE_VALUES = (
    "[[]]", '["a"]', '[["b"]]', "inf", "-inf", "nan", "[1]", "{}", '{ x = 1 }', "1.5", "-1",
    "0", "true", '""', '"²"', '"٣"', '"99999999999G"', '"-5s"', "9223372036854775807",
    "18446744073709551616", "-9223372036854775809", '"0x10"', '"a b"', '"\\u0000"',
    '"' + "x" * 300 + '"', "1979-05-27", "[1, 2, 3]", '{ 3 = ["a"] }', '{ "²" = "a" }',
    '{ 3 = inf }', '{ fragment = 1.5 }', '{ fragment = [1] }', '{ fragment = {} }',
)
_ASSIGN = re.compile(r"^(\s*[\w\"'.-]+\s*=\s*)(.+?)(\s*#.*)?$")


@dataclass
class Figures:
    mutants: int = 0
    loaded: int = 0
    refused: int = 0
    refused_without_line: int = 0
    tracebacks: int = 0
    examples: list[str] = field(default_factory=list)


def mutate(text: str, rng: random.Random, edits: int = 2) -> str:
    """``text`` with ``edits`` random hostile edits."""
    lines = text.splitlines()
    for _ in range(edits):
        if not lines:
            break
        i = rng.randrange(len(lines))
        choice = rng.random()
        m = _ASSIGN.match(lines[i])
        if m and choice < 0.7:
            lines[i] = m.group(1) + rng.choice(HOSTILE_VALUES)
        elif m and choice < 0.8:
            lines[i] = rng.choice(("fds", "fd_flags", "flags", "bos", "engine_skew", "ram", "size",
                                   "duration", "at", "usage", "frequency", "zz")) + " = " + m.group(2)
        elif choice < 0.9:
            del lines[i]
        else:
            lines.insert(i, lines[i])
    return "\n".join(lines) + "\n"


def check(text: str, figures: Figures, name: str = "<mutant>") -> None:
    """Load and build one scenario text, counting the outcome in ``figures``."""
    figures.mutants += 1
    try:
        Scenario(loads(text, name))
    except ScenarioError as e:
        figures.refused += 1
        if not e.line:
            figures.refused_without_line += 1
            if len(figures.examples) < 5:
                figures.examples.append(f"no line: {e}")
    except VdrmError:
        figures.refused += 1
    except Exception:
        figures.tracebacks += 1
        if len(figures.examples) < 5:
            figures.examples.append(traceback.format_exc(limit=3) + "--- mutant:\n" + text)
    else:
        figures.loaded += 1


def run(count: int, seed: int = 0) -> Figures:
    """``count`` mutants of the fixture scenarios (deterministic for a seed)."""
    rng = random.Random(seed)
    sources = [p.read_text() for p in sorted(FIXTURES.glob("*.toml"))]
    figures = Figures()
    for _ in range(count):
        check(mutate(rng.choice(sources), rng, rng.randint(1, 3)), figures)
    return figures
