"""The pyfuse3 adapter without a mount: the error edge and waiting for the device clock."""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Any

import pyfuse3
import pytest
import trio

from tests.fs.conftest import FakeDevice, FakeProcesses
from vdrm.errors import NoEntry
from vdrm.fs import operations, waits
from vdrm.fs.operations import Operations
from vdrm.fs.tree import ROOT_INO, DrmOpen, Tree
from vdrm.kernel.clock import MonotonicClock


class Ctx:
    """Stands in for pyfuse3.RequestContext (which cannot be built outside a request)."""

    pid, uid, gid, umask = 4242, 0, 0, 0o022


def make_ops() -> tuple[Operations, Tree, FakeDevice]:
    device, procs = FakeDevice(), FakeProcesses()
    device.clock = MonotonicClock()
    tree = Tree(device, procs)  # type: ignore[arg-type]
    procs.is_open_ino = tree.is_open_ino
    return Operations(tree), tree, device


def run(fn: Any) -> Any:
    return trio.run(fn)


async def open_node(ops: Operations) -> tuple[int, DrmOpen]:
    dev = (await ops.lookup(ROOT_INO, b"dev", Ctx())).st_ino
    dri = (await ops.lookup(dev, b"dri", Ctx())).st_ino
    node = (await ops.lookup(dri, b"renderD128", Ctx())).st_ino
    info = await ops.open(node, os.O_RDWR, Ctx())
    assert info.direct_io
    handle = ops._files[info.fh]
    assert isinstance(handle, DrmOpen)
    return info.fh, handle


def test_engine_errors_become_their_errno(caplog: pytest.LogCaptureFixture) -> None:
    """A VdrmError from the tree reaches the kernel as FUSEError with its errno and logs no error."""
    ops, _, _ = make_ops()

    async def main() -> None:
        with pytest.raises(pyfuse3.FUSEError) as e:
            await ops.lookup(ROOT_INO, b"nope", Ctx())
        assert e.value.errno == errno.ENOENT

    with caplog.at_level(logging.DEBUG, logger="vdrm.fs.operations"):
        run(main)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_any_other_exception_is_logged_and_answered_eio(caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside a handler is answered with EIO and logged once with its traceback; the next request works."""
    ops, tree, _ = make_ops()
    real_getattr = tree.getattr
    monkeypatch.setattr(tree, "getattr", lambda ino: 1 / 0)

    async def main() -> None:
        with pytest.raises(pyfuse3.FUSEError) as e:
            await ops.getattr(ROOT_INO, Ctx())
        assert e.value.errno == errno.EIO
        monkeypatch.setattr(tree, "getattr", real_getattr)
        assert (await ops.getattr(ROOT_INO, Ctx())).st_ino == ROOT_INO

    with caplog.at_level(logging.ERROR, logger="vdrm.fs.operations"):
        run(main)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "request failed: getattr" in errors[0].getMessage()
    assert errors[0].exc_info and isinstance(errors[0].exc_info[1], ZeroDivisionError)


def test_forget_never_raises(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """forget (which has no reply) swallows and logs a failure instead of stopping the session."""
    ops, tree, _ = make_ops()
    monkeypatch.setattr(tree, "forget", lambda ino, n: (_ for _ in ()).throw(NoEntry("x")))
    with caplog.at_level(logging.ERROR, logger="vdrm.fs.operations"):
        run(lambda: ops.forget([(99, 1)]))
    assert any("forget" in r.getMessage() for r in caplog.records)


def test_readdir_reports_entries_and_counts_them() -> None:
    """opendir/readdir/releasedir list a directory with attributes and leave no inode behind."""
    ops, tree, _ = make_ops()
    baseline = tree.known_inodes()
    replied: list[tuple[bytes, int]] = []

    def fake_reply(token: Any, name: bytes, attr: pyfuse3.EntryAttributes, next_id: int) -> bool:
        replied.append((name, attr.st_mode))
        return len(replied) != 4  # the kernel's buffer is full at the fourth entry

    async def main() -> None:
        dev = (await ops.lookup(ROOT_INO, b"dev", Ctx())).st_ino
        dri = (await ops.lookup(dev, b"dri", Ctx())).st_ino
        fh = await ops.opendir(dri, Ctx())
        await ops.readdir(fh, 0, None)
        await ops.readdir(fh, 3, None)
        await ops.releasedir(fh)

    saved = pyfuse3.readdir_reply
    pyfuse3.readdir_reply = fake_reply
    try:
        run(main)
    finally:
        pyfuse3.readdir_reply = saved
    assert [n for n, _ in replied] == [b".", b"..", b"card0", b"renderD128", b"renderD128", b"by-path"]
    # the minted card0 and the second renderD128 reached the kernel; the refused one is dropped
    assert tree.known_inodes() == baseline + 2


def test_a_request_waiting_for_the_clock_returns_its_write_and_blocks_the_read() -> None:
    """A request that must wait for the clock: write(2) returns at once, the read of its reply waits for it."""
    ops, _, device = make_ops()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ops.start(nursery)
            fh, handle = await open_node(ops)
            until = device.clock.now_ns() + 200_000_000
            assert await ops.write(fh, 0, f"WAIT until={until}\nECHO text=next\n".encode()) > 0
            assert device.clock.now_ns() < until  # the write did not wait
            assert (await ops.read(fh, 0, 4096)).startswith(b"ok at=")
            assert device.clock.now_ns() >= until
            assert await ops.read(fh, 0, 4096) == b"ok text=next\n"
            assert await ops.read(fh, 0, 4096) == b""  # nothing pending: end-of-file, no wait
            await ops.release(fh)

    run(main)


def test_a_waiting_reply_wakes_a_poller_and_nonblocking_reads_are_eagain() -> None:
    """While a reply waits for the clock, poll has no POLLIN and an O_NONBLOCK read is EAGAIN; the reply then wakes the poller."""
    ops, _, device = make_ops()

    class Waker:
        notified = 0

        def notify(self) -> None:
            Waker.notified += 1

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ops.start(nursery)
            node = await _node_ino(ops)
            fh = (await ops.open(node, os.O_RDWR | os.O_NONBLOCK, Ctx())).fh
            await ops.write(fh, 0, f"WAIT until={device.clock.now_ns() + 300_000_000}\n".encode())
            assert await ops.poll(0, fh, Waker(), Ctx()) & 1 == 0  # POLLIN not set
            with pytest.raises(pyfuse3.FUSEError) as e:
                await ops.read(fh, 0, 4096)
            assert e.value.errno == errno.EAGAIN
            await ops.write(fh, 0, b"ECHO text=queued\n")  # answered after the wait, in order
            await trio.sleep(0.4)
            assert Waker.notified == 1
            assert (await ops.read(fh, 0, 4096)).startswith(b"ok at=")
            assert await ops.read(fh, 0, 4096) == b"ok text=queued\n"

    run(main)


async def _node_ino(ops: Operations) -> int:
    dev = (await ops.lookup(ROOT_INO, b"dev", Ctx())).st_ino
    dri = (await ops.lookup(dev, b"dri", Ctx())).st_ino
    return (await ops.lookup(dri, b"renderD128", Ctx())).st_ino


def test_blocked_reads_are_capped_and_never_hold_other_requests() -> None:
    """Past MAX_BLOCKED_READS waiting readers, one more read is EAGAIN at once, and other requests are answered meanwhile."""
    ops, tree, device = make_ops()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ops.start(nursery)
            until = device.clock.now_ns() + 2_000_000_000
            fhs = []
            for _ in range(waits.MAX_BLOCKED_READS + 1):
                fh, _ = await open_node(ops)
                await ops.write(fh, 0, f"WAIT until={until}\n".encode())
                fhs.append(fh)
            for fh in fhs[:-1]:
                nursery.start_soon(ops.read, fh, 0, 4096)
            await trio.sleep(0.05)
            assert ops._blocked_reads == waits.MAX_BLOCKED_READS
            with pytest.raises(pyfuse3.FUSEError) as e:
                await ops.read(fhs[-1], 0, 4096)
            assert e.value.errno == errno.EAGAIN
            assert (await ops.getattr(ROOT_INO, Ctx())).st_ino == ROOT_INO
            ops.stop()

    run(main)


def test_a_signal_interrupts_a_blocked_read_with_eintr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal pending in the file's holder ends the blocked read: the waiting request answers EINTR, the next one runs."""
    ops, _, device = make_ops()
    pending = {"mask": 0}
    monkeypatch.setattr(waits, "pending_signals", lambda pid, proc="/proc": pending["mask"])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ops.start(nursery)
            fh, _ = await open_node(ops)
            await ops.write(fh, 0, f"WAIT until={device.clock.now_ns() + 30_000_000_000}\nECHO text=after\n".encode())

            async def signal_later() -> None:
                await trio.sleep(0.1)
                pending["mask"] = 1 << 13  # SIGPIPE, say

            nursery.start_soon(signal_later)
            reply = await ops.read(fh, 0, 4096)
            assert reply.startswith(b"error EINTR "), reply
            pending["mask"] = 0
            assert await ops.read(fh, 0, 4096) == b"ok text=after\n"
            ops.stop()

    run(main)


def test_stop_ends_every_wait() -> None:
    """stop() (before pyfuse3.terminate) releases a read waiting for the clock at once."""
    ops, _, device = make_ops()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ops.start(nursery)
            fh, _ = await open_node(ops)
            nursery.start_soon(_stop_later, ops)
            await ops.write(fh, 0, f"WAIT until={device.clock.now_ns() + 30_000_000_000}\n".encode())
            with trio.fail_after(2):
                await ops.read(fh, 0, 4096)

    run(main)


async def _stop_later(ops: Operations) -> None:
    await trio.sleep(0.1)
    ops.stop()


def test_the_namespace_is_fixed() -> None:
    """create is ENOENT and every other namespace change EPERM, as on procfs and sysfs."""
    ops, _, _ = make_ops()

    async def main() -> None:
        with pytest.raises(pyfuse3.FUSEError) as e:
            await ops.create(ROOT_INO, b"x", 0o644, os.O_RDWR, Ctx())
        assert e.value.errno == errno.ENOENT
        for call in (ops.mkdir(ROOT_INO, b"d", 0o755, Ctx()), ops.unlink(ROOT_INO, b"dmesg", Ctx()),
                     ops.rename(ROOT_INO, b"dmesg", ROOT_INO, b"x", 0, Ctx())):
            with pytest.raises(pyfuse3.FUSEError) as e:
                await call
            assert e.value.errno == errno.EPERM

    run(main)


class _Emulating(FakeProcesses):
    """pid 100 stands for a scenario's process (its fds change only by scenario events)."""

    def emulated(self, pid: int) -> bool:
        return pid == 100


def test_open_replies_ask_the_kernel_for_what_vdrm_can_invalidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FLUSH for files whose close vdrm needs not see; a kept listing only for an emulated
    process's fd/ and fdinfo/ (a host process's gain fds by dup and fork unseen)."""
    from vdrm.fs import caller

    asked: dict[int, int] = {}
    monkeypatch.setattr(caller, "open_flags", lambda fh, flags: asked.__setitem__(fh, flags))
    device, procs = FakeDevice(), _Emulating()
    tree = Tree(device, procs)  # type: ignore[arg-type]
    procs.is_open_ino = tree.is_open_ino
    ops = Operations(tree)

    async def main() -> None:
        node_fh, handle = await open_node(ops)
        procs.hold(100, 3, handle.ino)
        procs.hold(4242, 5, handle.ino)
        proc = (await ops.lookup(ROOT_INO, b"proc", Ctx())).st_ino
        for pid, cached in ((100, True), (4242, False)):
            pid_dir = (await ops.lookup(proc, str(pid).encode(), Ctx())).st_ino
            for name in (b"fd", b"fdinfo"):
                ino = (await ops.lookup(pid_dir, name, Ctx())).st_ino
                fh = await ops.opendir(ino, Ctx())
                assert asked.get(fh) == ((caller.CACHE_READDIR | caller.KEEP_CACHE) if cached else None), (pid, name)
            fdinfo = (await ops.lookup(pid_dir, b"fdinfo", Ctx())).st_ino
            fd = (await ops.lookup(fdinfo, b"3" if pid == 100 else b"5", Ctx())).st_ino
            info = await ops.open(fd, os.O_RDONLY, Ctx())
            assert asked[info.fh] == caller.NOFLUSH
        assert node_fh not in asked  # a DRM node's close is the hook for exact names

    run(main)
