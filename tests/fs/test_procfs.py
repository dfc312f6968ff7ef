"""The host /proc probe (vdrm.fs.procfs) on a fake /proc: what it reads to answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vdrm.fs.procfs import FdRef, ProcessTable

PID = 4242


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ProcessTable, list[int]]:
    """A process holding 500 DRM fds, fd n on node inode 1000 + n; the fds probed, in order."""
    fd_dir = tmp_path / str(PID) / "fd"
    fd_dir.mkdir(parents=True)
    for n in range(500):
        (fd_dir / str(n)).symlink_to("/dev/dri/renderD128")
    procs = ProcessTable(lambda ino: True, proc=str(tmp_path))
    probed: list[int] = []

    def probe(pid: int, fd: int) -> FdRef | None:
        probed.append(fd)
        return FdRef(pid, fd, 0, 0o2, 27, 1000 + fd) if (fd_dir / str(fd)).is_symlink() else None

    monkeypatch.setattr(procs, "_probe", probe)
    return procs, probed


def test_the_owner_check_reads_only_the_fd_it_was_last_seen_on(table) -> None:  # type: ignore[no-untyped-def]
    """With the fd an open was last seen on, finding it held costs one probe, not a scan."""
    procs, probed = table
    assert procs.holding_fd(PID, 1400) == 400  # found by a scan from fd 0
    assert len(probed) == 401
    probed.clear()
    assert procs.holding_fd(PID, 1400, hint=400) == 400
    assert probed == [400]


def test_a_stale_hint_falls_back_to_the_scan(table) -> None:  # type: ignore[no-untyped-def]
    """A hint that no longer names the open is checked, then every fd is looked at."""
    procs, probed = table
    assert procs.holding_fd(PID, 1400, hint=7) == 400
    assert probed[0] == 7 and len(probed) == 402
    assert procs.holding_fd(PID, 9999, hint=400) is None
    assert procs.holds(PID, 1003) and not procs.holds(PID, 9999)


def test_held_fdinfo_reads_each_fd_as_it_is_now() -> None:
    """A kept fdinfo file read again shows what a fresh open would: a flag set with fcntl,
    ENOENT once the fd is closed, and the new file once its number is reused."""
    import fcntl

    from vdrm.fs.procfs import HeldFdinfo, parse_fdinfo_header

    held = HeldFdinfo(size=2)
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        pid = os.getpid()
        before = parse_fdinfo_header(held.read(pid, fd).decode())
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
        after = parse_fdinfo_header(held.read(pid, fd).decode())
        assert after[1] == before[1] | os.O_NONBLOCK
        os.close(fd)
        with pytest.raises(OSError):
            held.read(pid, fd)
        fd = os.open("/proc/self/status", os.O_RDONLY)  # the lowest free number: the same one
        assert parse_fdinfo_header(held.read(pid, fd).decode())[3] == os.fstat(fd).st_ino
        others = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
        for other in others:
            held.read(pid, other)
        assert len(held._files) == 2  # bounded: the least recently read were closed
        for other in others:
            os.close(other)
    finally:
        os.close(fd)
        held.close()


def test_held_fdinfo_gives_its_files_back_when_the_daemon_runs_out_of_fds() -> None:
    """EMFILE on a new fdinfo closes the kept ones and opens again: running low on fds
    never makes a real fd look closed."""
    import resource

    from vdrm.fs.procfs import HeldFdinfo

    held = HeldFdinfo(size=64)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    mine = [os.open("/dev/null", os.O_RDONLY) for _ in range(8)]
    try:
        for fd in mine[:4]:
            held.read(os.getpid(), fd)
        probe = os.open("/dev/null", os.O_RDONLY)  # the limit: every fd up to here, no more
        resource.setrlimit(resource.RLIMIT_NOFILE, (probe + 1, hard))
        assert held.read(os.getpid(), mine[5]).startswith(b"pos:")
        assert len(held._files) == 1
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(probe)
        for fd in mine:
            os.close(fd)
        held.close()
