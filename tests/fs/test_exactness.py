"""The kernel caches proc/ names and fdinfo pages (vdrm.fs.cache): nothing it serves is stale.

Every test warms the kernel's cache first (lookups, listings, two reads of each fdinfo, so
names are cached and pages kept), then changes something and checks, right after the
call that changed it returned, that the mount shows the new state. With a timeout cache
and no invalidation each of them fails: the names are cached for minutes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.fs.conftest import Daemon

ROOT = Path(__file__).resolve().parents[2]
BUSY_GAME = ROOT / "fixtures" / "scenarios" / "busy-game.toml"
GAME_PID, GAME_FD = 4196305, 7


# -- looking at the mount ---------------------------------------------------------------


def node(mnt: Path, name: str = "renderD128") -> str:
    return f"{mnt}/dev/dri/{name}"


def fdinfo_path(mnt: Path, pid: int, fd: int) -> str:
    return f"{mnt}/proc/{pid}/fdinfo/{fd}"


def read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode()


def value(text: str, key: str) -> str:
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return rest.strip()
    raise AssertionError(f"no {key} in {text!r}")


def drm_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("drm-")]


def warm(mnt: Path, pid: int, *fds: int) -> None:
    """Make the kernel cache everything about these fds: names, attributes, pages."""
    os.stat(f"{mnt}/proc/{pid}")
    listed = os.listdir(f"{mnt}/proc/{pid}/fd")
    os.listdir(f"{mnt}/proc")
    for fd in fds:
        assert str(fd) in listed
        os.lstat(f"{mnt}/proc/{pid}/fd/{fd}")
        assert os.readlink(f"{mnt}/proc/{pid}/fd/{fd}") in ("/dev/dri/renderD128", "/dev/dri/card0")
        os.stat(fdinfo_path(mnt, pid, fd))
        assert read(fdinfo_path(mnt, pid, fd)) == read(fdinfo_path(mnt, pid, fd))


def fd_gone(mnt: Path, pid: int, fd: int) -> list[str]:
    """What still shows fd ``fd`` of ``pid`` (empty: nothing)."""
    stale = []
    for path in (f"{mnt}/proc/{pid}/fd/{fd}", fdinfo_path(mnt, pid, fd)):
        if os.path.lexists(path):
            stale.append(f"{path} exists")
    try:
        read(fdinfo_path(mnt, pid, fd))
        stale.append("its fdinfo opens")
    except FileNotFoundError:
        pass
    try:
        if str(fd) in os.listdir(f"{mnt}/proc/{pid}/fd"):
            stale.append("fd/ lists it")
    except FileNotFoundError:
        pass
    return stale


def pid_gone(mnt: Path, pid: int) -> list[str]:
    stale = []
    if os.path.lexists(f"{mnt}/proc/{pid}"):
        stale.append(f"proc/{pid} exists")
    if str(pid) in os.listdir(f"{mnt}/proc"):
        stale.append(f"proc/ lists {pid}")
    return stale


def request(fd: int, line: str) -> str:
    os.write(fd, line.encode() + b"\n")
    reply = os.read(fd, 4096).decode()
    assert reply.startswith("ok"), reply
    return reply


def truth_of(mnt: Path, text: str) -> list[str]:
    """The drm- lines of the client's own debugfs fdinfo (rendered fresh, never cached)."""
    client = value(text, "drm-client-id")
    return drm_lines(read(f"{mnt}/sys/kernel/debug/dri/128/vdrm-clients/{client}/fdinfo"))


# -- children ------------------------------------------------------------------------------


class Child:
    """A forked child that runs ``steps[i]`` each time the parent says :meth:`go`."""

    def __init__(self, steps: list[Callable[[], None]]):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            status = 0
            try:
                os.close(self._to_w)
                os.close(self._from_r)
                for step in steps:
                    if os.read(to_r, 1) != b"g":
                        break
                    step()
                    os.write(from_w, b"d")
                os.read(to_r, 1)
            except BaseException:
                status = 1
            os._exit(status)
        os.close(to_r)
        os.close(from_w)

    def go(self) -> None:
        """Run the next step; return once it has returned in the child."""
        os.write(self._to_w, b"g")
        assert os.read(self._from_r, 1) == b"d", "the child failed"

    def end(self) -> int:
        """Let the child exit; its exit status."""
        try:
            os.write(self._to_w, b"e")
        except BrokenPipeError:
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self._to_w)
        os.close(self._from_r)
        return status


# -- closing -------------------------------------------------------------------------------


def test_a_closed_fd_is_gone_the_moment_close_returns(mnt: Daemon) -> None:
    me = os.getpid()
    for _ in range(20):
        fd = os.open(node(mnt.path), os.O_RDWR)
        warm(mnt.path, me, fd)
        os.close(fd)
        assert fd_gone(mnt.path, me, fd) == []
        assert pid_gone(mnt.path, me) == []


def test_a_closed_dup_is_gone_and_its_original_stays(mnt: Daemon) -> None:
    me = os.getpid()
    fd = os.open(node(mnt.path), os.O_RDWR)
    try:
        for _ in range(10):
            dup = os.dup(fd)
            warm(mnt.path, me, fd, dup)
            os.close(dup)  # FUSE sends FLUSH, but no RELEASE: the open file lives on
            assert fd_gone(mnt.path, me, dup) == []
            assert value(read(fdinfo_path(mnt.path, me, fd)), "drm-client-id")
    finally:
        os.close(fd)
    assert fd_gone(mnt.path, me, fd) == [] and pid_gone(mnt.path, me) == []


def test_dup2_over_a_vdrm_fd_shows_the_new_client_at_once(mnt: Daemon) -> None:
    me = os.getpid()
    a = os.open(node(mnt.path), os.O_RDWR)
    b = os.open(node(mnt.path), os.O_RDWR)
    try:
        warm(mnt.path, me, a, b)
        b_id = value(read(fdinfo_path(mnt.path, me, b)), "drm-client-id")
        assert value(read(fdinfo_path(mnt.path, me, a)), "drm-client-id") != b_id
        os.dup2(b, a)
        assert value(read(fdinfo_path(mnt.path, me, a)), "drm-client-id") == b_id
    finally:
        os.close(a)
        os.close(b)


def test_an_inherited_fd_closed_in_the_child_is_gone(mnt: Daemon) -> None:
    fd = os.open(node(mnt.path), os.O_RDWR)
    try:
        child = Child([lambda: os.close(fd)])
        try:
            warm(mnt.path, child.pid, fd)
            warm(mnt.path, os.getpid(), fd)
            child.go()
            assert fd_gone(mnt.path, child.pid, fd) == [] and pid_gone(mnt.path, child.pid) == []
            assert read(fdinfo_path(mnt.path, os.getpid(), fd))  # the parent's stays
        finally:
            assert child.end() == 0
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["exit", "SIGKILL"])
def test_a_process_that_ended_is_gone(mnt: Daemon, how: str) -> None:
    fd = os.open(node(mnt.path), os.O_RDWR)
    try:
        for _ in range(3):
            child = Child([lambda: time.sleep(3600)] if how == "SIGKILL" else [])
            warm(mnt.path, child.pid, fd)
            if how == "SIGKILL":
                os.write(child._to_w, b"g")  # into its sleep
                os.kill(child.pid, signal.SIGKILL)
                os.waitpid(child.pid, 0)
                os.close(child._to_w)
                os.close(child._from_r)
            else:
                assert child.end() == 0
            assert fd_gone(mnt.path, child.pid, fd) == [] and pid_gone(mnt.path, child.pid) == []
    finally:
        os.close(fd)


def test_exec_closes_a_cloexec_fd_and_it_is_gone(mnt: Daemon) -> None:
    fd = os.open(node(mnt.path), os.O_RDWR | os.O_CLOEXEC)
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    os.set_inheritable(ready_w, True)
    os.set_inheritable(hold_r, True)
    script = "import os, sys; os.write(int(sys.argv[1]), b'x'); os.read(int(sys.argv[2]), 1)"
    try:
        child = Child([lambda: os.execv(sys.executable, [sys.executable, "-c", script, str(ready_w), str(hold_r)])])
        os.close(ready_w)
        os.close(hold_r)
        warm(mnt.path, child.pid, fd)
        os.write(child._to_w, b"g")
        assert os.read(ready_r, 1) == b"x"  # the new program runs: exec has returned
        assert fd_gone(mnt.path, child.pid, fd) == [] and pid_gone(mnt.path, child.pid) == []
        os.write(hold_w, b"e")
        os.waitpid(child.pid, 0)
    finally:
        for f in (fd, ready_r, hold_w, child._to_w, child._from_r):
            os.close(f)


# -- new fds -------------------------------------------------------------------------------


def _next_fd() -> int:
    probe = os.open("/dev/null", os.O_RDONLY)
    os.close(probe)
    return probe


def test_a_new_fd_is_there_the_moment_open_or_dup_returns(mnt: Daemon) -> None:
    me = os.getpid()
    fds: list[int] = []
    try:
        for i in range(6):
            nxt = _next_fd()
            assert not os.path.lexists(f"{mnt.path}/proc/{me}/fd/{nxt}")  # asked, answered ENOENT
            if fds:
                os.listdir(f"{mnt.path}/proc/{me}/fd")
                warm(mnt.path, me, *fds)
            fd = os.dup(fds[0]) if i % 2 else os.open(node(mnt.path), os.O_RDWR)
            assert fd == nxt
            fds.append(fd)
            assert str(fd) in os.listdir(f"{mnt.path}/proc/{me}/fd")
            assert os.readlink(f"{mnt.path}/proc/{me}/fd/{fd}") == "/dev/dri/renderD128"
            assert value(read(fdinfo_path(mnt.path, me, fd)), "drm-client-id")
    finally:
        for fd in fds:
            os.close(fd)


def test_a_forked_child_and_its_dups_are_there_at_once(mnt: Daemon) -> None:
    me = os.getpid()
    fd = os.open(node(mnt.path), os.O_RDWR)
    try:
        warm(mnt.path, me, fd)
        mine = value(read(fdinfo_path(mnt.path, me, fd)), "drm-client-id")
        child = Child([lambda: os.dup2(fd, 40)])  # FUSE hears of neither the fork nor the dup
        try:
            assert str(child.pid) in os.listdir(f"{mnt.path}/proc")
            assert value(read(fdinfo_path(mnt.path, child.pid, fd)), "drm-client-id") == mine
            warm(mnt.path, child.pid, fd)
            assert not os.path.lexists(f"{mnt.path}/proc/{child.pid}/fd/40")
            child.go()
            assert "40" in os.listdir(f"{mnt.path}/proc/{child.pid}/fd")
            assert value(read(fdinfo_path(mnt.path, child.pid, 40)), "drm-client-id") == mine
        finally:
            assert child.end() == 0
    finally:
        os.close(fd)


# -- content -------------------------------------------------------------------------------


def test_fdinfo_shows_a_requests_effect_once_its_reply_is_read(own_mount) -> None:  # type: ignore[no-untyped-def]
    mnt = own_mount()
    me = os.getpid()
    other = os.open(node(mnt.path, "card0"), os.O_RDWR)  # the master: it may flink
    fd = os.open(node(mnt.path, "card0"), os.O_RDWR)
    try:
        magic = request(fd, "GET_MAGIC").split("magic=")[1].split()[0]
        request(other, f"AUTH_MAGIC magic={magic}")  # fd may GEM_OPEN
        handle = request(other, "CREATE_BO size=64K").split("handle=")[1].split()[0]
        name = request(other, f"GEM_FLINK handle={handle}").split("name=")[1].split()[0]
        for i in range(12):
            warm(mnt.path, me, fd, other)
            before = read(fdinfo_path(mnt.path, me, fd))
            if i % 3 == 2:  # a request of another client that changes this one's numbers
                request(fd, f"GEM_OPEN name={name}")
            else:
                request(fd, "CREATE_BO size=4K")
            after = read(fdinfo_path(mnt.path, me, fd))
            assert after != before
            assert drm_lines(after) == truth_of(mnt.path, after)
        request(other, f"GEM_CLOSE handle={handle}")  # shared memory of fd's client drops
        after = read(fdinfo_path(mnt.path, me, fd))
        assert drm_lines(after) == truth_of(mnt.path, after)
    finally:
        os.close(fd)
        os.close(other)


def test_a_clock_step_shows_once_the_clock_write_returns(own_mount) -> None:  # type: ignore[no-untyped-def]
    daemon = own_mount("--scenario", str(BUSY_GAME))
    path = fdinfo_path(daemon.path, GAME_PID, GAME_FD)
    clock = f"{daemon.path}/sys/kernel/debug/dri/128/vdrm-clock"
    warm(daemon.path, GAME_PID, GAME_FD)
    seen = {read(path)}
    for step in ("16ms", "1ms", "100ms", "16ms", "1s"):
        read(path)
        with open(clock, "w") as f:
            f.write(step)
        text = read(path)
        assert text not in seen, f"a {step} step did not show"
        assert drm_lines(text) == truth_of(daemon.path, text)
        seen.add(text)


# -- under load ----------------------------------------------------------------------------


def _worker(mnt: str, rounds: int, failures: "multiprocessing.Queue[str]") -> None:
    mnt_path = Path(mnt)
    me = os.getpid()
    try:
        for i in range(rounds):
            fd = os.open(node(mnt_path), os.O_RDWR)
            warm(mnt_path, me, fd)
            request(fd, "CREATE_BO size=4K")
            text = read(fdinfo_path(mnt_path, me, fd))
            if drm_lines(text) != truth_of(mnt_path, text):
                failures.put(f"round {i}: fdinfo after CREATE_BO is stale")
            dup = os.dup(fd)
            warm(mnt_path, me, fd, dup)
            os.close(dup)
            stale = fd_gone(mnt_path, me, dup)
            if stale:
                failures.put(f"round {i}: closed dup {dup}: {stale}")
            os.close(fd)
            stale = fd_gone(mnt_path, me, fd) + pid_gone(mnt_path, me)
            if stale:
                failures.put(f"round {i}: closed fd {fd}: {stale}")
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        failures.put(f"{type(e).__name__}: {e}")


def _walker(mnt: str, stop: "multiprocessing.synchronize.Event") -> None:
    proc = f"{mnt}/proc"
    while not stop.is_set():
        for pid in os.listdir(proc):
            try:
                for fd in os.listdir(f"{proc}/{pid}/fd"):
                    read(f"{proc}/{pid}/fdinfo/{fd}")
            except OSError:
                continue


def test_nothing_is_stale_under_load_from_several_processes(mnt: Daemon) -> None:
    ctx = multiprocessing.get_context("fork")
    failures = ctx.Queue()
    stop = ctx.Event()
    walkers = [ctx.Process(target=_walker, args=(str(mnt.path), stop)) for _ in range(2)]
    workers = [ctx.Process(target=_worker, args=(str(mnt.path), 15, failures)) for _ in range(4)]
    for p in walkers + workers:
        p.start()
    for p in workers:
        p.join(timeout=300)
    stop.set()
    for p in walkers:
        p.join(timeout=60)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
    assert all(p.exitcode == 0 for p in workers + walkers)


# -- emulated processes: listings the kernel keeps --------------------------------------

CLOSING = '''
description = "two emulated processes whose clients close at 1 s, 2 s, 3 s"
[device]
kernel = "6.18"
[[client]]
id = "a"
[[client]]
id = "b"
[[client]]
id = "c"
[[process]]
pid = 100
comm = "kept"
fds = { 3 = "a", 4 = "b" }
[[process]]
pid = 101
comm = "leaves"
fds = { 3 = "c" }
[[event]]
at = "1s"
client = "b"
close_client = true
[[event]]
at = "2s"
client = "c"
close_client = true
'''
KEPT, LEAVES = 4194304 + 100, 4194304 + 101


def _drop_unused_dentries() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping the kernel's dentries needs root")
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
    except OSError as e:  # a read-only /proc/sys (some containers)
        pytest.skip(f"cannot drop the kernel's dentries here: {e}")


def _listing_walker(mnt: str, stop: "multiprocessing.synchronize.Event") -> None:
    """Keep the emulated processes' listings in the kernel's cache, as a monitor would."""
    while not stop.is_set():
        for pid in (KEPT, LEAVES):
            for directory in ("fd", "fdinfo"):
                try:
                    os.listdir(f"{mnt}/proc/{pid}/{directory}")
                except OSError:
                    pass


def test_a_scenario_close_leaves_every_listing_once_the_clock_write_returns(own_mount, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An emulated process's fd/ and fdinfo/ listings are cached by the kernel (nothing
    else changes them), so a close_client event must reach them before the vdrm-clock
    write that played it returns: listings, names and the process itself, with walkers
    refilling the cache all the while."""
    scenario = tmp_path / "closing.toml"
    scenario.write_text(CLOSING)
    ctx = multiprocessing.get_context("fork")
    for _ in range(3):
        daemon = own_mount("--scenario", str(scenario))
        mnt = daemon.path
        clock = f"{mnt}/sys/kernel/debug/dri/128/vdrm-clock"
        warm(mnt, KEPT, 3, 4)
        warm(mnt, LEAVES, 3)
        assert sorted(os.listdir(f"{mnt}/proc/{KEPT}/fdinfo")) == ["3", "4"]
        # a monitor that keeps the directory open keeps its inode, and so its cached listing
        held = os.open(f"{mnt}/proc/{KEPT}/fd", os.O_RDONLY | os.O_DIRECTORY)
        assert sorted(os.listdir(held)) == ["3", "4"]
        # and once the kernel has dropped the names (memory pressure), invalidating a name
        # no longer tells it the directory changed: only invalidating the directory does
        _drop_unused_dentries()
        assert sorted(os.listdir(held)) == ["3", "4"]
        stop = ctx.Event()
        walkers = [ctx.Process(target=_listing_walker, args=(str(mnt), stop)) for _ in range(2)]
        for p in walkers:
            p.start()
        try:
            time.sleep(0.05)
            with open(clock, "w") as f:
                f.write("1s")
            assert fd_gone(mnt, KEPT, 4) == []
            assert sorted(os.listdir(f"{mnt}/proc/{KEPT}/fdinfo")) == ["3"]
            assert sorted(os.listdir(f"{mnt}/proc/{KEPT}/fd")) == ["3"]
            assert sorted(os.listdir(held)) == ["3"]
            assert read(fdinfo_path(mnt, KEPT, 3))
            time.sleep(0.05)
            with open(clock, "w") as f:
                f.write("1s")
            assert pid_gone(mnt, LEAVES) == []
            assert not os.path.lexists(f"{mnt}/proc/{LEAVES}/fd/3")
            assert sorted(os.listdir(f"{mnt}/proc/{KEPT}/fd")) == ["3"]
        finally:
            stop.set()
            for p in walkers:
                p.join(timeout=60)
            os.close(held)
        daemon.stop()
