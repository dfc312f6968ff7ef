"""The blocking model's bounds: how many reads may block, and how a blocked one notices a signal.

pyfuse3 serves requests with a fixed pool of worker tasks (``max_tasks``) and ignores
FUSE_INTERRUPT. A handler that waits therefore holds a worker, and a process blocked in
it cannot be interrupted, not even by SIGKILL, until the daemon answers. So:

* only a read of a reply still waiting for the device clock may block (writes never do,
  see :mod:`vdrm.fs.operations`), and at most :data:`MAX_BLOCKED_READS` at once, a quarter
  of the daemon's workers; one more read answers ``EAGAIN`` at once, so whatever the
  clients do, three quarters of the workers stay free for everyone else;
* a blocked read looks every :data:`SIGNAL_POLL` seconds at the processes that hold the
  file (``/proc/<pid>/status``: ``SigPnd``/``ShdPnd`` not blocked by ``SigBlk``); a pending
  signal interrupts the wait, as the kernel's interruptible wait would.

When the reading thread is known (:mod:`vdrm.fs.caller`), only a signal pending for it
interrupts its wait. Otherwise the holders are found as ``lsof`` finds them
(:mod:`vdrm.fs.procfs`), once when the read starts to block and then every
:data:`HOLDER_RESCAN` seconds, and a signal to any holder of the file interrupts it.
"""

from __future__ import annotations

import time
from typing import Any

from vdrm.fs.procfs import status_fields

MAX_BLOCKED_READS = 8  # of the daemon's 32 pyfuse3 worker tasks
SIGNAL_POLL = 0.05  # seconds between looks for a pending signal
HOLDER_RESCAN = 1.0  # seconds between scans for the file's holders


def pending_signals(pid: int, proc: str = "/proc") -> int:
    """The signals pending and not blocked for process ``pid`` (a bit mask; 0 if it is gone)."""
    fields = status_fields(pid, ("SigPnd", "ShdPnd", "SigBlk"), proc)
    masks = {key: int(value, 16) for key, value in fields.items()}
    return (masks.get("SigPnd", 0) | masks.get("ShdPnd", 0)) & ~masks.get("SigBlk", 0)


class SignalWatch:
    """Whether a signal is pending in a process holding one open DRM file."""

    def __init__(self, procfs: Any, ino: int, opener_pid: int, reader: int = 0):
        self._reader = reader  # the reading thread's tid, 0 if unknown
        self._procfs = procfs
        self._ino = ino
        self._pids: list[int] = [opener_pid] if opener_pid > 0 else []
        self._scanned = 0.0

    def _holders(self) -> list[int]:
        if self._reader:
            return [self._reader]  # /proc/<tid>/status: the thread's own and its process's pending signals
        now = time.monotonic()
        if now - self._scanned >= HOLDER_RESCAN:
            self._scanned = now
            try:
                found = [pid for pid in self._procfs.pids()
                         if any(ref.ino == self._ino for ref in self._procfs.fds(pid).values())]
            except OSError:
                found = []
            if found:
                self._pids = found
        return self._pids

    def interrupted(self) -> bool:
        return any(pending_signals(pid) for pid in self._holders())
