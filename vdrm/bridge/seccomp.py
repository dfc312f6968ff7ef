"""Seccomp user notification: the filter a runner's COMMAND carries, and its listener.

The filter (classic BPF, built here by hand: libseccomp is not needed) returns
``SECCOMP_RET_USER_NOTIF`` for exactly the system calls the bridge may have to answer and
``SECCOMP_RET_ALLOW`` for everything else, so the kernel runs them untouched:

- ``ioctl`` whose request's type byte is ``'d'`` (0x64, ``DRM_IOCTL_BASE``); every other
  ioctl (terminals, sockets ...) never leaves the kernel;
- the stat family (``stat``, ``lstat``, ``fstat``, ``newfstatat``, ``statx``), because a
  DRM node must say S_IFCHR 226:<minor> and a filter cannot read a path;
- ``kcmp``, because scenario processes exist only in the daemon.

One filter chain may have only one listener (a second ``NEW_LISTENER`` filter is EBUSY),
so one listener receives all three kinds of call.

Only x86_64 is handled (syscall numbers and ``struct stat`` are per architecture); a call
of another ABI (x32, i386) is allowed through untouched.

The listener is the fd ``seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER)``
returns. A notification (:class:`Notification`) is read with ``SECCOMP_IOCTL_NOTIF_RECV``
and answered exactly once with ``SECCOMP_IOCTL_NOTIF_SEND``: a return value, an errno, or
``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` (the kernel runs the call itself). A notification
whose caller died or was interrupted by a signal is no longer valid: answering it fails
with ENOENT, which is not an error (the kernel restarts an interrupted call, which sends
a new notification).

Installing a filter needs ``CAP_SYS_ADMIN`` in the caller's user namespace or
``no_new_privs``: the runner's COMMAND has the first (root, or root of its own user
namespace), so setuid programs inside keep working.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import platform
import struct
from dataclasses import dataclass

# <linux/seccomp.h>
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102  # _IOW('!', 2, __u64)
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
PR_SET_NO_NEW_PRIVS = 38

# x86_64 system call numbers
SYS = {"stat": 4, "fstat": 5, "lstat": 6, "ioctl": 16, "kcmp": 312, "newfstatat": 262,
       "statx": 332, "seccomp": 317, "pidfd_open": 434, "pidfd_getfd": 438}
SYSCALL_NAMES = {nr: name for name, nr in SYS.items()}
NOTIFIED = ("stat", "fstat", "lstat", "newfstatat", "statx", "kcmp")
DRM_IOCTL_TYPE = 0x64  # 'd'

# struct seccomp_notif: id, pid, flags, then struct seccomp_data (nr, arch, ip, args[6])
_NOTIF = struct.Struct("<QIIiIQ6Q")
_RESP = struct.Struct("<QqiI")  # struct seccomp_notif_resp: id, val, error, flags
assert _NOTIF.size == 80 and _RESP.size == 24

# classic BPF
_LD_W_ABS, _JEQ_K, _AND_K, _RET_K = 0x20, 0x15, 0x54, 0x06
_SECCOMP_DATA_NR, _SECCOMP_DATA_ARCH, _SECCOMP_DATA_ARG1_LO = 0, 4, 16 + 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SeccompUnavailable(Exception):
    """This machine or architecture cannot run the bridge (the message says why)."""


def supported() -> str | None:
    """None if the bridge can run here, else why not."""
    if platform.machine() != "x86_64":
        return f"the bridge handles x86_64 system calls only, not {platform.machine()}"
    return None


def filter_program() -> bytes:
    """The BPF program (``struct sock_filter`` array) described in the module docstring."""
    # (label, code, k, jump-if-true label, jump-if-false label); BPF jumps only forwards.
    program: list[tuple[str, int, int, str | None, str | None]] = [
        ("", _LD_W_ABS, _SECCOMP_DATA_ARCH, None, None),
        ("", _JEQ_K, AUDIT_ARCH_X86_64, None, "allow"),
        ("", _LD_W_ABS, _SECCOMP_DATA_NR, None, None),
        ("", _JEQ_K, SYS["ioctl"], "ioctl", None),
        *[("", _JEQ_K, SYS[name], "notify", None) for name in NOTIFIED],
        ("allow", _RET_K, SECCOMP_RET_ALLOW, None, None),
        ("ioctl", _LD_W_ABS, _SECCOMP_DATA_ARG1_LO, None, None),  # the request, an unsigned int
        ("", _AND_K, 0xFF00, None, None),
        ("", _JEQ_K, DRM_IOCTL_TYPE << 8, "notify", "allow_ioctl"),
        ("notify", _RET_K, SECCOMP_RET_USER_NOTIF, None, None),
        ("allow_ioctl", _RET_K, SECCOMP_RET_ALLOW, None, None),
    ]
    at = {label: i for i, (label, *_rest) in enumerate(program) if label}
    out = []
    for i, (_label, code, k, jt, jf) in enumerate(program):
        offsets = [at[target] - i - 1 if target else 0 for target in (jt, jf)]
        assert all(0 <= o < 256 for o in offsets), "BPF jumps go forwards, at most 255"
        out.append(struct.pack("<HBBI", code, offsets[0], offsets[1], k))
    return b"".join(out)


def install_filter() -> int:
    """Install the filter on the calling thread (inherited by its future threads and
    children, kept across exec); the listener fd (close-on-exec)."""
    why = supported()
    if why:
        raise SeccompUnavailable(why)
    program = filter_program()
    count = len(program) // 8
    buf = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(count, ctypes.cast(buf, ctypes.c_void_p))
    fd = _libc.syscall(SYS["seccomp"], SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
                       ctypes.byref(fprog))
    if fd < 0:
        err = ctypes.get_errno()
        raise SeccompUnavailable(f"seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER): {os.strerror(err)}")
    return int(fd)


@dataclass(frozen=True)
class Notification:
    """One intercepted system call: its id, the calling thread, the call and its arguments."""

    id: int
    tid: int
    nr: int
    args: tuple[int, ...]

    @property
    def syscall(self) -> str:
        return SYSCALL_NAMES.get(self.nr, str(self.nr))


def receive(listener: int) -> Notification | None:
    """The next notification (blocks until there is one); None if it vanished meanwhile
    (its caller was killed between the wakeup and the read)."""
    buf = bytearray(_NOTIF.size)
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, buf)
    except OSError as e:
        if e.errno in (_errno.ENOENT, _errno.EINTR):
            return None
        raise
    nid, pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buf)
    return Notification(nid, pid, nr, tuple(args))


def _send(listener: int, nid: int, val: int, error: int, flags: int) -> bool:
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, _RESP.pack(nid, val, error, flags))
    except OSError as e:
        if e.errno == _errno.ENOENT:  # the caller died or was interrupted: nobody to answer
            return False
        raise
    return True


def answer(listener: int, nid: int, value: int) -> bool:
    """The call returns ``value``; False if the caller is gone."""
    return _send(listener, nid, value, 0, 0)


def fail(listener: int, nid: int, errno: int) -> bool:
    """The call fails with ``errno``; False if the caller is gone."""
    return _send(listener, nid, 0, -errno, 0)


def carry_on(listener: int, nid: int) -> bool:
    """The kernel runs the call itself, as if never intercepted; False if the caller is gone."""
    return _send(listener, nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)


def still_valid(listener: int, nid: int) -> bool:
    """Whether the caller still waits for notification ``nid`` (it may have died)."""
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, struct.pack("<Q", nid))
    except OSError:
        return False
    return True
