"""Answering one intercepted DRM ioctl: which client its fd is, the dispatch, the answer.

:func:`answer` is synchronous and runs on the engine's thread (the daemon's trio thread
calls it whenever the ``"ioctl"`` listener is readable): it reads the notification,
finds the DRM client behind the caller's fd, runs the binary dispatch with the caller's
memory and sends the result, all without a thread hop.

Finding the client must never touch the mount (the engine thread is the one that serves
it): the host looks the fd up in the host's ``/proc/<tid>/fd`` and ``fdinfo`` only
(:class:`IoctlHost.client_ino`). An fd that is not on an open vdrm node goes back to the
kernel (``CONTINUE``), so a real DRM device's ioctls, if the machine has one, stay its
own. The dispatch returns 0 or a negative errno (``drm_ioctl``'s convention), which
become the call's result. A wait the engine cannot answer yet (WAIT_BO on the real clock)
comes back as :class:`Parked`: the caller waits (without blocking anyone else) and calls
:func:`answer` again with it at its deadline, after checking with
:func:`~vdrm.bridge.seccomp.still_valid` that the caller is still there.
"""

from __future__ import annotations

import ctypes
import errno
import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from vdrm.bridge import seccomp
from vdrm.bridge.memory import ProcessMemory
from vdrm.errors import WouldBlock

log = logging.getLogger(__name__)


class IoctlHost(Protocol):
    """What answering an ioctl needs from the daemon (engine thread)."""

    def client_ino(self, tid: int, fd: int) -> int | None:
        """The inode of the open vdrm node ``fd`` of thread ``tid`` is on, or None."""

    def ioctl(self, ino: int, cmd: int, argp: int, mem: ProcessMemory) -> int:
        """The binary dispatch for the client opened on inode ``ino``: 0 / a value, or a
        negative errno; WouldBlock to wait."""


@dataclass(frozen=True)
class Parked:
    """An ioctl that waits for the device clock to reach ``until_ns``."""

    note: seccomp.Notification
    ino: int
    until_ns: int


def reply(listener: int, nid: int, result: int) -> bool:
    """Send a dispatch's result (0 / a value, or a negative errno) as the call's."""
    if result < 0:
        return seccomp.fail(listener, nid, -result)
    return seccomp.answer(listener, nid, result)


def answer(listener: int, note: seccomp.Notification, host: IoctlHost, ino: int | None = None, *,
           respond: Callable[[int], None] | None = None) -> Parked | None:
    """Answer ``note`` (an ioctl); a :class:`Parked` if it must wait first.

    ``respond(result)``, if given, sends the dispatch's result instead of :func:`reply`
    (the daemon first tells the kernel what the call changed)."""
    fd = ctypes.c_int32(note.args[0] & 0xFFFFFFFF).value
    cmd, argp = note.args[1] & 0xFFFFFFFF, note.args[2]
    try:
        if ino is None:
            ino = host.client_ino(note.tid, fd) if fd >= 0 else None
            # the thread may have died and its tid been reused since the notification
            if ino is None or not seccomp.still_valid(listener, note.id):
                seccomp.carry_on(listener, note.id)
                return None
        try:
            result = host.ioctl(ino, cmd, argp, ProcessMemory(note.tid))
        except WouldBlock as e:
            return Parked(note, ino, e.until_ns)
    except Exception:  # a vdrm bug: the caller gets EIO, the daemon carries on
        log.exception("ioctl %#x of thread %d failed inside vdrm", cmd, note.tid)
        seccomp.fail(listener, note.id, errno.EIO)
        return None
    if respond is not None:
        respond(result)
    else:
        reply(listener, note.id, result)
    return None
