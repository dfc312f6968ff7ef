"""The host /proc probe (vdrm.fs.procfs) on a fake /proc: what it reads to answer."""

from __future__ import annotations

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
