"""The supervisor: answers the intercepted calls of one listener, on its own thread.

One :class:`Supervisor` serves one seccomp listener (one runner's COMMAND and everything
it starts: threads, children, exec'd programs). Its loop receives a notification,
decides, answers, and never blocks on anything but the listener: every call is answered
at once, except a wait the engine cannot answer yet (WAIT_BO on the real clock, raised as
:class:`~vdrm.errors.WouldBlock`), which is parked and asked again at its deadline. So a
wait blocks only its caller: other threads and clients of the same COMMAND carry on.

The decisions, per call:

``ioctl(fd, cmd, argp)``
    The fd is looked at through ``/proc/<tid>/fd/<fd>`` (``stat`` follows the magic link
    to the open file): on this mount (``st_dev``) and on a DRM node inode, it goes to the
    engine with the caller's memory (:class:`~vdrm.bridge.memory.ProcessMemory`) and the
    dispatch's return value or errno is the call's. Any other fd: the kernel's own
    (``CONTINUE``).
``stat``, ``lstat``, ``fstat``, ``newfstatat``, ``statx``
    The path is resolved as the caller would, through ``/proc/<tid>/root``, ``cwd`` or
    ``fd/<dirfd>``; a DRM node of this mount is answered as the character device it
    emulates (:mod:`vdrm.bridge.nodestat`); anything else goes to the kernel.
``kcmp``
    Answered by the host when a pid is a scenario process's; else the kernel's.

Where the supervisor cannot read the caller's arguments (a bad path pointer), it lets the
kernel run the call, which then reports EFAULT itself. A bug in the supervisor is logged
and the call is given to the kernel (stat, kcmp) or answered EIO (ioctl): it never takes
the daemon down and never leaves the caller waiting.

Engine calls go through ``host.engine(fn, *args)``, which runs ``fn`` on the engine's
thread (the daemon's trio thread): the engine has no locks. Everything else (reading
``/proc``, stat of paths on the mount, the caller's memory for stat results) runs here,
so a FUSE request the daemon must answer never waits for the daemon's own thread.

An absolute path is resolved in the caller's root with ``openat2(RESOLVE_IN_ROOT)``, so
absolute symlinks (``/proc/<pid>/fd/<n>`` -> ``/dev/dri/renderD128``) lead where they lead
for the caller. Known limits: a relative path is resolved from the caller's cwd, but an
absolute symlink met on the way is followed from the daemon's root; and a fd closed and reopened by another
thread while its ioctl is being decoded reaches the new file, as no reference is held.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from vdrm.bridge import nodestat, seccomp
from vdrm.bridge.memory import ProcessMemory
from vdrm.errors import BadAddress, VdrmError, WouldBlock

log = logging.getLogger(__name__)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
PATH_MAX = 4096
EIO, EFAULT = 5, 14
RECHECK = 0.05  # seconds between checks that parked callers are still there


class Host(Protocol):
    """What the supervisor needs from the daemon (implemented in :mod:`vdrm.fs.bridge`)."""

    fuse_dev: int  # st_dev of the mount's files, as stat(2) reports it

    def engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the engine's thread; its result or exception."""

    def node(self, ino: int) -> nodestat.NodeStat | None:
        """The character device inode ``ino`` emulates, or None (engine thread)."""

    def ioctl(self, ino: int, cmd: int, argp: int, mem: ProcessMemory) -> int:
        """The binary dispatch for the client opened on inode ``ino``: its return value, or a
        negative errno (engine thread)."""

    def kcmp(self, pid1: int, pid2: int, kind: int, idx1: int, idx2: int) -> int | None:
        """kcmp's answer if a pid is emulated (negative: an errno), else None (engine thread)."""

    def now_ns(self) -> int:
        """The device clock (engine thread)."""


@dataclass(order=True)
class _Parked:
    """An ioctl waiting for the device clock."""

    due: float  # time.monotonic() when to ask again
    seq: int
    note: seccomp.Notification = field(compare=False)
    ino: int = field(compare=False)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_OPENAT2 = 437
RESOLVE_IN_ROOT = 0x10


def _tgid(tid: int) -> int:
    with open(f"/proc/{tid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Tgid:"):
                return int(line.split()[1])
    return tid


def _stat_in_root(tid: int, path: bytes, *, follow: bool) -> os.stat_result:
    """``stat`` of absolute ``path`` as thread ``tid`` resolves it: in its root and mount
    namespace, absolute symlinks included (``openat2`` with ``RESOLVE_IN_ROOT`` on
    ``/proc/<tid>/root``). ``/proc/self`` and ``/proc/thread-self`` are the caller's."""
    for name in (b"/proc/self", b"/proc/thread-self"):
        if path == name or path.startswith(name + b"/"):
            me = f"{_tgid(tid)}" if name == b"/proc/self" else f"{_tgid(tid)}/task/{tid}"
            path = b"/proc/" + me.encode() + path[len(name):]
            break
    root = os.open(f"/proc/{tid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW), 0, RESOLVE_IN_ROOT)
        fd = _libc.syscall(SYS_OPENAT2, root, path.lstrip(b"/") or b".", ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    finally:
        os.close(root)


def _s32(value: int) -> int:
    return ctypes.c_int32(value & 0xFFFFFFFF).value


class Supervisor:
    """Answers one listener's notifications until its last filtered process is gone."""

    def __init__(self, listener: int, host: Host):
        self.listener = listener
        self.host = host
        self._parked: list[_Parked] = []
        self._seq = itertools.count()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopping = False
        self.handled = 0  # notifications answered (for the benchmark and tests)

    def stop(self) -> None:
        """Ask the loop to end (from any thread)."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def start(self, name: str = "vdrm-bridge") -> threading.Thread:
        thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """The loop; returns once nobody uses the filter any more, or on :meth:`stop`."""
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping:
                timeout = None
                if self._parked:
                    timeout = max(0.0, min(self._parked[0].due - time.monotonic(), RECHECK))
                events = poller.poll(None if timeout is None else timeout * 1000)
                for fd, mask in events:
                    if fd == self._wake_r:
                        continue
                    if mask & select.POLLIN:
                        note = seccomp.receive(self.listener)
                        if note is not None:
                            self._handle(note)
                    elif mask & (select.POLLHUP | select.POLLERR):
                        return  # every filtered process has exited
                self._retry_parked()
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)
            os.close(self.listener)

    # -- one notification -----------------------------------------------------------

    def _handle(self, note: seccomp.Notification) -> None:
        self.handled += 1
        name = note.syscall
        try:
            if name == "ioctl":
                self._ioctl(note)
            elif name == "kcmp":
                self._kcmp(note)
            else:
                self._stat(note)
        except Exception:
            log.exception("intercepted %s of thread %d failed inside vdrm", name, note.tid)
            if name == "ioctl":
                seccomp.fail(self.listener, note.id, EIO)
            else:
                seccomp.carry_on(self.listener, note.id)

    def _ioctl(self, note: seccomp.Notification, ino: int | None = None) -> None:
        fd, cmd, argp = _s32(note.args[0]), note.args[1] & 0xFFFFFFFF, note.args[2]
        if ino is None:
            ino = self._our_ino(f"/proc/{note.tid}/fd/{fd}") if fd >= 0 else None
            if ino is None or not seccomp.still_valid(self.listener, note.id):
                seccomp.carry_on(self.listener, note.id)
                return
        mem = ProcessMemory(note.tid)
        try:
            result = self.host.engine(self.host.ioctl, ino, cmd, argp, mem)
        except WouldBlock as e:
            delay = max(0, e.until_ns - self.host.engine(self.host.now_ns)) / 1e9
            heapq.heappush(self._parked, _Parked(time.monotonic() + delay, next(self._seq), note, ino))
            return
        except VdrmError as e:
            log.debug("ioctl %#x of thread %d: %s %s", cmd, note.tid, e.errname, e)
            seccomp.fail(self.listener, note.id, e.errno)
            return
        if result < 0:  # drm_ioctl's convention: a negative errno
            seccomp.fail(self.listener, note.id, -result)
        else:
            seccomp.answer(self.listener, note.id, result)

    def _retry_parked(self) -> None:
        now = time.monotonic()
        keep = []
        while self._parked:
            parked = heapq.heappop(self._parked)
            if not seccomp.still_valid(self.listener, parked.note.id):
                continue  # killed, or interrupted (a restart sends a new notification)
            if parked.due <= now:
                self._ioctl(parked.note, parked.ino)
            else:
                keep.append(parked)
        for parked in keep:
            heapq.heappush(self._parked, parked)

    def _our_ino(self, path: "str | tuple[int, bytes]", *, follow: bool = True) -> int | None:
        """The inode of ``path`` if it is a file of this mount, else None. A ``(tid, path)``
        pair is an absolute path in that thread's root (see :func:`_stat_in_root`)."""
        try:
            if isinstance(path, tuple):
                st = _stat_in_root(*path, follow=follow)
            else:
                st = os.stat(path, follow_symlinks=follow)
        except (OSError, ValueError):
            return None
        return st.st_ino if st.st_dev == self.host.fuse_dev else None

    def _stat(self, note: seccomp.Notification) -> None:
        name, a = note.syscall, note.args
        mem = ProcessMemory(note.tid)
        if name == "fstat":
            target, follow, buf, mask = self._fd_path(note.tid, _s32(a[0])), True, a[1], None
        else:
            if name in ("stat", "lstat"):
                dirfd, path_addr, buf, flags = AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW if name == "lstat" else 0
                mask = None
            elif name == "newfstatat":
                dirfd, path_addr, buf, flags, mask = _s32(a[0]), a[1], a[2], _s32(a[3]), None
            else:  # statx(dirfd, path, flags, mask, buf)
                dirfd, path_addr, flags, mask, buf = _s32(a[0]), a[1], _s32(a[2]), a[3] & 0xFFFFFFFF, a[4]
            try:
                path = mem.read_string(path_addr, PATH_MAX) if path_addr else None
            except BadAddress:
                path = None
            if path is None:  # the kernel reports the bad pointer itself
                seccomp.carry_on(self.listener, note.id)
                return
            target = self._resolve(note.tid, dirfd, path, flags)
            follow = not flags & AT_SYMLINK_NOFOLLOW
        ino = self._our_ino(target, follow=follow) if target else None
        node = self.host.engine(self.host.node, ino) if ino is not None else None
        if node is None or not seccomp.still_valid(self.listener, note.id):
            seccomp.carry_on(self.listener, note.id)
            return
        data = nodestat.pack_stat(node) if mask is None else nodestat.pack_statx(node)
        try:
            mem.write(buf, data)
        except BadAddress:
            seccomp.fail(self.listener, note.id, EFAULT)
            return
        seccomp.answer(self.listener, note.id, 0)

    @staticmethod
    def _fd_path(tid: int, fd: int) -> str | None:
        return f"/proc/{tid}/fd/{fd}" if fd >= 0 else (f"/proc/{tid}/cwd" if fd == AT_FDCWD else None)

    def _resolve(self, tid: int, dirfd: int, path: bytes, flags: int) -> "str | tuple[int, bytes] | None":
        """The caller's ``(dirfd, path)`` as something the daemon can stat, or None."""
        if not path:
            return self._fd_path(tid, dirfd) if flags & AT_EMPTY_PATH else None
        if path.startswith(b"/"):
            return (tid, path)
        base = self._fd_path(tid, dirfd)
        return f"{base}/{os.fsdecode(path)}" if base else None

    def _kcmp(self, note: seccomp.Notification) -> None:
        a = note.args
        result = self.host.engine(self.host.kcmp, _s32(a[0]), _s32(a[1]), _s32(a[2]), a[3], a[4])
        if result is None:
            seccomp.carry_on(self.listener, note.id)
        elif result < 0:
            seccomp.fail(self.listener, note.id, -result)
        else:
            seccomp.answer(self.listener, note.id, result)
