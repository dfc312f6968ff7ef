"""The daemon's side of the process bridge: the supervisor's thread, tied to the tree and trio.

The runner's COMMAND carries a seccomp filter (:mod:`vdrm.bridge.seccomp`) and hands its
listener to the daemon over a Unix socket before ``exec``. :func:`start` (inside trio,
once the mount serves) receives it and starts a
:class:`~vdrm.bridge.supervisor.Supervisor` thread on it, with :class:`TreeHost` as host:

- stats are decided on that thread, since a stat of a caller's path may be a FUSE
  request to this very daemon; it reads the tree only to ask whether an inode is a node
  (a dict read, safe off the engine thread);
- each DRM ioctl is handed to the trio thread one way (``TrioToken.run_sync_soon``) and
  answered there by :func:`vdrm.bridge.ioctls.answer`, atomically with respect to the
  FUSE handlers, as every engine call. The client behind the caller's fd is the one
  opened on the fd's inode (every open has its own, see :mod:`vdrm.fs.tree`), read with
  ``statx(AT_STATX_DONT_SYNC)`` through ``/proc/<tid>/fd/<n>``: cached attributes, no
  request to the mount the trio thread serves;
- a wait (WAIT_BO on the real clock) becomes a trio task that sleeps until the deadline,
  checking every :data:`RECHECK` seconds that its caller is still there: a SIGKILLed
  caller's wait is dropped, and its client is released by FUSE RELEASE as for any
  process;
- kcmp of scenario processes hops to the trio thread and back (rare).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import trio

from vdrm.bridge import ioctls, nodestat, seccomp
from vdrm.bridge.supervisor import Supervisor
from vdrm.fs.procfs import mount_dev
from vdrm.scenario.run import node_ino

if TYPE_CHECKING:
    from vdrm.bridge.memory import ProcessMemory
    from vdrm.fs.tree import Tree

log = logging.getLogger(__name__)

# <linux/kcmp.h>
KCMP_FILE, KCMP_EPOLL_TFD, KCMP_TYPES = 0, 7, 8


def _dispatch() -> Callable[..., int]:
    from vdrm.drm.ioctl import drm_ioctl  # the binary dispatch: 0 or a negative errno

    return drm_ioctl


RECHECK = 0.05  # seconds between checks that a waiting ioctl's caller is still there


class TreeHost:
    """The bridge's host (:class:`~vdrm.bridge.ioctls.IoctlHost` and
    :class:`~vdrm.bridge.supervisor.Host`) over a mounted :class:`Tree`."""

    def __init__(self, tree: "Tree", fuse_dev: int, bridge: "Bridge"):
        self.tree = tree
        self.fuse_dev = fuse_dev
        self._bridge = bridge
        self._token = trio.lowlevel.current_trio_token()
        self._drm_ioctl = _dispatch()

    # -- engine thread -----------------------------------------------------------

    def client_ino(self, tid: int, fd: int) -> int | None:
        try:  # cached attributes only: no request to this very daemon
            dev, ino = nodestat.identity(f"/proc/{tid}/fd/{fd}")
        except OSError:
            return None
        return ino if dev == self.fuse_dev and self.tree.is_open_ino(ino) else None

    def ioctl(self, ino: int, cmd: int, argp: int, mem: "ProcessMemory") -> int:
        file = self.tree.client(ino)
        if file is None:
            return -errno.ENOTTY
        return int(self._drm_ioctl(file, cmd, argp, mem))

    def kcmp(self, pid1: int, pid2: int, kind: int, idx1: int, idx2: int) -> int | None:
        """Scenario processes are real to kcmp: a dup'd fd is the same file, two opens are
        not, and each process is its own (VM, files ...). None: both pids are real."""
        processes = getattr(self.tree.procfs, "scenario", None)
        processes = processes.processes if processes is not None else {}
        if pid1 not in processes and pid2 not in processes:
            return None
        for pid in (pid1, pid2):
            if pid not in processes and not os.path.exists(f"/proc/{pid}"):
                return -errno.ESRCH
        if not 0 <= kind < KCMP_TYPES or kind == KCMP_EPOLL_TFD:
            return -errno.EINVAL
        if kind != KCMP_FILE:
            return _order((pid1,), (pid2,))
        keys = []
        for pid, fd in ((pid1, idx1), (pid2, idx2)):
            proc = processes.get(pid)
            if proc is None:
                if not os.path.exists(f"/proc/{pid}/fd/{fd}"):
                    return -errno.EBADF
                keys.append((1, pid, fd))  # a real process's file is never a scenario one
                continue
            efd = proc.fds.get(fd)
            if efd is None:
                return -errno.EBADF
            keys.append((0, efd.file.client_id, 0))  # one open file per DRM client
        return _order(keys[0], keys[1])

    # -- any thread ----------------------------------------------------------------

    def engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def node(self, ino: int) -> nodestat.NodeStat | None:
        minor = self.tree.node_minor(ino)  # a dict read: safe off the engine thread
        if minor is None:
            return None
        return nodestat.NodeStat(ino=node_ino(minor), mode=0o20666, uid=0, gid=0,
                                 rdev=os.makedev(226, minor), time_ns=self.tree.mtime_ns)

    def ioctl_call(self, listener: int, note: seccomp.Notification) -> None:
        try:
            self._token.run_sync_soon(self._bridge.ioctl, listener, note)
        except trio.RunFinishedError:  # the daemon is stopping: no engine to answer
            seccomp.fail(listener, note.id, errno.ENODEV)

    def listener_done(self, listener: int) -> None:
        try:
            self._token.run_sync_soon(self._bridge.close_listener, listener)
        except trio.RunFinishedError:
            os.close(listener)


def _order(a: tuple, b: tuple) -> int:
    """kcmp's answer: 0 equal, 1 less, 2 greater."""
    return 0 if a == b else (1 if a < b else 2)


class Bridge:
    """Serves the listener COMMAND sends on ``sock`` (:func:`start`); :meth:`stop` ends it."""

    def __init__(self, sock: socket.socket, tree: "Tree", mountpoint: str, nursery: trio.Nursery,
                 settle: Callable[[], Awaitable[None]] | None = None):
        self._sock = sock
        self._tree = tree
        self._settle = settle  # sends the tree's queued invalidations, returns once applied
        self._mountpoint = mountpoint
        self._nursery = nursery
        self._supervisor: Supervisor | None = None
        self._open: set[int] = set()  # listeners not yet closed
        self.host: TreeHost | None = None

    async def serve(self) -> None:
        try:
            self._sock.setblocking(False)
            await trio.lowlevel.wait_readable(self._sock)
            try:
                _, fds, _, _ = socket.recv_fds(self._sock, 16, 1)
            except OSError as e:
                log.warning("bridge: no listener received: %s", e)
                return
        finally:
            self._sock.close()
        if not fds:
            return  # COMMAND failed before sending it (the runner says why)
        [listener] = fds
        dev = mount_dev(self._mountpoint)
        if dev is None:
            log.error("bridge: %s is not mounted", self._mountpoint)
            os.close(listener)
            return
        major, minor = (int(n) for n in dev.split(":"))
        self.host = TreeHost(self._tree, os.makedev(major, minor), self)
        self._open.add(listener)
        self._supervisor = Supervisor(listener, self.host)
        self._supervisor.start()

    # -- on the trio thread ----------------------------------------------------------

    def ioctl(self, listener: int, note: seccomp.Notification) -> None:
        """Answer one ioctl (a ``run_sync_soon`` callback: it must not raise)."""
        try:
            if listener not in self._open or self.host is None:
                return
            parked = ioctls.answer(listener, note, self.host, respond=self._responder(listener, note.id))
            if parked is not None:
                self._nursery.start_soon(self._wait, listener, parked)
        except BaseException:  # noqa: BLE001 - an exception here would end trio.run
            log.exception("bridge: answering an ioctl failed")

    def close_listener(self, listener: int) -> None:
        if listener in self._open:
            self._open.discard(listener)
            os.close(listener)

    async def _wait(self, listener: int, parked: ioctls.Parked | None) -> None:
        """Sleep until a parked ioctl's deadline, then answer it (or drop it, its caller gone)."""
        assert self.host is not None
        clock = self._tree.device.clock
        while parked is not None and listener in self._open:
            remaining = parked.until_ns - clock.now_ns()
            if remaining > 0:
                await trio.sleep(min(remaining / 1e9, RECHECK))
                if listener not in self._open or not seccomp.still_valid(listener, parked.note.id):
                    return  # killed, or interrupted (a restart sends a new notification)
                continue
            parked = ioctls.answer(listener, parked.note, self.host, parked.ino,
                                   respond=self._responder(listener, parked.note.id))

    def _responder(self, listener: int, nid: int) -> Callable[[int], None]:
        """How to send an ioctl's result: as a text request's reply is, only once the kernel
        has dropped the fdinfo sizes and pages it changed (:meth:`Tree.changed`)."""

        def respond(result: int) -> None:
            self._tree.changed()
            if self._settle is None or not self._tree.cache.pending:
                ioctls.reply(listener, nid, result)
            else:
                self._nursery.start_soon(self._respond_settled, listener, nid, result)

        return respond

    async def _respond_settled(self, listener: int, nid: int, result: int) -> None:
        assert self._settle is not None
        try:
            await self._settle()
        finally:  # the caller is answered even if telling the kernel failed
            if listener in self._open:
                ioctls.reply(listener, nid, result)

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop()


def start(sock: socket.socket, tree: "Tree", mountpoint: str, nursery: trio.Nursery,
          settle: Callable[[], Awaitable[None]] | None = None) -> Bridge:
    """Inside trio: serve the listener that will arrive on ``sock``, in ``nursery``;
    ``settle`` sends the invalidations an ioctl queued before its result is sent."""
    bridge = Bridge(sock, tree, mountpoint, nursery, settle)
    nursery.start_soon(bridge.serve)
    return bridge
