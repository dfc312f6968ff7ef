"""The supervisor: receives every intercepted call of one listener, on a thread of its own.

One :class:`Supervisor` serves the listener of one runner's COMMAND (and everything it
starts: threads, children, exec'd programs). Its loop receives a notification, decides,
and never blocks on anything but the listener:

``ioctl``
    handed to the host at once (``host.ioctl_call``), which answers it on the engine's
    thread (:mod:`vdrm.bridge.ioctls`); the loop goes on receiving.
``stat``, ``lstat``, ``fstat``, ``newfstatat``, ``statx``
    The path is resolved as the caller would, through ``/proc/<tid>/root``, ``cwd`` or
    ``fd/<dirfd>``; a DRM node of this mount (``st_dev``, and an inode the host says is a
    node) is answered here as the character device it emulates
    (:mod:`vdrm.bridge.nodestat`); anything else goes to the kernel (``CONTINUE``).
``kcmp``
    Answered by the host when a pid is a scenario process's; else the kernel's.

Why a thread, and the split: a stat of a caller's path on the mount is a FUSE request
that the daemon's engine thread must be free to serve, so stats are decided here;
engine calls must run on the engine thread (it has no locks), so ioctls go there, one
way (the engine thread sends the answer itself: a thread hop each way would cost about
100 µs more on a 2-vCPU VM). ``host.node`` is called here and must be safe off the
engine thread (a read); ``host.kcmp`` goes through ``host.engine`` (rare).

Where the supervisor cannot read the caller's arguments (a bad path pointer), it lets the
kernel run the call, which then reports EFAULT itself. A bug in the supervisor is logged
and the call is given to the kernel: it never takes the daemon down and never leaves the
caller waiting.

An absolute path is resolved in the caller's root with ``openat2(RESOLVE_IN_ROOT)``, so
absolute symlinks (``/proc/<pid>/fd/<n>`` -> ``/dev/dri/renderD128``) lead where they lead
for the caller. Known limit: a relative path is resolved from the caller's cwd, but an
absolute symlink met on the way is followed from the daemon's root.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import threading
from typing import Any, Callable, Protocol

from vdrm.bridge import nodestat, seccomp
from vdrm.bridge.memory import ProcessMemory
from vdrm.errors import BadAddress

log = logging.getLogger(__name__)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
PATH_MAX = 4096
EFAULT = 14


class Host(Protocol):
    """What the supervisor needs from the daemon (implemented in :mod:`vdrm.fs.bridge`)."""

    fuse_dev: int  # st_dev of the mount's files, as stat(2) reports it

    def engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the engine's thread; its result or exception."""

    def ioctl_call(self, listener: int, note: seccomp.Notification) -> None:
        """Answer ioctl ``note`` on the engine's thread, later; never blocks."""

    def listener_done(self, listener: int) -> None:
        """Nobody uses the filter any more: close ``listener`` once no ioctl uses it."""

    def node(self, ino: int) -> nodestat.NodeStat | None:
        """The character device inode ``ino`` emulates, or None (any thread: a read)."""

    def kcmp(self, pid1: int, pid2: int, kind: int, idx1: int, idx2: int) -> int | None:
        """kcmp's answer if a pid is emulated (negative: an errno), else None (engine thread)."""


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


def _stat_in_root(tid: int, path: bytes, *, follow: bool) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of absolute ``path`` as thread ``tid`` resolves it: in its root
    and mount namespace, absolute symlinks included (``openat2`` with ``RESOLVE_IN_ROOT`` on
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
            return nodestat.identity(fd=fd)
        finally:
            os.close(fd)
    finally:
        os.close(root)


def _s32(value: int) -> int:
    return ctypes.c_int32(value & 0xFFFFFFFF).value


class Supervisor:
    """Answers one listener until its last filtered process is gone."""

    def __init__(self, listener: int, host: Host):
        self.listener = listener
        self.host = host
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopping = False
        self.handled = 0  # notifications answered (for tests)

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
                for fd, mask in poller.poll():
                    if fd == self._wake_r:
                        continue
                    if mask & select.POLLIN:
                        note = seccomp.receive(self.listener)
                        if note is not None:
                            self._handle(note)
                    elif mask & (select.POLLHUP | select.POLLERR):
                        return  # every filtered process has exited
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self.host.listener_done(self.listener)

    # -- one notification -----------------------------------------------------------

    def _handle(self, note: seccomp.Notification) -> None:
        self.handled += 1
        if note.syscall == "ioctl":
            self.host.ioctl_call(self.listener, note)
            return
        try:
            if note.syscall == "kcmp":
                self._kcmp(note)
            else:
                self._stat(note)
        except Exception:
            log.exception("intercepted %s of thread %d failed inside vdrm", note.syscall, note.tid)
            seccomp.carry_on(self.listener, note.id)

    def _our_ino(self, path: "str | tuple[int, bytes]", *, follow: bool = True) -> int | None:
        """The inode of ``path`` if it is a file of this mount, else None. A ``(tid, path)``
        pair is an absolute path in that thread's root (see :func:`_stat_in_root`)."""
        try:
            if isinstance(path, tuple):
                dev, ino = _stat_in_root(*path, follow=follow)
            else:
                dev, ino = nodestat.identity(path, follow=follow)
        except (OSError, ValueError):
            return None
        return ino if dev == self.host.fuse_dev else None

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
                if path_addr:
                    path = mem.read_string(path_addr, PATH_MAX)
                else:  # NULL with AT_EMPTY_PATH is the fd itself (Linux 6.11+)
                    path = b"" if flags & AT_EMPTY_PATH else None
            except BadAddress:
                path = None
            if path is None:  # the kernel reports the bad pointer itself
                seccomp.carry_on(self.listener, note.id)
                return
            target = self._resolve(note.tid, dirfd, path, flags)
            follow = not flags & AT_SYMLINK_NOFOLLOW
        ino = self._our_ino(target, follow=follow) if target else None
        node = self.host.node(ino) if ino is not None else None
        if node is None:  # CONTINUE needs no validity check: it changes nothing of ours
            seccomp.carry_on(self.listener, note.id)
            return
        if not seccomp.still_valid(self.listener, note.id):
            return  # the caller is gone and its tid may be another's: write nothing
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
