"""A stopped caller's memory: the real ``UserMemory`` the binary ioctl dispatch reads and writes.

The kernel's ``copy_from_user``/``copy_to_user`` become ``process_vm_readv`` and
``process_vm_writev`` on the calling thread (a tid works: threads share the address
space). Both need ptrace access to the caller, which the daemon has over the runner's
COMMAND (same user; as root, always).

A read or write that does not cover the whole range (unmapped memory, a pointer past the
end of a mapping, a read-only page written) raises :class:`~vdrm.errors.BadAddress`, as
``copy_*_user`` returning non-zero makes the kernel answer EFAULT. Nothing is partially
reported: a short read is a fault, as in the kernel.

``process_vm_writev`` obeys the caller's page protections (a read-only page is a fault),
as ``copy_to_user`` does; ``/proc/<pid>/mem`` would force the write, so it is not used.
Memory the caller mapped from a file on vdrm's own mount must not be passed: reading it
would make the daemon wait for itself.
"""

from __future__ import annotations

import ctypes
import os
import struct

from vdrm.errors import BadAddress

_libc = ctypes.CDLL(None, use_errno=True)


for _name in ("process_vm_readv", "process_vm_writev"):
    _fn = getattr(_libc, _name)
    _fn.restype = ctypes.c_ssize_t
    # (pid, local iovec*, 1, remote iovec*, 1, flags): both iovecs live in one 32-byte buffer
    _fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong)
_IOVECS = struct.Struct("<QQQQ")  # local (base, len), remote (base, len)


def _transfer(fn, tid: int, local: int, remote: int, n: int) -> int:
    iov = ctypes.create_string_buffer(_IOVECS.size)
    _IOVECS.pack_into(iov, 0, local, n, remote, n)
    at = ctypes.addressof(iov)
    return fn(tid, at, 1, at + 16, 1, 0)


MAX_TRANSFER = 1 << 26  # one request never moves more than 64 MiB of the caller's memory


class ProcessMemory:
    """The address space of thread ``tid``, as ``copy_{from,to}_user`` see it."""

    def __init__(self, tid: int):
        self.tid = tid

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        self._check(addr, n)
        buf = ctypes.create_string_buffer(n)
        got = _transfer(_libc.process_vm_readv, self.tid, ctypes.addressof(buf), addr, n)
        if got != n:
            raise BadAddress(self._why("read", addr, n, got))
        return buf.raw

    def write(self, addr: int, data: bytes) -> None:
        n = len(data)
        if n == 0:
            return
        self._check(addr, n)
        buf = ctypes.create_string_buffer(bytes(data), n)
        put = _transfer(_libc.process_vm_writev, self.tid, ctypes.addressof(buf), addr, n)
        if put != n:
            raise BadAddress(self._why("write", addr, n, put))

    def read_string(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string at ``addr`` (at most ``limit`` bytes, as ``strncpy_from_user``),
        read page by page so a string ending just before an unmapped page is still read."""
        out = b""
        want = 256  # most paths are short: a small first read, then whole pages
        while len(out) < limit:
            chunk = min(4096 - (addr + len(out)) % 4096, limit - len(out), want)
            want = 4096
            part = self.read(addr + len(out), chunk)
            nul = part.find(b"\0")
            if nul >= 0:
                return out + part[:nul]
            out += part
        raise BadAddress(f"no string end within {limit} bytes at {addr:#x}")

    @staticmethod
    def _check(addr: int, n: int) -> None:
        if addr == 0 or addr < 0 or addr + n > 1 << 64 or n > MAX_TRANSFER:
            raise BadAddress(f"bad user address range {addr:#x}+{n}")

    def _why(self, what: str, addr: int, n: int, done: int) -> str:
        err = ctypes.get_errno() if done < 0 else 0
        reason = os.strerror(err) if err else f"only {done} bytes reachable"
        return f"cannot {what} {n} bytes at {addr:#x} of thread {self.tid}: {reason}"
