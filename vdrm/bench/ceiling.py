"""The ceiling: the smallest pyfuse3 filesystem that does what vdrm's mount is timed doing.

``python -m vdrm.bench.ceiling MOUNTPOINT [--pids N] [--size BYTES]`` mounts, in the
foreground, a tree of constant answers that costs pyfuse3 as little as it can:

``file``
    a constant text of ``--size`` bytes (an fdinfo's length), ``st_size`` 0 and
    ``direct_io`` as vdrm's generated files;
``echo``
    each open is a queue: every written line is read back once (vdrm's request/reply);
``proc/<pid>/fd/3`` and ``proc/<pid>/fdinfo/3``
    for ``pid`` in ``1..N``: the shape of the ``/proc`` walk nvtop does.

Same pyfuse3 settings as vdrm's daemon (mount options, ``min_tasks=1``,
``max_tasks=32``, no ``flush``, ``direct_io``), and every name and attribute cached as
long as the kernel allows, so any request vdrm needs beyond these is vdrm's cost.
It prints ``ready`` on stdout once mounted and unmounts on SIGTERM or SIGINT.

It is a stand-alone program the benchmark runs as a subprocess; ``vdrm.bench`` sits
above ``vdrm.fs`` in the layering, so it may use pyfuse3 and trio directly.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import signal
import stat
import sys
from collections import deque

import pyfuse3
import trio

MOUNT_OPTIONS = {"fsname=vdrm-ceiling", "subtype=vdrm-ceiling", "default_permissions", "allow_other"}
MAX_TASKS = 32  # as vdrm's daemon
TIMEOUT = 300.0
ROOT = pyfuse3.ROOT_INODE


class _Node:
    def __init__(self, ino: int, mode: int, *, parent: int = ROOT, data: bytes = b"", target: bytes = b""):
        self.ino = ino
        self.mode = mode
        self.parent = parent
        self.children: dict[bytes, int] = {}
        self.data = data
        self.target = target


class CeilingOperations(pyfuse3.Operations):
    """Constant answers from a dict of inodes; nothing computed per request."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, npids: int, size: int):
        super().__init__()
        self._inos = itertools.count(ROOT + 1)
        self.nodes: dict[int, _Node] = {ROOT: _Node(ROOT, stat.S_IFDIR | 0o755, parent=ROOT)}
        text = (b"x" * (size - 1) + b"\n") if size else b""
        self.file = self._add(ROOT, b"file", stat.S_IFREG | 0o444, data=text)
        self.echo = self._add(ROOT, b"echo", stat.S_IFREG | 0o666)
        proc = self._add(ROOT, b"proc", stat.S_IFDIR | 0o555)
        for pid in range(1, npids + 1):
            d = self._add(proc, str(pid).encode(), stat.S_IFDIR | 0o555)
            fd = self._add(d, b"fd", stat.S_IFDIR | 0o500)
            self._add(fd, b"3", stat.S_IFLNK | 0o700, target=b"/dev/dri/renderD128")
            fdinfo = self._add(d, b"fdinfo", stat.S_IFDIR | 0o555)
            self._add(fdinfo, b"3", stat.S_IFREG | 0o444, data=text)
        self._files: dict[int, object] = {}
        self._fhs = itertools.count(1)

    def _add(self, parent: int, name: bytes, mode: int, **kw: bytes) -> int:
        ino = next(self._inos)
        self.nodes[ino] = _Node(ino, mode, parent=parent, **kw)
        self.nodes[parent].children[name] = ino
        return ino

    def _attr(self, node: _Node) -> "pyfuse3.EntryAttributes":
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        attr.entry_timeout = attr.attr_timeout = TIMEOUT
        attr.st_mode = node.mode
        attr.st_nlink = 2 if stat.S_ISDIR(node.mode) else 1
        attr.st_size = len(node.target)
        attr.st_blksize = 4096
        return attr

    async def lookup(self, parent_inode, name, ctx):
        node = self.nodes.get(parent_inode)
        ino = node.children.get(name) if node else None
        if name == b".":
            ino = parent_inode
        elif name == b"..":
            ino = node.parent if node else None
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(self.nodes[ino])

    async def getattr(self, inode, ctx):
        return self._attr(self.nodes[inode])

    async def readlink(self, inode, ctx):
        return self.nodes[inode].target

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start_id, token):
        entries = list(self.nodes[fh].children.items())
        for index in range(start_id, len(entries)):
            name, ino = entries[index]
            if not pyfuse3.readdir_reply(token, name, self._attr(self.nodes[ino]), index + 1):
                break

    async def open(self, inode, flags, ctx):
        fh = next(self._fhs)
        self._files[fh] = deque() if inode == self.echo else self.nodes[inode].data
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    async def read(self, fh, off, size):
        f = self._files[fh]
        if isinstance(f, deque):
            return f.popleft() if f else b""
        return f[off:off + size]

    async def write(self, fh, off, buf):
        f = self._files[fh]
        if not isinstance(f, deque):
            raise pyfuse3.FUSEError(errno.EBADF)
        f.extend(line + b"\n" for line in bytes(buf).split(b"\n")[:-1])
        return len(buf)

    async def setattr(self, inode, attr, fields, fh, ctx):
        return self._attr(self.nodes[inode])

    async def release(self, fh):
        self._files.pop(fh, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdrm.bench.ceiling")
    parser.add_argument("mountpoint")
    parser.add_argument("--pids", type=int, default=0, help="proc/<pid> directories to serve")
    parser.add_argument("--size", type=int, default=400, help="bytes of the constant file")
    args = parser.parse_args(argv)
    ops = CeilingOperations(args.pids, args.size)
    pyfuse3.init(ops, args.mountpoint, set(MOUNT_OPTIONS))

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            async def session() -> None:
                await pyfuse3.main(min_tasks=1, max_tasks=MAX_TASKS)
                nursery.cancel_scope.cancel()

            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                nursery.start_soon(session)
                await trio.lowlevel.checkpoint()
                print("ready", flush=True)
                async for _ in signals:
                    pyfuse3.terminate()
                    break

    try:
        trio.run(run)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
