"""Who is writing or reading an open DRM file: the caller pyfuse3 does not tell.

pyfuse3 3.5 passes no ``RequestContext`` to ``read`` and ``write`` (only to ``open``,
``lookup``, ``getattr``... ; its C layer has ``fuse_req_ctx`` for every request, but the
Cython wrappers drop it: ``fuse_write_buf_async`` calls ``operations.write(fh, off, buf)``),
and FUSE never reports ``dup``, ``fork`` or ``close``. So an open file shared by several
processes (inherited, dup'd and passed) cannot tell its writers apart from the request.

vdrm finds the caller the way a debugger would: while the daemon handles a WRITE, the
writing thread sleeps inside ``write(2)`` (or ``writev``/``pwrite``) on an fd of that open
file, and ``/proc/<pid>/task/<tid>/syscall`` shows the syscall number, the fd and the
byte count. :class:`Callers` keeps, per open (its inode), the processes that hold it
(found as ``lsof`` does, :mod:`vdrm.fs.procfs`, cached :data:`HOLDERS_TTL` seconds):

* one holder process with one thread: the caller is it; a write is confirmed with one
  read of its ``syscall`` file (~25 µs), and a holder that is not in a write on the file
  means the file has become shared (a fork a moment ago): the holders are scanned again;
* otherwise every thread of every holder is looked at; a thread in a matching syscall on
  one of the open's fds, with the request's byte count, is the caller; if several match,
  ``/proc/<pid>/mem`` at the syscall's buffer is compared with the written bytes.

What is exact and what is not: a write is attributed exactly unless two threads write
identical bytes at the same moment (then either is right). A read is attributed to the
one thread blocked in a read of the file, or, if several are (each waits for its own
reply), to one of them that has a reply waiting. Syscalls vdrm cannot see into
(io_uring, AIO) are not attributed: their requests and replies use the open's shared
stream, as before. Needs the daemon to be allowed to read other processes' ``syscall``
files (root, or the same user with ptrace allowed).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any

HOLDERS_TTL = 0.1  # seconds a holder scan of one open is reused

# (read-like, write-like) syscall numbers by machine.
_SYSCALLS = {
    "x86_64": ({0, 17, 19, 295, 327}, {1, 18, 20, 296, 328}),
    "aarch64": ({63, 65, 67, 69, 286}, {64, 66, 68, 70, 287}),
}
_READS, _WRITES = _SYSCALLS.get(platform.machine(), (set(), set()))
_VECTORED = {19, 20, 295, 296, 327, 328, 65, 66, 69, 70, 286, 287}


@dataclass(frozen=True)
class Caller:
    """A thread (``tid``) of a process (``pid``, its tgid)."""

    pid: int
    tid: int


def _syscall(pid: int, tid: int, proc: str = "/proc") -> tuple[int, list[int]] | None:
    """(number, arguments) of the syscall ``tid`` sleeps in, or None (running, gone)."""
    try:
        with open(f"{proc}/{pid}/task/{tid}/syscall", "rb", buffering=0) as f:
            fields = f.read().split()
    except OSError:
        return None
    if len(fields) < 4 or fields[0] in (b"running", b"-1"):
        return None
    try:
        return int(fields[0]), [int(x, 16) for x in fields[1:7]]
    except ValueError:
        return None


def _tids(pid: int, proc: str = "/proc") -> list[int]:
    try:
        return [int(n) for n in os.listdir(f"{proc}/{pid}/task") if n.isdigit()]
    except OSError:
        return []


def _memory_equals(pid: int, address: int, data: bytes, proc: str = "/proc") -> bool:
    try:
        with open(f"{proc}/{pid}/mem", "rb", buffering=0) as f:
            f.seek(address)
            return f.read(len(data)) == data
    except (OSError, OverflowError, ValueError):
        return False


class Callers:
    """Attributes reads and writes of open DRM files to the threads making them."""

    def __init__(self, procfs: Any, proc: str = "/proc"):
        self._procfs = procfs
        self._proc = proc
        self._holders: dict[int, tuple[float, dict[int, set[int]]]] = {}  # ino -> (when, pid -> fds)
        self.enabled = bool(_WRITES) and hasattr(procfs, "fds")

    def invalidate(self, ino: int | None = None) -> None:
        """Forget the holders of ``ino`` (every open's without it)."""
        if ino is None:
            self._holders.clear()
        else:
            self._holders.pop(ino, None)

    def forget(self, ino: int) -> None:
        self._holders.pop(ino, None)

    def holders(self, ino: int, *, fresh: bool = False) -> dict[int, set[int]]:
        """pid -> the fds it holds on the open with inode ``ino``."""
        now = time.monotonic()
        cached = self._holders.get(ino)
        if cached is not None and not fresh and now - cached[0] < HOLDERS_TTL:
            return cached[1]
        found: dict[int, set[int]] = {}
        if fresh:
            self._procfs.invalidate()
        try:
            for pid in self._procfs.pids():
                fds = {ref.fd for ref in self._procfs.fds(pid).values() if ref.ino == ino}
                if fds:
                    found[pid] = fds
        except OSError:
            pass
        self._holders[ino] = (now, found)
        return found

    def _match(self, ino: int, syscalls: set[int], size: int | None, data: bytes | None,
               exclude: set[int], holders: dict[int, set[int]]) -> list[tuple[Caller, list[int], int]]:
        found = []
        for pid, fds in holders.items():
            for tid in _tids(pid, self._proc):
                if tid in exclude:
                    continue
                call = _syscall(pid, tid, self._proc)
                if call is None or call[0] not in syscalls or call[1][0] not in fds:
                    continue
                found.append((Caller(pid, tid), call[1], call[0]))
        if size is not None and len(found) > 1:
            sized = [c for c in found if c[2] in _VECTORED or c[1][2] == size or c[1][2] > size]
            found = sized or found
        if data is not None and len(found) > 1:
            same = [c for c in found if c[2] not in _VECTORED and _memory_equals(c[0].pid, c[1][1], data, self._proc)]
            found = same or found
        return found

    def writer(self, ino: int, data: bytes) -> Caller | None:
        """The thread whose ``write(2)`` of ``data`` on the open ``ino`` is being handled."""
        if not self.enabled:
            return None
        holders = self.holders(ino)
        if len(holders) == 1:
            (pid, fds), = holders.items()
            call = _syscall(pid, pid, self._proc)
            if call is not None and call[0] in _WRITES and call[1][0] in fds and len(_tids(pid, self._proc)) == 1:
                return Caller(pid, pid)
        for fresh in (False, True):
            if fresh:
                holders = self.holders(ino, fresh=True)
            found = self._match(ino, _WRITES, len(data), data, set(), holders)
            if found:
                return found[0][0]
        return None

    def readers(self, ino: int, busy: set[int]) -> list[Caller]:
        """Threads blocked in a read of the open ``ino`` (not those in ``busy``: already
        served), the likeliest first; a single-threaded sole holder without looking."""
        if not self.enabled:
            return []
        holders = self.holders(ino)
        if len(holders) == 1:
            (pid, _), = holders.items()
            if len(_tids(pid, self._proc)) == 1:
                return [Caller(pid, pid)]
        return [c for c, _, _ in self._match(ino, _READS, None, None, busy, holders)]
