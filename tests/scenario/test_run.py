"""Scenarios on the device: goldens, determinism, and the ground truth against fdinfo deltas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vdrm.scenario.load import load
from vdrm.scenario.run import Scenario

ROOT = Path(__file__).parents[2] / "fixtures"
FIXTURES = sorted((ROOT / "scenarios").glob("*.toml"))


def fdinfo_of(s: Scenario, pid: int, fd: int) -> str:
    efd = s.processes[pid].fds[fd]
    return s.machine.fdinfo(efd.file, pos=efd.pos, flags=efd.flags, mnt_id=efd.mnt_id, ino=efd.ino)


def engines(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^drm-engine-(\S+):\t(\d+) ns$", text, re.M)}


def test_kernel_documentation_example_is_reproduced_byte_for_byte():
    """The fdinfo of Documentation/gpu/panfrost.rst comes out of its scenario exactly."""
    s = Scenario(load(ROOT / "scenarios" / "kernel-doc-example.toml"))
    (pid,) = s.processes
    assert fdinfo_of(s, pid, 3) == (ROOT / "golden" / "kernel-doc-example.fdinfo").read_text()


def test_panthor_kernel_documentation_example_is_reproduced_byte_for_byte():
    """The fdinfo of Documentation/gpu/panthor.rst (the revision with panthor-*-memory and every
    generic line) comes out of its scenario exactly, typed from the documentation with tabs."""
    s = Scenario(load(ROOT / "scenarios" / "panthor-kernel-doc-example.toml"))
    (pid,) = s.processes
    assert fdinfo_of(s, pid, 3) == (ROOT / "golden" / "panthor-kernel-doc-example.fdinfo").read_text()


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_same_file_same_time_same_bytes(path):
    """Two builds of a scenario advanced alike render identical fdinfo, stat and truth."""
    renders = []
    for _ in range(2):
        s = Scenario(load(path))
        s.device.advance(1_234_567_890)
        out = []
        for pid, proc in sorted(s.processes.items()):
            out.append(proc.stat() + proc.status())
            out.extend(fdinfo_of(s, pid, fd) for fd in sorted(proc.fds))
        out.extend(json.dumps(s.machine.truth(f), sort_keys=True) for f in s.clients.values() if not f.closed)
        out.extend(render() for gpu in s.machine.devices for render in gpu.debugfs_files().values())
        renders.append(out)
    assert renders[0] == renders[1]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_truth_equals_what_two_fdinfo_samples_give(path):
    """Utilisation in the ground truth equals delta(drm-engine)/delta(t) between two samples."""
    s = Scenario(load(path))
    s.device.advance(700_000_000)
    for file in s.clients.values():
        before = engines(s.machine.fdinfo(file))
        s.device.advance(333_000_000)
        after = engines(s.machine.fdinfo(file))
        truth = s.machine.truth(file)
        assert truth["clock"]["step_ns"] == 333_000_000
        for engine, sample in after.items():
            expected = (sample - before.get(engine, 0)) / 333_000_000  # a line that appears starts at 0
            assert truth["engines"][engine]["utilisation"] == pytest.approx(expected)


def test_busy_game_uses_both_engines_at_their_duty_cycles():
    """The game's fragment engine is busy 11/16.666 of the time and vertex-tiler 6/16.666."""
    s = Scenario(load(ROOT / "scenarios" / "busy-game.toml"))
    s.device.advance(1_000_000_000)
    s.device.advance(999_960_000)  # a whole number of frames: 60 x 16.666 ms
    truth = s.device.truth(s.clients["game"])["engines"]
    assert truth["fragment"]["utilisation"] == pytest.approx(11 / 16.666, abs=0.01)
    assert truth["vertex-tiler"]["utilisation"] == pytest.approx(6 / 16.666, abs=0.01)


def test_heap_grows_two_mib_per_step():
    """In the heap-growth scenario resident memory climbs by 2 MiB per 100 ms job."""
    s = Scenario(load(ROOT / "scenarios" / "tiler-heap-growth.toml"))
    seen = []
    for _ in range(5):
        seen.append(s.device.truth(s.clients["app"])["memory"]["resident"])
        s.device.advance(100_000_000)
    assert seen == [2 << 20, 4 << 20, 6 << 20, 8 << 20, 10 << 20]


def test_engine_time_goes_back_then_catches_up():
    """The skew scenario's fragment time drops at 1 s and is whole again after 1.5 s."""
    s = Scenario(load(ROOT / "scenarios" / "bug-engine-time-backwards.toml"))
    f = s.clients["app"]
    s.device.advance(990_000_000)
    a = engines(s.device.fdinfo(f))["fragment"]
    s.device.advance(20_000_000)
    b = engines(s.device.fdinfo(f))["fragment"]
    assert b < a
    s.device.advance(600_000_000)
    assert engines(s.device.fdinfo(f))["fragment"] == 1_600_000_000


def test_dup_and_inherited_fds_show_one_client():
    """dup'd fds in one process and an fd shared by parent and child show the same client id."""
    s = Scenario(load(ROOT / "scenarios" / "dup-and-two-opens.toml"))
    (pid,) = s.processes
    ids = [re.search(r"drm-client-id:\t(\d+)", fdinfo_of(s, pid, fd))[1] for fd in (3, 4, 5)]
    assert ids[0] == ids[1] != ids[2]
    s = Scenario(load(ROOT / "scenarios" / "bug-inherited-fd.toml"))
    parent, child = sorted(s.processes)
    assert fdinfo_of(s, parent, 9).split("ino:")[1] == fdinfo_of(s, child, 9).split("ino:")[1]
    assert "flags:\t0100002\n" in fdinfo_of(s, child, 9)


def test_units_and_big_client_ids():
    """Truncating units print 2052 KiB as 2 MiB; client ids past 2^32 print in full."""
    s = Scenario(load(ROOT / "scenarios" / "bug-old-kernel-units.toml"))
    assert "drm-total-memory:\t2 MiB\n" in s.device.fdinfo(s.clients["app"])
    s = Scenario(load(ROOT / "scenarios" / "bug-client-id-past-u32.toml"))
    assert "drm-client-id:\t4294967301\n" in s.device.fdinfo(s.clients["long-running"])


def test_profiling_off_has_no_engine_lines_until_switched_on():
    """With profiling off no engine keys appear; after switching it on, new jobs count."""
    s = Scenario(load(ROOT / "scenarios" / "profiling-off.toml"))
    f = s.clients["app"]
    s.device.advance(100_000_000)
    assert "drm-engine" not in s.device.fdinfo(f)
    s.device.write_profiling("1")
    s.device.advance(100_000_000)
    assert engines(s.device.fdinfo(f))["fragment"] > 0
