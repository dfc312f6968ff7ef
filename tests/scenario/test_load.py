"""Scenario files: every fixture loads, and bad files are refused with FILE:LINE: reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdrm.scenario.load import PID_BASE, ScenarioError, load, loads

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "scenarios").glob("*.toml"))

GOOD = '''
[device]
kernel = "6.18"

[[client]]
id = "a"

[[client.bo]]
id = "heap"
size = "8M"
flags = ["HEAP", "NOEXEC"]
resident = "2M"

[[process]]
pid = 10
comm = "x"
fds = { 3 = "a" }
'''


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_fixture_loads(path):
    """Each scenario in fixtures/ validates and has a description."""
    spec = load(path)
    assert spec.description.strip() and spec.clients


def test_pids_are_placed_above_pid_max_limit():
    """A scenario pid N is presented as PID_MAX_LIMIT + N, where no real pid can be."""
    spec = loads(GOOD)
    assert spec.processes[0].pid == PID_BASE + 10 == 4194314


@pytest.mark.parametrize("text, line, message", [
    (GOOD.replace('kernel = "6.18"', 'kernel = "5.10"'), 3, "kernel '5.10' is not emulated"),
    (GOOD.replace('size = "8M"', 'size = "8 parsecs"'), 10, "is not a size"),
    (GOOD.replace('flags = ["HEAP", "NOEXEC"]', 'flags = ["HEAP"]'), 11, "needs NOEXEC"),
    (GOOD.replace('resident = "2M"', 'resident = "3M"'), 12, "multiple of 2M"),
    (GOOD.replace('fds = { 3 = "a" }', 'fds = { 3 = "b" }'), 17, "client 'b'"),
    (GOOD.replace('comm = "x"', 'comm = "x"\ncolour = "red"'), 17, "unknown key 'colour'"),
    (GOOD.replace('pid = 10', 'pid = "ten"'), 15, "'pid' must be an integer"),
    (GOOD + '\n[[job]]\nclient = "a"\nduration = "soon"\n', 21, "not a duration"),
    (GOOD + '\n[[job]]\nclient = "a"\nduration = "1ms"\nbos = ["nope"]\n', 22, "'nope' is not a BO id"),
    (GOOD + '\n[[event]]\nat = "1s"\nclient = "a"\n', 19, "exactly one of"),
    (GOOD.replace('[[process]]', '[[process]\n'), 14, "not valid TOML"),
])
def test_bad_files_name_the_line_and_the_problem(tmp_path, text, line, message):
    """Each kind of mistake is reported as FILE:LINE: with a message saying what is wrong."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert message in str(err.value)


def test_unreadable_file_is_a_scenario_error(tmp_path):
    """A missing file is refused with its name, not a traceback."""
    with pytest.raises(ScenarioError, match="cannot read"):
        load(tmp_path / "missing.toml")
