"""What ``stat(2)`` says of an emulated DRM node: a character device 226:<minor>.

The runner's ``/dev/dri`` holds the mount's node files (regular FUSE files: opening one
is a FUSE open, i.e. a new DRM client). The kernel would stat them as regular files; the
supervisor answers ``stat``/``fstat``/``newfstatat`` with :func:`pack_stat` and ``statx``
with :func:`pack_statx` instead: the x86_64 ``struct stat`` (144 bytes) and ``struct
statx`` (256 bytes, ``STATX_BASIC_STATS`` valid) of a devtmpfs character device. Every
path and every open of one node report the same ``st_dev`` and ``st_ino``, as devtmpfs
does (one inode per device node).
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

DEVTMPFS_DEV = os.makedev(0, 5)  # where /dev lives on a typical system
STATX_BASIC_STATS = 0x7FF
_STAT = struct.Struct("<QQQIIIiQqqq6q24x")
_STATX_HEAD = struct.Struct("<IIQIIIHxxQQQQ")  # mask .. attributes_mask
_STATX_TIME = struct.Struct("<qIi")
_STATX_TAIL = struct.Struct("<IIII")  # rdev major/minor, dev major/minor
STATX_SIZE = 256
assert _STAT.size == 144


@dataclass(frozen=True)
class NodeStat:
    """The attributes of one emulated character device node."""

    ino: int
    mode: int  # S_IFCHR | permission bits
    uid: int
    gid: int
    rdev: int
    time_ns: int
    dev: int = DEVTMPFS_DEV


def pack_stat(st: NodeStat) -> bytes:
    """x86_64 ``struct stat``."""
    sec, nsec = divmod(st.time_ns, 1_000_000_000)
    return _STAT.pack(st.dev, st.ino, 1, st.mode, st.uid, st.gid, 0, st.rdev, 0, 4096, 0,
                      sec, nsec, sec, nsec, sec, nsec)


def pack_statx(st: NodeStat) -> bytes:
    """``struct statx`` with the basic fields valid (no birth time, as devtmpfs)."""
    sec, nsec = divmod(st.time_ns, 1_000_000_000)
    head = _STATX_HEAD.pack(STATX_BASIC_STATS, 4096, 0, 1, st.uid, st.gid, st.mode, st.ino, 0, 0, 0)
    times = _STATX_TIME.pack(sec, nsec, 0)  # atime
    zero = _STATX_TIME.pack(0, 0, 0)  # btime: not valid
    tail = _STATX_TAIL.pack(os.major(st.rdev), os.minor(st.rdev), os.major(st.dev), os.minor(st.dev))
    data = head + times + zero + times + times + tail
    return data + bytes(STATX_SIZE - len(data))


AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_STATX_DONT_SYNC = 0x4000
STATX_INO = 0x100
_libc = ctypes.CDLL(None, use_errno=True)
_libc.statx.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p)


def identity(path: str | None = None, *, fd: int = -100, follow: bool = True) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of ``path`` (or of ``fd`` alone), from the cached attributes:
    ``statx(AT_STATX_DONT_SYNC)`` makes no request to a FUSE server, so the daemon may ask
    about files of its own mount from its engine thread (a magic link such as
    ``/proc/<tid>/fd/<n>`` is followed without a lookup either). OSError if there is none."""
    buf = ctypes.create_string_buffer(STATX_SIZE)
    flags = AT_STATX_DONT_SYNC | (0 if follow else AT_SYMLINK_NOFOLLOW) | (AT_EMPTY_PATH if path is None else 0)
    if _libc.statx(fd, os.fsencode(path or ""), flags, STATX_INO, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    ino = struct.unpack_from("<Q", buf, 32)[0]
    dev_major, dev_minor = struct.unpack_from("<II", buf, 136)
    return os.makedev(dev_major, dev_minor), ino
