"""What the kernel may cache of the ``proc/`` mirror, and the notifications that keep it exact.

vdrm lets the kernel cache three things it used to ask for every time, and invalidates
each of them, before the request that changed it returns, with FUSE's notifications
(``pyfuse3.invalidate_entry`` / ``invalidate_inode``):

Names: ``proc/<pid>``, ``proc/<pid>/fd/<n>`` and ``proc/<pid>/fdinfo/<n>``.
    A positive entry is cached (:data:`CACHE_TIMEOUT`) once vdrm has handed it out, and
    recorded under the DRM node inode of the open file it refers to (every open of a node
    has its own inode, see :mod:`vdrm.fs.tree`). An fd leaves a process's table only
    through ``close(2)`` in one of its forms (``close``, ``dup2`` over it, exit, SIGKILL,
    ``exec`` with ``O_CLOEXEC``), and every one sends FLUSH for the open file, after the fd
    is gone from the table and before ``close`` returns. FLUSH names the open file, not the
    caller: every entry recorded under it is invalidated (the fd's two names, then the
    pid), and the FLUSH answered only once the kernel has done it. Negative answers
    (ENOENT) are never cached by FUSE, nor are a host process's directory listings, so a
    NEW fd (``open``, and ``dup``/``fork``, which FUSE never sees) is found by the next
    lookup or listing, which asks the host's ``/proc`` afresh. Only DRM node opens need
    FLUSH: every other open is answered with ``noflush`` (:func:`vdrm.fs.caller.open_flags`).
    Emulated processes change their fds only through scenario events
    (:attr:`Scenario.closed_fds`), drained after each step; so their ``fd/`` and
    ``fdinfo/`` listings are cached too (``cache_readdir``), and an event that closes one
    of their fds invalidates the two directories' inodes and moves their mtime on
    (:meth:`vdrm.fs.tree.Tree.listing_cached`).

Attributes and pages of ``fdinfo`` files.
    Their ``st_size`` is the exact length of the text (procfs says 0), so the kernel can
    serve reads from its page cache (``keep_cache``, no ``direct_io``). Per inode this
    module keeps what the kernel was last told (:class:`FileState`): ``told``, the text
    whose length it was given; ``valid``, whether it may still believe it; ``pages``, the
    text its page cache may hold. Every event that can change any fdinfo text (a DRM
    request, a client's release, a sysfs or debugfs store, a clock step) calls
    :meth:`KernelCache.changed`: every inode the kernel may believe is invalidated (its
    attributes and pages), again before that event's reply returns. An open serves pages
    only if the kernel's size and pages are the text the open would render; reads in that
    mode always serve ``told``, so a read never mixes a size with another text.
    Content that moves by itself (a job running on the real clock) is never cached: such
    opens use ``direct_io`` as before, and the attributes are not cached.

Why a separate thread: the kernel handles a notification while holding the inode lock of
the directory (entries) or the page locks (inodes); a request of the same client may be
waiting for this daemon under those locks. pyfuse3's documentation therefore says not to
call them from a request handler's own thread; :mod:`vdrm.fs.operations` runs them with
``trio.to_thread`` and awaits them, so other requests are served meanwhile and the
handler still answers only once the kernel's cache no longer holds the old state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

# Seconds the kernel may keep what is invalidated exactly (names, fdinfo attributes).
CACHE_TIMEOUT = 300.0


@dataclass(eq=False)
class FileState:
    """What the kernel may hold of one fdinfo inode."""

    told: bytes | None = None  # the text whose length the kernel was given last
    valid: bool = False  # the kernel may still believe ``told``'s size (not invalidated since)
    pages: bytes | None = None  # the text the kernel's page cache may hold
    memo_key: Hashable = None  # what ``memo`` was rendered for
    memo: bytes | None = None


@dataclass(frozen=True)
class OpenMode:
    """How an open of a cacheable file is served."""

    direct_io: bool
    keep_cache: bool


class KernelCache:
    """The bookkeeping behind the invalidations; pure, the sending is the adapter's."""

    def __init__(self) -> None:
        self.generation = 0  # bumped by every event that can change an fdinfo text
        self.epoch = 0  # bumped by every invalidation: a listing made before it is unsure
        self._files: dict[int, FileState] = {}
        self._believed: set[int] = set()  # inodes whose state is valid
        self._entries: dict[int, set[tuple[int, int | None]]] = {}  # node ino -> {(pid, fd or None)}
        self._pending_inodes: list[int] = []
        self._pending_entries: list[tuple[int, int | None]] = []  # (pid, fd or None for the pid)
        self._unsettled: dict[int, int] = {}  # inode -> invalidations queued or on their way

    # -- names --------------------------------------------------------------------------

    def entry_handed_out(self, node_ino: int, pid: int, fd: int | None) -> None:
        """A cached name (``proc/<pid>`` if ``fd`` is None, else its fd's two names) refers
        to the open file of node inode ``node_ino``."""
        self._entries.setdefault(node_ino, set()).add((pid, fd))

    def flushed(self, node_ino: int) -> None:
        """An fd of that open file was closed: every name recorded under it goes."""
        self.epoch += 1
        names = self._entries.pop(node_ino, None)
        if names:
            # fds before pids: a pid's directory is revalidated after its entries are gone
            self._pending_entries += sorted(names, key=lambda n: n[1] is None)

    def names_gone(self, names: list[tuple[int, int | None]]) -> None:
        """Emulated fds (or pids) that a scenario event removed."""
        self.epoch += 1
        self._pending_entries += sorted(names, key=lambda n: n[1] is None)

    # -- fdinfo texts ---------------------------------------------------------------------

    def state(self, ino: int) -> FileState:
        st = self._files.get(ino)
        if st is None:
            st = self._files[ino] = FileState()
        return st

    def rendered(self, ino: int, key: Hashable, render: Any) -> bytes:
        """The text of ``ino`` for ``key`` (the generation and the fd's header), rendered
        once per key."""
        st = self.state(ino)
        if st.memo_key != key or st.memo is None:
            st.memo = render()
            st.memo_key = key
        return st.memo

    def told(self, ino: int, text: bytes, cacheable: bool) -> None:
        """The kernel was given ``len(text)`` as the size (cached only if ``cacheable``)."""
        st = self.state(ino)
        st.told = text
        st.valid = cacheable
        if cacheable:
            self._believed.add(ino)

    def opened(self, ino: int, text: bytes, cacheable: bool) -> OpenMode:
        """How to serve an open whose text is ``text``."""
        st = self.state(ino)
        if not cacheable or ino in self._unsettled:
            # an invalidation has not reached the kernel yet: its size may be the old one
            return OpenMode(direct_io=True, keep_cache=False)
        if st.valid and st.told != text:
            # the text moved without an event this module saw: never serve the old one
            self._invalidate(ino, st)
            return OpenMode(direct_io=True, keep_cache=False)
        keep = st.valid and st.pages == text
        st.pages = text if st.valid else None  # without keep_cache the kernel drops its pages
        return OpenMode(direct_io=False, keep_cache=keep)

    def page_text(self, ino: int) -> bytes:
        """What a read of a page-cache open serves: the text whose size the kernel has."""
        st = self.state(ino)
        if st.told is None:
            return b""
        if st.valid:
            st.pages = st.told
        return st.told

    def changed(self) -> None:
        """Something every fdinfo text may depend on changed: nothing the kernel holds
        stands (invalidations queued for :meth:`take`)."""
        self.generation += 1
        self.epoch += 1
        for ino in self._believed:
            st = self._files.get(ino)
            if st is not None:
                st.valid = False
                st.pages = None
                self._queue(ino)
        self._believed.clear()

    def inode_changed(self, ino: int) -> None:
        """An inode whose attributes (a directory's mtime) or cached listing changed."""
        self.epoch += 1
        self._queue(ino)

    def _invalidate(self, ino: int, st: FileState) -> None:
        self.epoch += 1
        st.valid = False
        st.pages = None
        self._believed.discard(ino)
        self._queue(ino)

    def _queue(self, ino: int) -> None:
        self._pending_inodes.append(ino)
        self._unsettled[ino] = self._unsettled.get(ino, 0) + 1

    def forget(self, ino: int) -> None:
        """The kernel forgot inode ``ino``: nothing of it is cached any more."""
        self._files.pop(ino, None)
        self._believed.discard(ino)

    # -- what to send ---------------------------------------------------------------------

    def take(self) -> tuple[list[int], list[tuple[int, int | None]]]:
        """The inodes and names to invalidate now (and forget them here)."""
        inodes, names = self._pending_inodes, self._pending_entries
        self._pending_inodes, self._pending_entries = [], []
        return inodes, names

    def settled(self, inodes: list[int]) -> None:
        """The invalidations of ``inodes`` from :meth:`take` reached the kernel (or failed)."""
        for ino in inodes:
            left = self._unsettled.get(ino, 0) - 1
            if left > 0:
                self._unsettled[ino] = left
            else:
                self._unsettled.pop(ino, None)

    @property
    def pending(self) -> bool:
        return bool(self._pending_inodes or self._pending_entries)
