"""The daemon's side of the process bridge: the supervisor's thread, tied to the tree and trio.

The runner's COMMAND carries a seccomp filter (:mod:`vdrm.bridge.seccomp`) whose listener
it hands to the daemon over a Unix socket before ``exec``. :func:`start` (called inside
trio, once the mount serves) starts a thread that receives that listener and runs a
:class:`~vdrm.bridge.supervisor.Supervisor` on it, with :class:`TreeHost` as its host:

- engine calls (the ioctl dispatch, which node an inode is, kcmp of scenario processes)
  run on the trio thread through ``trio.from_thread.run_sync``: each is atomic with
  respect to the FUSE handlers, as every other engine call;
- everything that may touch the mount (``stat`` of a caller's path, of ``/proc/<tid>/fd/<n>``)
  runs on the supervisor's thread, so the FUSE requests it causes are served by trio
  meanwhile.

The DRM client behind a caller's fd is the one opened on that fd's inode: every open of
a node has its own inode (see :mod:`vdrm.fs.tree`), and the file the caller holds is
a real FUSE open, released by FUSE RELEASE on its last close (a killed process included).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable

import trio

from vdrm.bridge import nodestat
from vdrm.bridge.supervisor import Supervisor
from vdrm.errors import VdrmError
from vdrm.scenario.run import NODE_INO

if TYPE_CHECKING:
    from vdrm.bridge.memory import ProcessMemory
    from vdrm.fs.tree import Tree

log = logging.getLogger(__name__)

# <linux/kcmp.h>
KCMP_FILE, KCMP_EPOLL_TFD, KCMP_TYPES = 0, 7, 8


class NotATty(VdrmError):
    """ENOTTY: an ioctl on a node inode with no open DRM client behind it."""

    errno = errno.ENOTTY


def _dispatch() -> Callable[..., int]:
    from vdrm.drm.ioctl import drm_ioctl  # the binary dispatch: 0 or a negative errno

    return drm_ioctl


class TreeHost:
    """:class:`~vdrm.bridge.supervisor.Host` over a mounted :class:`Tree`."""

    def __init__(self, tree: "Tree", mountpoint: str, token: trio.lowlevel.TrioToken):
        self.tree = tree
        self._token = token
        self.fuse_dev = os.stat(mountpoint).st_dev  # called on the supervisor's thread
        self._drm_ioctl: Callable[..., int] | None = None

    def engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def node(self, ino: int) -> nodestat.NodeStat | None:
        minor = self.tree.node_minor(ino)
        if minor is None:
            return None
        return nodestat.NodeStat(ino=NODE_INO[minor], mode=0o20666, uid=0, gid=0,
                                 rdev=os.makedev(226, minor), time_ns=self.tree.mtime_ns)

    def ioctl(self, ino: int, cmd: int, argp: int, mem: "ProcessMemory") -> int:
        file = self.tree.client(ino)
        if file is None:
            raise NotATty(f"inode {ino} has no open DRM client")
        if self._drm_ioctl is None:
            self._drm_ioctl = _dispatch()
        return int(self._drm_ioctl(file, cmd, argp, mem))

    def now_ns(self) -> int:
        return self.tree.device.clock.now_ns()

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


def _order(a: tuple, b: tuple) -> int:
    """kcmp's answer: 0 equal, 1 less, 2 greater."""
    return 0 if a == b else (1 if a < b else 2)


class Bridge:
    """The running supervisor thread (:func:`start`); :meth:`stop` ends it."""

    def __init__(self, sock: socket.socket, tree: "Tree", mountpoint: str):
        self._sock = sock
        self._tree = tree
        self._mountpoint = mountpoint
        self._token = trio.lowlevel.current_trio_token()
        self._supervisor: Supervisor | None = None
        self._stopped = False
        self.thread = threading.Thread(target=self._run, name="vdrm-bridge", daemon=True)

    def _run(self) -> None:
        try:
            _, fds, _, _ = socket.recv_fds(self._sock, 16, 1)
        except OSError as e:
            log.warning("bridge: no listener received: %s", e)
            return
        finally:
            self._sock.close()
        if not fds or self._stopped:
            for fd in fds:
                os.close(fd)
            return
        try:
            host = TreeHost(self._tree, self._mountpoint, self._token)
        except Exception:
            log.exception("bridge: cannot start the supervisor")
            os.close(fds[0])
            return
        self._supervisor = Supervisor(fds[0], host)
        try:
            self._supervisor.run()
        except trio.RunFinishedError:
            pass
        except Exception:
            log.exception("bridge: the supervisor failed")

    def stop(self) -> None:
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.stop()
        else:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def start(sock: socket.socket, tree: "Tree", mountpoint: str) -> Bridge:
    """Inside trio: serve the listener that will arrive on ``sock``, on a new thread."""
    bridge = Bridge(sock, tree, mountpoint)
    bridge.thread.start()
    return bridge
