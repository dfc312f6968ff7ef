"""Hostile scenario files: every known crash site is a ScenarioError with a line; mutants never trace back."""

from __future__ import annotations

import pytest

from vdrm.fuzz import scenario as fuzz
from vdrm.scenario.load import ScenarioError, loads

BASE = """\
[device]
ram = "64M"

[[client]]
id = "a"

[[client.bo]]
id = "b"
size = "4K"
flags = ["NOEXEC"]

[[process]]
pid = 10
comm = "app"
fds = { 3 = "a" }
fd_flags = { 3 = "02" }

[[job]]
client = "a"
duration = "1ms"
bos = ["b"]

[[event]]
at = "1ms"
client = "a"
engine_skew = { fragment = "1ms" }
"""


def _replace(key_line: str, new: str) -> tuple[str, int]:
    lines = BASE.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(key_line))
    lines[index] = new
    return "\n".join(lines) + "\n", index + 1


def test_the_base_scenario_loads() -> None:
    """The scenario the crash sites are planted in is valid as it stands."""
    loads(BASE)


@pytest.mark.parametrize(("key", "value"), [
    ("flags", "flags = [[]]"),
    ("fds", 'fds = { 3 = ["a"] }'),
    ("bos", 'bos = [["b"]]'),
    ("fd_flags", "fd_flags = { 3 = inf }"),
    ("fd_flags", "fd_flags = { 3 = [1] }"),
    ("fds", 'fds = { "²" = "a" }'),
    ("engine_skew", "engine_skew = { fragment = 1.5 }"),
    ("engine_skew", "engine_skew = { fragment = [1] }"),
    ("engine_skew", "engine_skew = { fragment = {} }"),
    ("ram", 'ram = "99999999999G"'),
    ("ram", "ram = 99999999999999999"),
])
def test_a_crash_site_is_a_scenario_error_at_its_line(key: str, value: str) -> None:
    """Each mutant that used to crash the loader (a traceback, a MemoryError) is refused, naming its line."""
    text, line = _replace(key + " =", value)
    with pytest.raises(ScenarioError) as e:
        loads(text, "s.toml")
    assert e.value.line == line, e.value
    assert str(e.value).startswith(f"s.toml:{line}: ")


def test_an_unterminated_string_names_the_last_line() -> None:
    """A TOML error 'at end of document' still carries a line number."""
    with pytest.raises(ScenarioError) as e:
        loads(BASE + 'description = "open\n')
    assert e.value.line == len(BASE.splitlines()) + 1


def test_mutated_scenarios_never_trace_back() -> None:
    """2,000 mutants of the fixture scenarios: each loads or is refused with a line; none traces back."""
    figures = fuzz.run(2000, seed=13)
    assert figures.tracebacks == 0, figures.examples
    assert figures.refused_without_line == 0, figures.examples
    assert figures.refused > 0 and figures.loaded > 0
