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


PANTHOR = '''
[device]
gpus = ["panfrost", "panthor"]
kernel = "6.18"

[[client]]
id = "old"

[[client.bo]]
id = "vbo"
size = "1M"

[[client]]
id = "new"
node = "renderD129"
queues = ["64K"]

[[client.bo]]
id = "tex"
size = "4M"
flags = ["EXCLUSIVE_VM"]

[[client.heap]]
id = "heap"
chunk_size = "2M"
initial_chunks = 2
max_chunks = 4
'''


def test_a_two_gpu_scenario_loads_with_each_clients_card():
    """Clients pick their GPU by node; heaps and queues belong to the Panthor client."""
    spec = loads(PANTHOR)
    old, new = spec.clients
    assert (old.minor, old.gpu, new.minor, new.gpu) == (128, 0, 129, 1)
    assert new.queues == (65536,) and new.heaps[0].max_chunks == 4


@pytest.mark.parametrize("text, line, message", [
    (PANTHOR.replace('"panthor"]', '"panthor", "panthor"]'), 3, "each driver drives one GPU"),
    (PANTHOR.replace('"panthor"]', '"tyr"]'), 3, "gpus is a non-empty list of drivers"),
    (PANTHOR.replace('kernel = "6.18"', 'kernel = "6.8"'), 4, "not emulated for panthor"),
    (PANTHOR.replace('node = "renderD129"', 'node = "renderD130"'), 15, "node must be one of"),
    (PANTHOR.replace('flags = ["EXCLUSIVE_VM"]', 'flags = ["HEAP"]'), 21, "unknown panthor BO flag 'HEAP'"),
    (PANTHOR.replace('size = "1M"', 'size = "1M"\nflags = ["EXCLUSIVE_VM"]'), 12, "unknown panfrost BO flag"),
    (PANTHOR.replace('queues = ["64K"]', 'queues = ["48K"]'), 16, "power of two from 4K to 64K"),
    (PANTHOR.replace('chunk_size = "2M"', 'chunk_size = "64K"'), 25, "from 128K to 8M"),
    (PANTHOR.replace('max_chunks = 4', 'max_chunks = 1'), 27, "max_chunks >= initial_chunks"),
    (PANTHOR.replace('id = "heap"', 'id = "tex"'), 24, "used twice"),
    (PANTHOR.replace('[[client]]\nid = "new"', '[[client]]\nid = "new"\n[[client.heap]]\nid = "h0"\n'
                     '[[client]]\nid = "x"'), 15, "panfrost has no tiler heaps"),
    (PANTHOR + '\n[[event]]\nat = "1s"\nclient = "new"\nfault = "tex+0"\n', 32, "no GPU page faults"),
    (PANTHOR + '\n[[event]]\nat = "1s"\nclient = "new"\nmadvise = { bo = "tex", madv = "DONTNEED" }\n', 32,
     "panthor has no madvise"),
    (PANTHOR + '\n[[event]]\nat = "1s"\nclient = "old"\ntiler_oom = "heap"\n', 32, "belongs to client 'new'"),
    (PANTHOR + '\n[[job]]\nclient = "new"\nduration = "1ms"\ntiler_oom = ["nope"]\n', 32, "'nope' is not a heap id"),
    (PANTHOR + '\n[[job]]\nclient = "old"\nengine = "panthor"\nduration = "1ms"\n', 31, "unknown engine 'panthor'"),
    (PANTHOR.replace('kernel = "6.18"', 'kernel = "6.18"\nprofiling = 5'), 5, "a mask 0..3"),
    ('inodes = { renderD129 = 491 }\n' + PANTHOR.replace('"panfrost", "panthor"', '"panthor"'), 1,
     "not a node of this machine"),
])
def test_bad_panthor_and_two_gpu_files_name_the_line(tmp_path, text, line, message):
    """Mistakes specific to Panthor and to two GPUs are refused as FILE:LINE: with the reason."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert message in str(info.value)


def _many_panthor_clients(n: int) -> str:
    out = ['[device]\ngpus = ["panthor"]\nkernel = "6.18"\n']
    for i in range(n):
        out.append(f'[[client]]\nid = "c{i}"\nnode = "renderD128"\n'
                   f'[[client.heap]]\nid = "h{i}"\nchunk_size = "2M"\n')
    return "".join(out)


def test_loading_reads_the_text_once_however_many_clients(monkeypatch):
    """Each client's sub-tables are found by one forward pass, not a rescan per client: the
    header index sees each line once (10,000 clients mounted in 100 s when it rescanned)."""
    import vdrm.scenario.load as load_module

    scanned = []

    class Counting:
        def __init__(self, pattern):
            self.pattern = pattern

        def match(self, line):
            scanned.append(line)
            return self.pattern.match(line)

    monkeypatch.setattr(load_module._Lines, "_HEADER", Counting(load_module._Lines._HEADER))
    text = _many_panthor_clients(300)
    spec = loads(text)
    assert len(spec.clients) == 300 and [c.heaps[0].id for c in spec.clients] == [f"h{i}" for i in range(300)]
    assert len(scanned) <= len(text.splitlines())


def test_a_heap_error_names_its_own_line_among_many_clients(tmp_path):
    """The header attribution that replaced the rescans still puts a heap's error on its line."""
    text = _many_panthor_clients(50).replace('id = "h37"\nchunk_size = "2M"', 'id = "h37"\nchunk_size = "64K"')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    line = text.splitlines().index('id = "h37"') + 2
    assert str(info.value).startswith(f"{path}:{line}: ") and "from 128K to 8M" in str(info.value)
