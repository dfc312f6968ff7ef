"""User memory: what ``copy_from_user`` / ``copy_to_user`` reach (``linux/uaccess.h``).

A binary ioctl's argument is an address in the calling process, and so are the pointers
inside its struct (SUBMIT's ``bo_handles``, SET_LABEL_BO's ``label``, VERSION's string
buffers). The engine never sees a process: it reads and writes through a
:class:`UserMemory`, which the process bridge implements over ``process_vm_readv`` /
``process_vm_writev`` and tests implement with :class:`FakeUserMemory`.

Rules, as the kernel's:

* an access that touches any byte the process cannot read (or write) fails as a whole with
  :class:`~vdrm.errors.BadAddress` (EFAULT); the engine then changes no state, except where
  the kernel itself has already acted (a copy-out after a successful handler: the result
  stands, the caller gets EFAULT, as ``drm_ioctl`` does);
* a zero-length access never faults, whatever the address (``copy_from_user(p, NULL, 0)``
  is 0);
* :func:`strncpy_from_user` reads a NUL-terminated string byte by byte up to a limit, and
  faults only if it reaches an unreadable byte before the NUL or the limit.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Protocol, runtime_checkable

from vdrm.errors import BadAddress

USER_ADDR_MAX = (1 << 64) - 1


@runtime_checkable
class UserMemory(Protocol):
    """The calling process's memory, as the engine reaches it."""

    def read(self, addr: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``addr``; BadAddress if any of them is unreadable."""
        ...

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr``; BadAddress (and nothing written) if any byte is not writable."""
        ...


def copy_from_user(mem: UserMemory, addr: int, size: int) -> bytes:
    """``copy_from_user``: ``size`` bytes from user ``addr`` (empty for size 0, never faulting)."""
    if size == 0:
        return b""
    if addr < 0 or addr + size - 1 > USER_ADDR_MAX:
        raise BadAddress(f"user range 0x{addr:x}+{size} is outside the address space")
    data = mem.read(addr, size)
    if len(data) != size:
        raise BadAddress(f"short read of {len(data)} of {size} bytes at 0x{addr:x}")
    return bytes(data)


def copy_to_user(mem: UserMemory, addr: int, data: bytes) -> None:
    """``copy_to_user``: store ``data`` at user ``addr`` (nothing for empty data)."""
    if not data:
        return
    if addr < 0 or addr + len(data) - 1 > USER_ADDR_MAX:
        raise BadAddress(f"user range 0x{addr:x}+{len(data)} is outside the address space")
    mem.write(addr, bytes(data))


def strncpy_from_user(mem: UserMemory, addr: int, limit: int) -> bytes:
    """``strncpy_from_user``: the bytes before the NUL, or ``limit`` bytes if none came first.

    Reads in small chunks so that a string ending just before an unmapped page does not
    fault; BadAddress if an unreadable byte comes before the NUL and the limit.
    """
    out = bytearray()
    chunk = 64
    while len(out) < limit:
        want = min(chunk, limit - len(out))
        pos = addr + len(out)
        try:
            data = copy_from_user(mem, pos, want)
        except BadAddress:
            if want == 1:
                raise
            chunk = 1  # find the exact byte: the string may end before the hole
            continue
        nul = data.find(b"\0")
        if nul >= 0:
            out += data[:nul]
            return bytes(out)
        out += data
    return bytes(out)


class FakeUserMemory:
    """An address space of mapped regions, for tests: ``map`` ranges, then read and write.

    Regions never overlap; ``writable=False`` maps read-only memory (copy-out faults).
    Every read and write is counted so tests can check what the engine touched.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._regions: dict[int, tuple[bytearray, bool]] = {}
        self.reads = 0
        self.writes = 0
        self._next = 0x10000

    def map(self, addr: int, size: int, *, writable: bool = True, data: bytes = b"") -> int:
        """Map ``size`` bytes (zeros, then ``data`` at the start) at ``addr``; returns addr."""
        if size <= 0 or len(data) > size:
            raise ValueError("a region has a positive size that holds its data")
        for start in self._starts:
            buf, _ = self._regions[start]
            if addr < start + len(buf) and start < addr + size:
                raise ValueError(f"0x{addr:x}+{size} overlaps the region at 0x{start:x}")
        buf = bytearray(size)
        buf[:len(data)] = data
        i = bisect_right(self._starts, addr)
        self._starts.insert(i, addr)
        self._regions[addr] = (buf, writable)
        return addr

    def alloc(self, data: bytes | int, *, writable: bool = True) -> int:
        """Map a fresh region holding ``data`` (or that many zero bytes) with a gap after it."""
        size = data if isinstance(data, int) else max(len(data), 1)
        addr = self._next
        self._next += (size + 0x1fff) & ~0xfff  # a page-aligned unmapped gap follows
        return self.map(addr, size, writable=writable, data=b"" if isinstance(data, int) else data)

    def _find(self, addr: int, size: int) -> tuple[bytearray, int, bool]:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0:
            start = self._starts[i]
            buf, writable = self._regions[start]
            if addr + size <= start + len(buf):
                return buf, addr - start, writable
        raise BadAddress(f"0x{addr:x}+{size} is not mapped")

    def read(self, addr: int, size: int) -> bytes:
        self.reads += 1
        buf, off, _ = self._find(addr, size)
        return bytes(buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        self.writes += 1
        buf, off, writable = self._find(addr, len(data))
        if not writable:
            raise BadAddress(f"0x{addr:x}+{len(data)} is read-only")
        buf[off:off + len(data)] = data

    def peek(self, addr: int, size: int) -> bytes:
        """Read without counting (for test assertions)."""
        buf, off, _ = self._find(addr, size)
        return bytes(buf[off:off + size])
