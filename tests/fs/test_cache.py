"""What the tree lets the kernel cache, and what it tells it to forget (vdrm.fs.cache), without a mount."""

from __future__ import annotations

import os

from tests.fs.test_tree import ROOT, make_tree, open_node, resolve
from vdrm.fs.cache import CACHE_TIMEOUT, KernelCache
from vdrm.fs.tree import CachedText, Snapshot
from vdrm.kernel.clock import MonotonicClock


def open_fdinfo(tree, path: str):  # type: ignore[no-untyped-def]
    return tree.open(resolve(tree, path), os.O_RDONLY, ROOT)


def test_an_unchanged_fdinfo_is_served_from_the_page_cache() -> None:
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    st = tree.getattr(resolve(tree, "proc/100/fdinfo/3"))
    first = open_fdinfo(tree, "proc/100/fdinfo/3")
    assert isinstance(first, CachedText) and not first.direct_io
    text = first.read(0, 1 << 16)
    assert st.size == len(text) > 0 and st.attr_timeout == CACHE_TIMEOUT
    again = open_fdinfo(tree, "proc/100/fdinfo/3")
    assert isinstance(again, CachedText) and again.keep_cache  # the pages the kernel holds are right
    assert not tree.cache.pending


def test_a_change_invalidates_what_the_kernel_was_told() -> None:
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    ino = resolve(tree, "proc/100/fdinfo/3")
    tree.getattr(ino)
    open_fdinfo(tree, "proc/100/fdinfo/3").read(0, 4096)
    tree.changed()
    inodes, names = tree.invalidations()
    assert inodes == [ino] and names == []
    tree.cache.settled(inodes)  # the kernel applied it
    again = tree.open(ino, os.O_RDONLY, ROOT)  # a cached name: no lookup
    assert isinstance(again, CachedText) and not again.keep_cache  # no pages until it learns the size again
    tree.changed()
    assert tree.invalidations() == ([], [])  # it was told nothing since: nothing to forget


def test_an_open_while_an_invalidation_is_on_its_way_reads_fresh() -> None:
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    ino = resolve(tree, "proc/100/fdinfo/3")
    tree.getattr(ino)
    tree.changed()
    inodes, _ = tree.invalidations()  # taken, not yet settled
    assert isinstance(open_fdinfo(tree, "proc/100/fdinfo/3"), Snapshot)
    tree.cache.settled(inodes)
    assert isinstance(open_fdinfo(tree, "proc/100/fdinfo/3"), CachedText)


def test_flush_invalidates_every_name_of_that_open_file() -> None:
    tree, _, procs = make_tree()
    handle, other = open_node(tree), open_node(tree)
    procs.hold(100, 3, handle.ino)
    procs.hold(100, 4, handle.ino)  # a dup
    procs.hold(100, 5, other.ino)
    for fd in (3, 4, 5):
        resolve(tree, f"proc/100/fd/{fd}")
        resolve(tree, f"proc/100/fdinfo/{fd}")
    fd_dir, fdinfo_dir, proc = (resolve(tree, p) for p in ("proc/100/fd", "proc/100/fdinfo", "proc"))
    tree.flushed(handle)
    _, names = tree.invalidations()
    assert set(names[:-1]) == {(fd_dir, b"3"), (fdinfo_dir, b"3"), (fd_dir, b"4"), (fdinfo_dir, b"4")}
    assert names[-1] == (proc, b"100")  # the pid last, after its fds
    tree.flushed(handle)
    assert tree.invalidations() == ([], [])  # nothing handed out since


def test_names_are_cached_only_where_a_close_invalidates_them() -> None:
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    procs.spawn(100, threads=(101,))
    for path in ("proc/100", "proc/100/fd/3", "proc/100/fdinfo/3", "proc/100/fd"):
        assert tree.getattr(resolve(tree, path)).entry_timeout == CACHE_TIMEOUT, path
    node = tree.getattr(resolve(tree, "dev/dri/renderD128"))
    assert node.entry_timeout == 0  # one inode per open


def test_content_that_moves_by_itself_is_never_cached() -> None:
    tree, device, procs = make_tree()
    device.clock = MonotonicClock()  # no scheduler to ask: the text may move at any time
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    st = tree.getattr(resolve(tree, "proc/100/fdinfo/3"))
    assert st.attr_timeout == 0
    assert isinstance(open_fdinfo(tree, "proc/100/fdinfo/3"), Snapshot)


def test_a_text_that_moved_unseen_is_not_served_from_the_cache() -> None:
    cache = KernelCache()
    cache.told(7, b"old text\n", True)
    how = cache.opened(7, b"new text, longer\n", True)
    assert how.direct_io and not how.keep_cache
    inodes, _ = cache.take()
    assert inodes == [7]
