"""The binary uAPI: ioctl request numbers and C struct layouts, declared like the headers.

``include/uapi/asm-generic/ioctl.h`` packs a request as ``dir << 30 | size << 16 |
type << 8 | nr`` (dir: bit 0 ``_IOC_WRITE`` = the kernel reads the struct, bit 1
``_IOC_READ`` = the kernel writes it back; size 14 bits). DRM's type is ``'d'`` and its
macros are :func:`DRM_IO`, :func:`DRM_IOR`, :func:`DRM_IOW`, :func:`DRM_IOWR`.

A :class:`Struct` lists its :class:`Field` s in header order with the kernel's names and
C types; offsets, padding and the size follow the LP64 C ABI (natural alignment, the size
rounded up to the largest member's alignment), little-endian -- what arm64 and x86-64
userspace both build. ``size_t`` / ``long`` / pointers are 64-bit there (``drm_version``
is 64 bytes; a 32-bit process would send 36, which vdrm does not emulate).

Fields that are user pointers say what they point at (a :class:`Pointer`): an array whose
length is another field (:class:`UserArray`), a NUL-terminated string
(:class:`UserString`), a counted input string (:class:`UserBytes`), an output string
buffer with an in/out length (:class:`UserBuffer`), or an address the ioctl only passes
on (:class:`UserAddress`). They are read and written through
:mod:`vdrm.drm.uaccess`, so a bad pointer is EFAULT.
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from vdrm.drm.uaccess import UserMemory, copy_from_user, copy_to_user, strncpy_from_user
from vdrm.errors import InvalidArgument, OutOfMemory

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS, _IOC_DIRBITS = 8, 8, 14, 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2
IOC_IN = IOC_WRITE << _IOC_DIRSHIFT  # the kernel copies the struct in
IOC_OUT = IOC_READ << _IOC_DIRSHIFT  # the kernel copies it back out
IOC_SIZE_MAX = (1 << _IOC_SIZEBITS) - 1

DRM_IOCTL_BASE = ord("d")
DRM_COMMAND_BASE = 0x40
DRM_COMMAND_END = 0xA0

CTYPES: Mapping[str, str] = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q",
                             "s8": "b", "s16": "h", "s32": "i", "s64": "q"}
"""C type -> struct format character (``__u32`` is ``u32``; ``int`` is ``s32``; ``size_t``,
``long`` and pointers are ``u64``)."""


def ioc(direction: int, type_: int, nr: int, size: int) -> int:
    """``_IOC(dir, type, nr, size)``."""
    if not 0 <= size <= IOC_SIZE_MAX or not 0 <= nr <= 0xFF or not 0 <= type_ <= 0xFF:
        raise ValueError(f"ioctl fields out of range: dir={direction} type={type_} nr={nr} size={size}")
    return (direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (type_ << _IOC_TYPESHIFT) | nr


def ioc_dir(cmd: int) -> int:
    return (cmd >> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1)


def ioc_type(cmd: int) -> int:
    return (cmd >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


def ioc_nr(cmd: int) -> int:
    return (cmd >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def ioc_size(cmd: int) -> int:
    return (cmd >> _IOC_SIZESHIFT) & IOC_SIZE_MAX


# -- pointers -------------------------------------------------------------------------


class Pointer:
    """What a pointer field points at. ``read`` makes the handler's argument from user memory;
    ``write`` stores a result there (output pointers). :meth:`length_field` names the field
    that holds its length, if any."""

    def length_field(self) -> str | None:
        return getattr(self, "count", None)

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> Any:
        raise NotImplementedError

    def write(self, mem: UserMemory, addr: int, values: dict[str, int], result: Any) -> None:
        raise NotImplementedError


USER_ARRAY_MAX_BYTES = 64 << 20
"""vdrm's cap on one user array: the kernel's ``kvmalloc_array`` fails (ENOMEM) long before
a u32 count of u32s (16 GiB) is copied; vdrm says ENOMEM above 64 MiB without reading."""


@dataclass(frozen=True)
class UserArray(Pointer):
    """``count`` elements of C type ``elem`` (SUBMIT's ``bo_handles``): a list of ints."""

    count: str
    elem: str = "u32"

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> list[int]:
        n = values[self.count]
        fmt = "<" + CTYPES[self.elem]
        width = _struct.calcsize(fmt)
        if n * width > USER_ARRAY_MAX_BYTES:
            raise OutOfMemory(f"{self.count} = {n}: {n * width} bytes of user array (at most "
                              f"{USER_ARRAY_MAX_BYTES})")
        data = copy_from_user(mem, addr, n * width)
        return [v for (v,) in _struct.iter_unpack(fmt, data)]


@dataclass(frozen=True)
class UserString(Pointer):
    """A NUL-terminated string of at most ``limit`` bytes read (SET_LABEL_BO's ``label``).

    NULL gives ``null`` (the handler's "no string"); a string without a NUL in ``limit``
    bytes is handed on at that length, for the handler to refuse as too long.
    """

    limit: int
    null: Any = None

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> Any:
        if addr == 0:
            return self.null
        return strncpy_from_user(mem, addr, self.limit).decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class UserBytes(Pointer):
    """A string of exactly ``count`` bytes (SET_CLIENT_NAME's ``name``), at most ``limit``.

    A count above ``limit`` is EINVAL before anything is read, as the kernel checks it.
    """

    count: str
    limit: int

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> str:
        n = values[self.count]
        if n > self.limit:
            raise InvalidArgument(f"{self.count} is {n}, at most {self.limit}")
        return copy_from_user(mem, addr, n).decode("latin-1")


@dataclass(frozen=True)
class UserBuffer(Pointer):
    """An output string buffer whose length field is in/out (VERSION's name/date/desc).

    ``drm_copy_field`` rules: at most ``count`` bytes are written, no NUL, nothing for a
    NULL buffer or a zero length, and the length field is set to the string's full length.
    With ``whole=True`` (GET_UNIQUE) the string is written only if it fits entirely.
    """

    count: str
    whole: bool = False

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> None:
        return None

    def write(self, mem: UserMemory, addr: int, values: dict[str, int], result: Any) -> None:
        data = str(result).encode()
        room = values[self.count]
        values[self.count] = len(data)
        if self.whole:
            if room >= len(data):
                copy_to_user(mem, addr, data)
        elif addr and room:
            copy_to_user(mem, addr, data[:room])


@dataclass(frozen=True)
class UserAddress(Pointer):
    """A user address passed on as a number (PERFCNT_DUMP's ``buf_ptr``)."""

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> int:
        return addr


# -- structs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One member of a uAPI struct.

    ``io``: ``in`` (read by the kernel), ``out`` (written back), ``inout``. ``result``:
    the handler's result key an ``out`` field takes (defaults to the field's name).
    ``vdrm`` marks what vdrm adds (only in vdrm's own structs).
    """

    name: str
    ctype: str
    io: str = "in"
    pointer: Pointer | None = None
    result: str | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.ctype not in CTYPES:
            raise ValueError(f"field {self.name}: unknown C type {self.ctype!r}")
        if self.io not in ("in", "out", "inout"):
            raise ValueError(f"field {self.name}: io is in, out or inout, not {self.io!r}")
        if self.pointer is not None and self.ctype != "u64":
            raise ValueError(f"field {self.name}: a user pointer is a u64")

    @property
    def result_key(self) -> str:
        return self.result or self.name

    @property
    def is_input(self) -> bool:
        return self.io in ("in", "inout")

    @property
    def is_output(self) -> bool:
        return self.io in ("out", "inout")


@dataclass(frozen=True)
class Struct:
    """A C struct of :class:`Field` s with the LP64 layout (see the module doc)."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    _format: str = field(init=False, repr=False, compare=False)
    _offsets: dict[str, int] = field(init=False, repr=False, compare=False)
    _size: int = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"struct {self.name}: duplicate field names")
        fmt, offsets, offset, align = "<", {}, 0, 1
        for f in self.fields:
            width = _struct.calcsize(CTYPES[f.ctype])
            pad = -offset % width
            fmt += "x" * pad + CTYPES[f.ctype]
            offset += pad
            offsets[f.name] = offset
            offset += width
            align = max(align, width)
        fmt += "x" * (-offset % align)
        object.__setattr__(self, "_format", fmt)
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_size", _struct.calcsize(fmt))
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})
        object.__setattr__(self, "_names", tuple(names))
        for f in self.fields:
            count = f.pointer.length_field() if f.pointer is not None else None
            if count is not None and count not in offsets:
                raise ValueError(f"struct {self.name}: {f.name} counts by unknown field {count}")

    @property
    def size(self) -> int:
        return self._size

    def offset(self, name: str) -> int:
        return self._offsets[name]

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    @property
    def count_fields(self) -> frozenset[str]:
        """Fields that only give another field's length (``bo_handle_count``, ``name_len``)."""
        return frozenset(c for f in self.fields if f.pointer is not None and (c := f.pointer.length_field()))

    def unpack(self, data: bytes) -> dict[str, int]:
        """Field values from exactly :attr:`size` bytes."""
        return dict(zip(self._names, _struct.unpack(self._format, data)))

    def pack(self, values: Mapping[str, int]) -> bytes:
        """:attr:`size` bytes; a missing field is 0 (padding is always 0)."""
        return _struct.pack(self._format, *[values.get(name, 0) for name in self._names])

    def layout(self) -> str:
        """``name:type@offset`` for each field, e.g. for HELP."""
        return ",".join(f"{f.name}:{f.ctype}@{self._offsets[f.name]}" for f in self.fields)


@dataclass(frozen=True)
class IoctlNumber:
    """A request number: direction, ``nr`` (absolute, core or driver range) and struct."""

    direction: int
    nr: int
    struct: Struct | None
    size: int = field(init=False)
    cmd: int = field(init=False)

    def __post_init__(self) -> None:
        size = self.struct.size if self.struct else 0
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "cmd", ioc(self.direction, DRM_IOCTL_BASE, self.nr, size))

    @property
    def macro(self) -> str:
        return {IOC_NONE: "DRM_IO", IOC_READ: "DRM_IOR", IOC_WRITE: "DRM_IOW",
                IOC_READ | IOC_WRITE: "DRM_IOWR"}[self.direction]

    @property
    def is_driver(self) -> bool:
        return DRM_COMMAND_BASE <= self.nr < DRM_COMMAND_END


def DRM_IO(nr: int) -> IoctlNumber:  # noqa: N802 - the kernel's macro names
    return IoctlNumber(IOC_NONE, nr, None)


def DRM_IOR(nr: int, struct: Struct) -> IoctlNumber:  # noqa: N802
    return IoctlNumber(IOC_READ, nr, struct)


def DRM_IOW(nr: int, struct: Struct) -> IoctlNumber:  # noqa: N802
    return IoctlNumber(IOC_WRITE, nr, struct)


def DRM_IOWR(nr: int, struct: Struct) -> IoctlNumber:  # noqa: N802
    return IoctlNumber(IOC_READ | IOC_WRITE, nr, struct)
