"""The path table and its inodes, without a mount: a fake device and fake processes."""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fs.conftest import FakeDevice, FakeProcesses
from vdrm.panfrost.releases import PANFROST
from vdrm.errors import AccessDenied, InvalidArgument, NoEntry
from vdrm.fs.cache import CACHE_TIMEOUT
from vdrm.fs.tree import (DYNAMIC_TIMEOUT, POLL_READABLE, POLL_WRITABLE, ROOT_INO, STATIC_TIMEOUT, TABLE, Caller, DrmOpen,
                          Kind, Tree)

ROOT = Caller(tid=4242, uid=0, gid=0)
PDEV = "fde60000.gpu"


def make_tree() -> tuple[Tree, FakeDevice, FakeProcesses]:
    device, procs = FakeDevice(), FakeProcesses()
    tree = Tree(device, procs)  # type: ignore[arg-type]
    procs.is_open_ino = tree.is_open_ino
    return tree, device, procs


def resolve(tree: Tree, path: str) -> int:
    ino = ROOT_INO
    for part in filter(None, path.split("/")):
        ino = tree.lookup(ino, part).ino
    return ino


def names(tree: Tree, path: str) -> list[str]:
    return [e.name for e in tree.listdir(resolve(tree, path)) if e.counted]


def read_all(tree: Tree, path: str, caller: Caller = ROOT) -> bytes:
    return tree.open(resolve(tree, path), os.O_RDONLY, caller).read(0, 1 << 20)


def open_node(tree: Tree, name: str = "renderD128", caller: Caller = ROOT) -> DrmOpen:
    handle = tree.open(resolve(tree, f"dev/dri/{name}"), os.O_RDWR, caller)
    assert isinstance(handle, DrmOpen)
    return handle


NODES = (("card0", 0, "card"), ("renderD128", 128, "render"))  # a Panfrost machine's one GPU


def static_paths() -> list[tuple[str, Kind]]:
    out = []
    for row in TABLE:
        if row.all_pids or any(v in row.path for v in ("{pid}", "{fd}", "{tid}", "{debugfs}", "{client}",
                                                       "{dattr}")):  # FakeDevice has no debugfs attributes
            continue
        if row.feature is not None and not PANFROST.has(row.feature, (6, 18)):  # the fake device is 6.18
            continue
        variants = [{}] if not any(k in row.path for k in ("{node}", "{minor}", "{kind}")) else \
            [{"node": n, "minor": m, "kind": k} for n, m, k in NODES]
        for v in variants:
            out.append((row.path.format(pdev=PDEV, attr="profiling", driver="panfrost", **v), row.kind))
    return out


_TYPE = {Kind.DIR: stat.S_IFDIR, Kind.LINK: stat.S_IFLNK, Kind.TEXT: stat.S_IFREG, Kind.ATTR: stat.S_IFREG,
         Kind.LOG: stat.S_IFREG, Kind.NODE: stat.S_IFREG, Kind.CHAR: stat.S_IFCHR}


@pytest.mark.parametrize("path,kind", static_paths())
def test_every_static_path_resolves_with_its_type(path: str, kind: Kind) -> None:
    """Every path declared in the table resolves by lookup and reports its kind's file type."""
    tree, _, _ = make_tree()
    st_ = tree.getattr(resolve(tree, path))
    assert stat.S_IFMT(st_.mode) == _TYPE[kind]


def test_listings_agree_with_the_table() -> None:
    """Each static directory lists exactly its declared children, with their file types."""
    tree, _, _ = make_tree()
    paths = dict(static_paths())
    for path, kind in paths.items():
        if kind is not Kind.DIR:
            continue
        entries = [e for e in tree.listdir(resolve(tree, path)) if e.counted]
        expected = {p.rpartition("/")[2] for p in paths if p and p.rpartition("/")[0] == path}
        if path.startswith("sys/kernel/debug/dri/") and path.count("/") == 4:
            expected |= {"clients", "gems"}
        assert {e.name for e in entries} == expected, path
        for e in entries:
            child = f"{path}/{e.name}" if path else e.name
            if child in paths:
                assert stat.S_IFMT(e.stat.mode) == _TYPE[paths[child]], child


def test_dot_entries_are_listed_but_not_counted() -> None:
    """Listings start with . and .. (not counted as lookups); .. of a directory is its parent."""
    tree, _, _ = make_tree()
    entries = tree.listdir(resolve(tree, "dev/dri"))
    assert [(e.name, e.counted) for e in entries[:2]] == [(".", False), ("..", False)]
    assert entries[1].inode.ino == resolve(tree, "dev")


def test_each_node_lookup_mints_a_fresh_inode() -> None:
    """Every lookup of a DRM node gets a new inode with zero timeouts, so each open(2) has its own."""
    tree, _, _ = make_tree()
    dri = resolve(tree, "dev/dri")
    inos = [tree.lookup(dri, "renderD128").ino for _ in range(5)]
    assert len(set(inos)) == 5
    st_ = tree.getattr(inos[0])
    assert st_.entry_timeout == 0
    assert st_.mode == stat.S_IFREG | 0o666


def test_forget_drops_minted_and_dynamic_inodes() -> None:
    """Forgetting every lookup of minted and dynamic inodes leaves only the static ones."""
    tree, _, procs = make_tree()
    baseline = tree.known_inodes()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    dri, proc = resolve(tree, "dev/dri"), resolve(tree, "proc")
    looked = [tree.lookup(dri, "card0").ino for _ in range(3)]
    pid_dir = tree.lookup(proc, "100").ino
    fdinfo_dir = tree.lookup(pid_dir, "fdinfo").ino
    fd3 = tree.lookup(fdinfo_dir, "3").ino
    assert tree.lookup(proc, "100").ino == pid_dir  # one inode per dynamic path
    assert tree.known_inodes() == baseline + 1 + 3 + 3
    for ino in (handle.ino, *looked, fd3, fdinfo_dir):
        tree.forget(ino, 1)
    tree.forget(pid_dir, 2)
    assert tree.known_inodes() == baseline


def test_a_listed_entry_forgotten_before_readdir_is_known_again_once_sent() -> None:
    """OPENDIR lists, FORGET of an entry's inode may come before the READDIR that sends
    it: the kernel then holds an inode vdrm dropped, and must still be able to open it
    (once seen as "open: ENOENT inode 87 is not known" under concurrent walkers)."""
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    fdinfo_dir = resolve(tree, "proc/100/fdinfo")
    fd3 = tree.lookup(fdinfo_dir, "3")
    listing = [e for e in tree.listdir(fdinfo_dir) if e.counted]  # OPENDIR
    assert [e.inode.ino for e in listing] == [fd3.ino]
    tree.forget(fd3.ino, 1)  # the kernel dropped its dentry meanwhile
    tree.remember(listing[0].inode)  # READDIRPLUS handed it out again
    assert tree.getattr(fd3.ino).ino == fd3.ino
    assert tree.open(fd3.ino, os.O_RDONLY, ROOT).read(0, 4096).startswith(b"pos:")
    assert tree.lookup(fdinfo_dir, "3").ino == fd3.ino


def test_open_node_makes_a_client_of_the_calling_process() -> None:
    """Opening a node makes a DRM client for the caller's process (tgid of the thread) and comm."""
    tree, device, procs = make_tree()
    procs.threads[4243] = 4242
    handle = open_node(tree, "card0", Caller(tid=4243, uid=1000, gid=1000))
    assert (handle.file.minor, handle.file.pid, handle.file.comm, handle.file.uid) == (0, 4242, "proc4242", 1000)
    assert device.files == {handle.file.client_id: handle.file}
    assert procs.invalidations == 1


def test_proc_shows_every_holder_of_a_client() -> None:
    """dup'd and inherited fds of one open show the same client; other opens show theirs."""
    tree, _, procs = make_tree()
    a, b = open_node(tree), open_node(tree, "card0")
    procs.hold(100, 3, a.ino)
    procs.hold(100, 4, a.ino)  # dup
    procs.hold(200, 3, a.ino)  # inherited by a child
    procs.hold(200, 7, b.ino)
    assert names(tree, "proc") == ["100", "200"]
    assert names(tree, "proc/100/fdinfo") == ["3", "4"]
    ids = {p: read_all(tree, f"proc/{p}").splitlines()[5] for p in
           ("100/fdinfo/3", "100/fdinfo/4", "200/fdinfo/3", "200/fdinfo/7")}
    assert ids["100/fdinfo/3"] == ids["100/fdinfo/4"] == ids["200/fdinfo/3"] == f"drm-client-id:\t{a.file.client_id}".encode()
    assert ids["200/fdinfo/7"] == f"drm-client-id:\t{b.file.client_id}".encode()
    assert read_all(tree, "proc/100/fdinfo/3").splitlines()[3] == f"ino:\t{a.ino}".encode()


def test_release_removes_the_client_and_its_proc_entries() -> None:
    """After the release of an open, its client is gone and no process shows an entry for it."""
    tree, device, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    proc100 = resolve(tree, "proc/100")
    handle.release()
    assert device.released == [handle.file] and not device.files
    assert names(tree, "proc") == []
    with pytest.raises(NoEntry):
        tree.getattr(proc100)
    with pytest.raises(NoEntry):
        resolve(tree, "proc/100")
    handle.release()  # a second release is harmless
    assert device.released == [handle.file]


def test_fd_links_point_at_the_node_with_procfs_modes() -> None:
    """fd/<n> links read /dev/dri/<node>, with lrwx for O_RDWR and lr-x for O_RDONLY like procfs."""
    tree, _, procs = make_tree()
    render, card = open_node(tree), open_node(tree, "card0")
    procs.hold(100, 3, render.ino, flags=0o100002)
    procs.hold(100, 4, card.ino, flags=0o100000)
    procs.hold(100, 5, card.ino, flags=0o100001)
    assert tree.readlink(resolve(tree, "proc/100/fd/3")) == "/dev/dri/renderD128"
    assert tree.readlink(resolve(tree, "proc/100/fd/4")) == "/dev/dri/card0"
    modes = {e.name: e.stat.mode for e in tree.listdir(resolve(tree, "proc/100/fd")) if e.counted}
    assert modes == {"3": stat.S_IFLNK | 0o700, "4": stat.S_IFLNK | 0o500, "5": stat.S_IFLNK | 0o300}
    assert tree.getattr(resolve(tree, "proc/100/fd/3")).size == 64


def test_proc_entries_are_owned_by_the_process() -> None:
    """proc/<pid> and everything in it belong to the process's uid and gid, with procfs modes."""
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino, uid=1000)
    expected = {"proc/100": 0o40555, "proc/100/fd": 0o40500, "proc/100/fdinfo": 0o40555,
                "proc/100/fdinfo/3": 0o100444, "proc/100/stat": 0o100444, "proc/100/cmdline": 0o100444}
    for path, mode in expected.items():
        st_ = tree.getattr(resolve(tree, path))
        assert (st_.uid, st_.gid, st_.mode) == (1000, 1000, mode), path
        # names inside proc/ are invalidated exactly on close (vdrm.fs.cache): cached
        assert st_.entry_timeout == CACHE_TIMEOUT, path


def test_fdinfo_is_for_the_owner_and_root_only() -> None:
    """Another user may not open a process's fdinfo (EACCES); its owner and root may."""
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino, uid=1000)
    ino = resolve(tree, "proc/100/fdinfo/3")
    with pytest.raises(AccessDenied):
        tree.open(ino, os.O_RDONLY, Caller(1, 1001, 1001))
    assert tree.open(ino, os.O_RDONLY, Caller(1, 1000, 1000)).read(0, 10)
    assert tree.open(ino, os.O_RDONLY, ROOT).read(0, 10)


def test_sysfs_links_resolve_inside_the_tree() -> None:
    """Every static symlink resolves to an existing node of the tree; device links name the platform device."""
    tree, _, _ = make_tree()
    for path, kind in static_paths():
        if kind is not Kind.LINK:
            continue
        target = tree.readlink(resolve(tree, path))
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        resolve(tree, resolved)
    assert tree.readlink(resolve(tree, "sys/class/drm/renderD128")) == f"../../devices/platform/{PDEV}/drm/renderD128"
    device_link = f"sys/devices/platform/{PDEV}/drm/card0/device"
    assert posixpath.normpath(posixpath.join(posixpath.dirname(device_link), tree.readlink(resolve(tree, device_link)))) \
        == f"sys/devices/platform/{PDEV}"
    assert read_all(tree, "sys/class/drm/renderD128".replace("sys/class/drm", f"sys/devices/platform/{PDEV}/drm") + "/dev") == b"226:128\n"


def test_profiling_attribute_reads_and_stores() -> None:
    """profiling reads 0/1 and each write is one store; a bad value is EINVAL."""
    tree, device, _ = make_tree()
    path = f"sys/devices/platform/{PDEV}/profiling"
    assert read_all(tree, path) == b"0\n"
    attr = tree.open(resolve(tree, path), os.O_WRONLY, ROOT)
    assert attr.write(0, b"1\n") == 2
    assert device.profiling and read_all(tree, path) == b"1\n"
    with pytest.raises(InvalidArgument) as e:
        attr.write(0, b"bogus\n")
    assert e.value.errno == errno.EINVAL
    assert tree.getattr(resolve(tree, path)).mode == stat.S_IFREG | 0o644


def test_dmesg_size_follows_the_log() -> None:
    """dmesg reports the bytes logged so far as its size (no attribute caching) and reads them."""
    tree, device, _ = make_tree()
    ino = resolve(tree, "dmesg")
    assert tree.getattr(ino).size == 0
    device.log.printk(3, "panfrost fde60000.gpu: Unhandled Page fault in AS0")
    st_ = tree.getattr(ino)
    assert st_.size == device.log.size > 0 and st_.attr_timeout == 0
    reader = tree.open(ino, os.O_RDONLY, ROOT)
    assert reader.read(0, 1 << 16) == device.log.text().encode()
    assert reader.read(10, 5) == device.log.text().encode()[10:15]


def test_read_only_files_refuse_write_opens() -> None:
    """Opening a generated file for writing is EACCES; directories cannot be opened as files."""
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    for path in ("proc/100/stat", "proc/100/fdinfo/3", "sys/kernel/debug/dri/0/gems", "dmesg"):
        with pytest.raises(AccessDenied):
            tree.open(resolve(tree, path), os.O_WRONLY, ROOT)
    with pytest.raises(Exception) as e:
        tree.open(resolve(tree, "proc"), os.O_RDONLY, ROOT)
    assert e.value.errno == errno.EISDIR  # type: ignore[attr-defined]


def test_requests_get_one_reply_each_in_order() -> None:
    """Each request line gets one reply, read back in order; an empty queue reads as EOF and polls unreadable."""
    tree, _, _ = make_tree()
    handle = open_node(tree)
    assert handle.poll(None) == POLL_WRITABLE
    assert handle.read(0, 4096) == b""
    handle.write(0, b"ECHO text=a\nECHO text=b\n")
    assert handle.answer() is None
    assert handle.poll(None) == POLL_READABLE | POLL_WRITABLE
    assert handle.read(0, 4096) == b"ok text=a\n"
    assert handle.read(0, 4096) == b"ok text=b\n"
    assert handle.read(0, 4096) == b""
    handle.write(0, b"NOPE\n")
    handle.answer()
    assert handle.read(0, 4096).startswith(b"error EINVAL unknown verb")


class _Waker:
    def __init__(self) -> None:
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1


def test_a_reply_wakes_the_poller() -> None:
    """A poll handle stored while nothing was readable is notified once when a reply is queued."""
    tree, _, _ = make_tree()
    handle, waker = open_node(tree), _Waker()
    assert handle.poll(waker) == POLL_WRITABLE
    handle.write(0, b"ECHO text=x\n")
    handle.answer()
    handle.write(0, b"ECHO text=y\n")
    handle.answer()
    assert waker.notified == 1


def test_a_waiting_request_holds_back_the_ones_after_it() -> None:
    """A request that must wait for the clock stays at the head; later ones are answered after it, in order."""
    tree, device, _ = make_tree()
    handle = open_node(tree)
    handle.write(0, b"WAIT until=1000\nECHO text=after\n")
    assert handle.answer() == 1000
    assert handle.read(0, 4096) == b""
    device.clock.advance(1000)
    assert handle.answer() is None
    assert handle.read(0, 4096) == b"ok at=1000\n"
    assert handle.read(0, 4096) == b"ok text=after\n"


def test_a_handler_bug_is_logged_and_answered_eio(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in a handler is answered with EIO and logged with its traceback; the client carries on."""
    tree, _, _ = make_tree()
    handle = open_node(tree)
    with caplog.at_level(logging.ERROR, logger="vdrm.fs.tree"):
        handle.write(0, b"BOOM\nECHO text=still\n")
        handle.answer()
    assert handle.read(0, 4096).startswith(b"error EIO")
    assert handle.read(0, 4096) == b"ok text=still\n"
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


def test_static_paths_are_cached_and_dynamic_ones_not() -> None:
    """Static paths carry long entry/attribute timeouts; dmesg's attributes and proc entries none."""
    tree, _, _ = make_tree()
    st_ = tree.getattr(resolve(tree, "sys/class/drm"))
    assert (st_.entry_timeout, st_.attr_timeout) == (STATIC_TIMEOUT, STATIC_TIMEOUT)
    st_ = tree.getattr(resolve(tree, "dmesg"))
    assert (st_.entry_timeout, st_.attr_timeout) == (STATIC_TIMEOUT, 0)


def test_debugfs_lists_the_device_files_under_both_minors() -> None:
    """sys/kernel/debug/dri/0 and /128 list the device's debugfs files, rendered at open."""
    tree, _, _ = make_tree()
    open_node(tree)
    for minor in (0, 128):
        assert names(tree, f"sys/kernel/debug/dri/{minor}") == ["vdrm-clock", "vdrm-clients", "clients", "gems"]
        assert read_all(tree, f"sys/kernel/debug/dri/{minor}/clients") == b"1\n"
    st_ = tree.getattr(resolve(tree, "sys/kernel/debug"))
    assert st_.mode == stat.S_IFDIR | 0o700
    with pytest.raises(NoEntry):
        resolve(tree, "sys/kernel/debug/dri/0/nope")


def test_a_snapshot_does_not_change_under_its_reader() -> None:
    """A generated file keeps the text rendered at open; the next open sees the new state."""
    tree, _, _ = make_tree()
    open_node(tree)
    ino = resolve(tree, "sys/kernel/debug/dri/0/clients")
    first = tree.open(ino, os.O_RDONLY, ROOT)
    open_node(tree)
    assert first.read(0, 100) == b"1\n"
    assert tree.open(ino, os.O_RDONLY, ROOT).read(0, 100) == b"1\n2\n"
    assert first.read(1, 100) == b"\n"


def test_non_canonical_numbers_are_not_found() -> None:
    """proc/0100 or fdinfo/03 are not names of anything (as in procfs)."""
    tree, _, procs = make_tree()
    handle = open_node(tree)
    procs.hold(100, 3, handle.ino)
    for path in ("proc/0100", "proc/100/fdinfo/03", "proc/x", "proc/100/fdinfo/4", "proc/101"):
        with pytest.raises(NoEntry):
            resolve(tree, path)


_PATHS = ["dev/dri/renderD128", "dev/dri/card0", "proc/100", "proc/100/fd/3", "proc/100/fdinfo/3",
          "proc/100/status", "proc/200/fdinfo/4", "sys/kernel/debug/dri/0/gems", "sys/class/drm"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["lookup", "list", "forget"]), st.sampled_from(_PATHS),
                          st.integers(0, 1000)), max_size=40))
def test_lookup_counts_never_leak_inodes(ops: list[tuple[str, str, int]]) -> None:
    """Any sequence of lookups, listings and forgets keeps one inode per remembered path and ends with only static inodes."""
    tree, _, procs = make_tree()
    baseline = tree.known_inodes()
    handle = open_node(tree)
    tree.forget(handle.ino, 1)
    procs.hold(100, 3, handle.ino)
    procs.hold(200, 4, handle.ino)
    held: dict[int, int] = {}
    stable: dict[str, int] = {}

    def walk(path: str) -> int:
        ino = ROOT_INO
        for part in path.split("/"):
            ino = tree.lookup(ino, part).ino
            held[ino] = held.get(ino, 0) + 1
        return ino

    for op, path, k in ops:
        if op == "lookup":
            ino = walk(path)
            if not path.startswith("dev/dri/"):
                assert stable.setdefault(path, ino) == ino
        elif op == "list":
            entries = tree.listdir(walk(path.rpartition("/")[0]))
            for e in entries[: k % (len(entries) + 1)]:
                if e.counted:
                    tree.remember(e.inode)
                    held[e.inode.ino] = held.get(e.inode.ino, 0) + 1
            tree.drop_unreferenced(e.inode for e in entries)
        elif held:
            ino = sorted(held)[k % len(held)]
            tree.forget(ino, held.pop(ino))
            stable = {p: i for p, i in stable.items() if i != ino}
    for ino, n in held.items():
        tree.forget(ino, n)
    assert tree.known_inodes() == baseline


# -- the runner's tree: all_pids, proc/self, char nodes ---------------------------------------


def make_runner_tree() -> tuple[Tree, FakeDevice, FakeProcesses]:
    device, procs = FakeDevice(), FakeProcesses()
    procs.all_pids = True
    tree = Tree(device, procs, all_pids=True)  # type: ignore[arg-type]
    procs.is_open_ino = tree.is_open_ino
    return tree, device, procs


def test_dri_nodes_are_character_devices_226_for_stat_only() -> None:
    """dev/dri-nodes/renderD128 stats as char device 226:128, and opening it is refused."""
    tree, _, _ = make_tree()
    st_ = tree.getattr(resolve(tree, "dev/dri-nodes/renderD128"))
    assert stat.S_ISCHR(st_.mode) and st_.rdev == os.makedev(226, 128)
    assert tree.getattr(resolve(tree, "dev/dri-nodes/card0")).rdev == os.makedev(226, 0)
    with pytest.raises(AccessDenied):
        tree.open(resolve(tree, "dev/dri-nodes/renderD128"), os.O_RDWR, ROOT)


def test_runner_rows_exist_only_with_all_pids() -> None:
    """proc/self, proc/meminfo and proc/<pid>/maps are absent from the plain tree and present in the runner's."""
    plain, _, procs = make_tree()
    procs.hold(100, 3, open_node(plain).ino)
    runner, _, rprocs = make_runner_tree()
    rprocs.spawn(100)
    for path in ("proc/self", "proc/meminfo"):
        with pytest.raises(NoEntry):
            resolve(plain, path)
        resolve(runner, path)
    assert "maps" not in names(plain, "proc/100")
    assert {"maps", "environ", "mountinfo", "exe", "task"} <= set(names(runner, "proc/100"))


def test_all_pids_lists_every_process_with_only_its_vdrm_fds() -> None:
    """With all_pids a process without vdrm fds has a proc/<pid>/ whose fd/ is empty."""
    tree, _, procs = make_runner_tree()
    procs.spawn(100)
    procs.spawn(200)
    handle = open_node(tree)
    procs.hold(200, 3, handle.ino)
    assert {"100", "200"} <= set(names(tree, "proc"))
    assert names(tree, "proc/100/fd") == []
    assert names(tree, "proc/200/fd") == ["3"]


def test_proc_self_names_the_calling_process() -> None:
    """proc/self reads as the caller's tgid and proc/thread-self as <tgid>/task/<tid>; lstat size is 0 as in procfs."""
    tree, _, procs = make_runner_tree()
    procs.spawn(100, threads=(101,))
    ino = resolve(tree, "proc/self")
    assert tree.readlink(ino, Caller(tid=101, uid=0, gid=0)) == "100"
    assert tree.readlink(resolve(tree, "proc/thread-self"), Caller(tid=101, uid=0, gid=0)) == "100/task/101"
    assert tree.getattr(ino).size == 0
    assert names(tree, "proc/100/task") == ["100", "101"]


def test_host_files_are_copied_at_open() -> None:
    """proc/meminfo and proc/<pid>/maps serve the host's text; proc/<pid>/exe links to the host's target."""
    tree, _, procs = make_runner_tree()
    procs.spawn(100)
    assert read_all(tree, "proc/meminfo") == b"host meminfo\n"
    assert read_all(tree, "proc/100/maps") == b"100 (proc100) maps\n"
    assert read_all(tree, "proc/100/task/100/stat") == b"100 (proc100) task/100/stat\n"
    assert tree.readlink(resolve(tree, "proc/100/exe")) == "/host/100/exe"
