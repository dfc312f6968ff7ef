"""The ``pyfuse3.Operations`` adapter: FUSE requests in, :class:`~vdrm.fs.tree.Tree` calls out.

Thin by design: every handler turns pyfuse3's arguments into one tree call and the
answer into pyfuse3's types. This is the one edge where errors are converted:

- a :class:`~vdrm.errors.VdrmError` becomes ``FUSEError(e.errno)``;
- any other exception is a vdrm bug: it is logged with its traceback (logger
  ``vdrm.fs.operations``, "request failed") and answered with ``EIO``. Only ``FUSEError``
  may leave a pyfuse3 handler, or the whole mount dies.

Engine calls are synchronous, so each handler's work is atomic with respect to the
other trio tasks.

The blocking model (:mod:`vdrm.fs.waits`). Every handler but one answers at once. The
one request that waits is a DRM request the engine cannot answer yet (``WouldBlock``:
WAIT_BO on the real clock). Its ``write(2)`` returns at once; a background task sleeps
until the device clock gets there and queues the reply (waking poll(2)). What blocks is
the ``read(2)`` of that reply, as the ioctl would: only the caller waits, and only while
a request whose reply it may read is still waiting for the clock (an empty queue with
nothing pending reads as end-of-file, as before). A blocked read holds one of pyfuse3's worker
tasks, so at most :data:`~vdrm.fs.waits.MAX_BLOCKED_READS` reads block at once; one more
(and any read of a file opened ``O_NONBLOCK``) answers ``EAGAIN`` at once: poll(2) for
POLLIN instead. pyfuse3 ignores FUSE_INTERRUPT, so a blocked read looks every
:data:`~vdrm.fs.waits.SIGNAL_POLL` seconds for a signal pending in the processes holding
the file; if one is, the waiting request is interrupted: its reply becomes
``error EINTR`` (the kernel's ERESTARTSYS seen by a caller whose handler does not
restart), which the read returns, so a SIGKILLed waiter dies at once.

The kernel's cache (:mod:`vdrm.fs.cache`): ``flush`` is the close hook (FUSE sends it on
every ``close(2)`` of an fd, after the fd left the table); writes, releases and FLUSH of a
DRM node queue invalidations, and the handler sends them (``notify``, in a worker thread:
pyfuse3's documentation forbids them in the handler's own) and answers only once the
kernel has applied them.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import itertools
import logging
import os
from typing import Any, Awaitable, Callable, Sequence

import pyfuse3
import trio

from vdrm.errors import VdrmError
from vdrm.fs import caller, waits
from vdrm.fs.tree import Caller, DirEntry, DrmOpen, OpenFile, Stat, Tree

log = logging.getLogger(__name__)


def _attributes(st: Stat) -> pyfuse3.EntryAttributes:
    attr = pyfuse3.EntryAttributes()
    attr.st_ino = st.ino
    attr.generation = 0
    attr.entry_timeout = st.entry_timeout
    attr.attr_timeout = st.attr_timeout
    attr.st_mode = st.mode
    attr.st_nlink = st.nlink
    attr.st_uid = st.uid
    attr.st_gid = st.gid
    attr.st_rdev = st.rdev
    attr.st_size = st.size
    attr.st_blksize = 4096
    attr.st_blocks = 0
    attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = st.mtime_ns
    return attr


def send_invalidations(inodes: Sequence[int], entries: Sequence[tuple[int, bytes]]) -> None:
    """Tell the kernel to forget names, then inodes' attributes and pages (blocking: run it
    in a worker thread). A name or inode the kernel does not hold answers ENOENT: ignored."""
    for parent, name in entries:
        try:
            pyfuse3.invalidate_entry(parent, name)
        except OSError:
            pass
    for ino in inodes:
        try:
            pyfuse3.invalidate_inode(ino)
        except OSError:
            pass


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _edge(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Convert errors once: VdrmError -> its errno; anything else -> logged, EIO."""

    @functools.wraps(handler)
    async def wrapper(self: "Operations", *args: Any) -> Any:
        try:
            return await handler(self, *args)
        except pyfuse3.FUSEError:
            raise
        except VdrmError as e:
            log.debug("%s: %s %s", handler.__name__, e.errname, e)
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            log.exception("request failed: %s%r", handler.__name__, _loggable(args))
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _loggable(args: Sequence[Any]) -> tuple:
    return tuple(a[:64] if isinstance(a, (bytes, str)) else a for a in args
                 if not isinstance(a, (pyfuse3.RequestContext, pyfuse3.ReaddirToken)))


@dataclasses.dataclass(eq=False)
class _Listing:
    """An open directory: its listing as of OPENDIR (or the last rewind), and the cache
    epoch then (see :meth:`Operations.readdir`)."""

    inode: int
    caller: Caller
    entries: list[DirEntry]
    epoch: int
    read: bool = False  # a readdir from offset 0 has used ``entries``
    cached: bool = False  # the kernel keeps the listing (FOPEN_CACHE_DIR)


class Operations(pyfuse3.Operations):
    """pyfuse3's view of the tree."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, tree: Tree, *,
                 notify: Callable[[Sequence[int], Sequence[tuple[int, bytes]]], None] | None = None):
        """``notify`` sends invalidations to the kernel (:func:`send_invalidations` on a real
        mount); None: there is no kernel (tests), they are only dropped."""
        super().__init__()
        self.tree = tree
        self._notify_kernel = notify
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, _Listing] = {}
        self._handles = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._stopping: trio.Event | None = None
        self._answered: dict[DrmOpen, trio.Event] = {}  # set when the handle waits no more
        self._routing_checked = False  # logged once if the request-header shim is not in effect
        self._progress: dict[DrmOpen, trio.Event] = {}  # set whenever a waited reply is queued
        self._sleeps: dict[DrmOpen, trio.CancelScope] = {}
        self._nonblocking: set[int] = set()  # fhs opened with O_NONBLOCK
        self._blocked_reads = 0

    def start(self, nursery: trio.Nursery) -> None:
        """Call inside trio before serving: background waits run in ``nursery``."""
        self._nursery = nursery
        self._stopping = trio.Event()

    def stop(self) -> None:
        """Before ``pyfuse3.terminate()``: end every wait and wake every poll(2) waiter."""
        if self._stopping is not None:
            self._stopping.set()
        for handle in self.tree.opens():
            handle.wake(always=True)

    # -- names and attributes -----------------------------------------------------------

    @_edge
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _attributes(self.tree.lookup(parent_inode, _name(name), Caller(ctx.pid, ctx.uid, ctx.gid)))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        try:
            for ino, nlookup in inode_list:
                self.tree.forget(ino, nlookup)
        except Exception:  # forget has no request to answer; never let it escape
            log.exception("request failed: forget")

    @_edge
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _attributes(self.tree.getattr(inode))

    @_edge
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if fields.update_mode or fields.update_uid or fields.update_gid:
            raise pyfuse3.FUSEError(errno.EPERM)
        if fields.update_size:  # O_TRUNC, as `echo 1 > profiling` opens it
            return _attributes(self.tree.setattr_size(inode))
        return _attributes(self.tree.getattr(inode))  # times: ignored, as in procfs

    @_edge
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self.tree.readlink(inode, Caller(ctx.pid, ctx.uid, ctx.gid)).encode()

    @_edge
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_namemax = 255
        return data

    # -- directories -------------------------------------------------------------------

    @_edge
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        fh = next(self._handles)
        who = Caller(ctx.pid, ctx.uid, ctx.gid)
        listing = self._dirs[fh] = _Listing(inode, who, self.tree.listdir(inode, who), self.tree.cache.epoch)
        if self.tree.listing_cached(inode):
            listing.cached = True
            caller.open_flags(fh, caller.CACHE_READDIR | caller.KEEP_CACHE)
        return fh

    @_edge
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._dirs[fh]
        if start_id == 0:
            # rewinddir(3) lists afresh, as procfs does; and so does a first readdir after
            # something changed since OPENDIR, of a listing the kernel keeps: that must be
            # the one of the moment it is sent, or a close just played would stay listed
            # (one it does not keep goes out with timeouts 0, below)
            if listing.read or (listing.cached and listing.epoch != self.tree.cache.epoch):
                old, listing.entries = listing.entries, self.tree.listdir(listing.inode, listing.caller)
                listing.epoch = self.tree.cache.epoch
                kept = {id(e.inode) for e in listing.entries}
                self.tree.drop_unreferenced(e.inode for e in old if id(e.inode) not in kept)
            listing.read = True
        entries, epoch = listing.entries, listing.epoch
        # A close or a change since OPENDIR may have invalidated what the listing says
        # before the kernel got it: then let it cache nothing of these entries.
        settled = epoch == self.tree.cache.epoch
        for index in range(start_id, len(entries)):
            entry = entries[index]
            st = entry.stat if settled else dataclasses.replace(entry.stat, entry_timeout=0.0, attr_timeout=0.0)
            if not pyfuse3.readdir_reply(token, entry.name.encode(), _attributes(st), index + 1):
                break
            if entry.counted:
                self.tree.remember(entry.inode)

    @_edge
    async def releasedir(self, fh: int) -> None:
        listing = self._dirs.pop(fh, None)
        if listing is not None:
            self.tree.drop_unreferenced(e.inode for e in listing.entries)

    # -- files -------------------------------------------------------------------------

    @_edge
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        file = self.tree.open(inode, flags, Caller(ctx.pid, ctx.uid, ctx.gid))
        fh = next(self._handles)
        self._files[fh] = file
        if flags & os.O_NONBLOCK:
            self._nonblocking.add(fh)
        await self.settle()
        if not isinstance(file, DrmOpen):  # only a DRM node's close is a hook (vdrm.fs.cache)
            caller.open_flags(fh, caller.NOFLUSH)
        return pyfuse3.FileInfo(fh=fh, direct_io=file.direct_io, keep_cache=file.keep_cache)

    @_edge
    async def read(self, fh: int, off: int, size: int) -> bytes:
        file = self._files[fh]
        if not isinstance(file, DrmOpen):
            return file.read(off, size)
        reader = caller.sender().tid  # before any await: see vdrm.fs.caller
        data = file.read(off, size, reader)
        if data or file not in self._answered or not file.waiting_for(reader):
            return data
        return await self._read_waited(fh, file, off, size, reader)

    @_edge
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        file = self._files[fh]
        writer = caller.sender().tid  # before any await: see vdrm.fs.caller
        if not writer and not self._routing_checked:
            self._routing_checked = True
            if not caller.active():
                log.warning("replies on a shared DRM fd go to whichever process reads first: %s",
                            caller.why_inactive())
        try:
            if isinstance(file, DrmOpen):
                written = file.write(off, buf, writer)
                self._answer(file)
            else:
                written = file.write(off, buf)
        finally:  # even a refused store or request may have changed something
            self.tree.changed()
            await self.settle()
        return written

    @_edge
    async def poll(self, inode: int, fh: int, poll_handle: pyfuse3.PollHandle | None,
                   ctx: pyfuse3.RequestContext) -> int:
        return self._files[fh].poll(poll_handle)

    @_edge
    async def flush(self, fh: int) -> None:
        file = self._files.get(fh)
        if isinstance(file, DrmOpen):
            self.tree.flushed(file)
            await self.settle()

    @_edge
    async def release(self, fh: int) -> None:
        file = self._files.pop(fh, None)
        self._nonblocking.discard(fh)
        if file is not None:
            file.release()
            await self.settle()

    # The namespace is fixed: nothing can be created, linked, renamed or removed.

    @_edge
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def _fixed(self, *args: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EPERM)

    mknod = mkdir = symlink = link = unlink = rmdir = rename = _fixed

    # -- the kernel's cache --------------------------------------------------------------

    async def settle(self) -> None:
        """Send the invalidations the tree queued, and return once the kernel applied them:
        every handler that changed something, and a request outside FUSE (a binary ioctl
        through the bridge) before its result is sent."""
        cache = self.tree.cache
        if not cache.pending:
            return
        inodes, entries = self.tree.invalidations()
        try:
            if self._notify_kernel is not None:
                await trio.to_thread.run_sync(self._notify_kernel, inodes, entries)
        finally:
            cache.settled(inodes)

    # -- waiting for the device clock ----------------------------------------------------

    def _answer(self, handle: DrmOpen) -> None:
        """Answer ``handle``'s requests; one that must wait is answered by a background task."""
        if handle in self._answered:
            return  # a background task answers this handle's requests in order
        until = handle.answer()
        if until is None:
            return
        if self._nursery is None or self._stopping is None:
            raise RuntimeError("Operations.start() was not called")
        self._answered[handle] = trio.Event()
        self._progress[handle] = trio.Event()
        self._nursery.start_soon(self._answer_later, handle, until)

    async def _answer_later(self, handle: DrmOpen, until: int | None) -> None:
        assert self._stopping is not None
        clock = self.tree.device.clock
        try:
            while until is not None and not handle.released:
                with trio.CancelScope() as scope:
                    self._sleeps[handle] = scope
                    with trio.move_on_after(max(0.0, (until - clock.now_ns()) / 1e9)):
                        await self._stopping.wait()
                self._sleeps.pop(handle, None)
                if self._stopping.is_set():
                    break
                until = handle.answer()
                self._progress.pop(handle).set()
                self._progress[handle] = trio.Event()
                self.tree.changed()
                await self.settle()
        except Exception:
            log.exception("request failed: answering client %d after a wait", handle.file.client_id)
        finally:
            self._sleeps.pop(handle, None)
            del self._answered[handle]
            self._progress.pop(handle).set()

    async def _read_waited(self, fh: int, handle: DrmOpen, off: int, size: int, reader: int = 0) -> bytes:
        """A read of a reply still waiting for the clock: block (bounded), or EAGAIN."""
        if fh in self._nonblocking or self._blocked_reads >= waits.MAX_BLOCKED_READS:
            raise pyfuse3.FUSEError(errno.EAGAIN)
        assert self._stopping is not None
        self._blocked_reads += 1
        watch = waits.SignalWatch(self.tree.procfs, handle.ino, handle.file.pid, reader)
        try:
            while True:
                data = handle.read(off, size, reader)
                progress = self._progress.get(handle)
                if data or progress is None or handle.released or self._stopping.is_set() \
                        or not handle.waiting_for(reader):
                    return data
                with trio.move_on_after(waits.SIGNAL_POLL):
                    await progress.wait()
                if not progress.is_set() and watch.interrupted():
                    handle.interrupt()
                    scope = self._sleeps.get(handle)
                    if scope is not None:
                        scope.cancel()  # the next request may wait for another time
                    return handle.read(off, size, reader)
        finally:
            self._blocked_reads -= 1
