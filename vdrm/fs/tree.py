"""The virtual tree: every path vdrm serves, declared once, and what an open of it is.

:data:`TABLE` lists each path (relative to the mount point) with its node kind, mode and
content. ``getattr``, ``lookup``, ``readdir``, ``readlink`` and ``open`` all answer from it;
no other module spells a path. Placeholders in a path:

``{node}``, ``{minor}``, ``{kind}``
    expanded when the tree is built, once per DRM node of every GPU (``card0``/0/``card``,
    ``renderD128``/128/``render``, then ``card1``/1 and ``renderD129``/129 for a second GPU);
``{pdev}``
    the GPU's platform device name (``fde60000.gpu``), once per GPU;
``{attr}``, ``{dattr}``
    the GPU's own sysfs attributes (:meth:`GpuDevice.sysfs_attributes`: ``profiling``)
    and its writable debugfs files (:meth:`GpuDevice.debugfs_attributes`, mode 0600:
    Panfrost's ``profile`` in 6.7-6.9);
``{driver}``
    the GPU's driver's name (``panfrost``), once per GPU, for ``sys/bus/platform/drivers``;
``{pid}``, ``{fd}``, ``{tid}``
    real processes holding vdrm fds (every real process with ``all_pids``), those fds, and
    a process's threads (:mod:`vdrm.fs.procfs`), looked up live;
``{debugfs}``
    the GPU's debugfs files (:meth:`GpuDevice.debugfs_files`).

The tree serves a :class:`~vdrm.drm.gpu.Machine` (one or more GPUs) and talks to each GPU
only through the driver-neutral :class:`~vdrm.drm.gpu.GpuDevice` interface: a driver's
rows (uevent, sysfs attributes, debugfs files) come from the device, so no path here
names a driver. A row's renderer finds its GPU by the build-time ``gpu`` index.

Node kinds and what an open of each gives (:class:`OpenFile`):

``DIR``     directories; ``TEXT`` files rendered once per open from a snapshot and served
            as slices (opened with ``direct_io``, ``st_size`` 0 as in procfs, 4096 as in
            sysfs; ``proc/<pid>/fdinfo/<fd>`` instead reports its exact size and may be
            served from the kernel's page cache, see :mod:`vdrm.fs.cache`); ``LINK`` symlinks; ``ATTR`` a sysfs attribute (read: text rendered at
            open; each write: one store); ``LOG`` the kernel log, whose ``st_size`` is the
            bytes logged so far so ``tail -f`` follows it; ``NODE`` a DRM device node: each
            open is a new DRM client speaking :mod:`vdrm.fs.protocol` (the namespace runner
            binds ``dev/dri`` at ``/dev/dri``, and its process bridge, :mod:`vdrm.bridge`,
            makes these nodes character devices to ``stat`` and answers their ioctls);
            ``CHAR`` the same node as a character device 226:<minor> (``dev/dri-nodes/``),
            for ``stat`` only: where the bridge cannot run, the runner binds that directory
            at ``/dev/dri`` so ``proc/<pid>/fd/<n>`` links resolve to what /proc-walking
            tools expect; opening it fails, as on any ``nodev`` mount.

Rows marked ``all_pids`` exist only in a tree built with ``all_pids=True`` (the namespace
runner, :mod:`vdrm.fs.runner`): every real process then has a ``proc/<pid>/``, with its
vdrm fds only in ``fd/`` and ``fdinfo/`` and read-only copies of the host's per-process
files beside them, and ``proc/`` carries ``self``, ``thread-self`` and copies of the
host's system-wide files (``stat``, ``meminfo``, ``uptime`` ...). Their limits: the copies
are rendered at open by the daemon from the host's ``/proc`` (so ``maps`` and ``mounts``
are the process's real ones, read with the daemon's privileges); ``exe``, ``cwd`` and
``root`` are plain symlinks to the host's targets (followed by path in the reader's mount
namespace, not "magic" links); ``fd/`` lists only vdrm fds, so ``/dev/stdin`` and
``/dev/fd/<n>`` (links into ``/proc/self/fd``) do not resolve for other fds.

Inode numbers, the invariants the ``proc/`` mirror rests on:

- Static paths get fixed inode numbers in table order (the root is 1).
- Every lookup of a ``NODE`` mints a fresh inode (entry timeout 0), so the kernel
  revalidates the name on every path walk and each ``open(2)`` lands on its own
  inode. The ``ino`` the host's ``/proc/<pid>/fdinfo/<fd>`` reports therefore names one
  open, i.e. one DRM client, whichever process holds the fd (dup'd, inherited or passed).
  Reopening an fd through ``/proc/<pid>/fd/<n>`` reuses its inode: both clients then show
  the first one's fdinfo (a known limit). A side effect the host shows: the next lookup
  of the same name unhashes the older open's dentry, so the host's ``/proc/<pid>/fd``
  lists earlier opens as ``.../dev/dri/card0 (deleted)``; the mirror under ``proc/``
  shows the kernel's ``/dev/dri/card0``.
- Other dynamic paths (under ``proc/<pid>``, debugfs) keep one inode per path while the
  kernel remembers it; every inode is dropped when its lookup count returns to 0.
"""

from __future__ import annotations

import enum
import errno as _errno
import itertools
import json
import logging
import os
import select
import stat as _stat
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from vdrm.drm.gpu import GpuDevice, Machine, as_machine
from vdrm.drm.ioctl import Arg
from vdrm.errors import AccessDenied, InvalidArgument, NoEntry, VdrmError, WouldBlock
from vdrm.fs import protocol
from vdrm.fs.cache import CACHE_TIMEOUT, KernelCache
from vdrm.fs.permissions import NodeAccess, may_trace

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile
    from vdrm.fs.procfs import FdRef, ProcessTable

log = logging.getLogger(__name__)

ROOT_INO = 1
DRM_MAJOR = 226
SYSFS_ATTR_SIZE = 4096  # sysfs reports every attribute as one page
FD_LINK_SIZE = 64  # what procfs reports as st_size of fd/<n> links

# Attributes and names of static paths never change while mounted; let the kernel cache them.
STATIC_TIMEOUT = 300.0
# Dynamic names get entry timeout 0 (every path walk asks again, so a closed fd or an
# exited process vanishes at once), except those vdrm.fs.cache invalidates exactly
# (proc/<pid>, its fds, the names inside it); their attributes may be cached this long, since the
# LOOKUP that revalidates a name refreshes them anyway, and default_permissions would
# otherwise send a GETATTR for every directory of every path walk.
DYNAMIC_TIMEOUT = 1.0



class Kind(enum.Enum):
    """What a path is, which decides its file type and what an open of it gives."""

    DIR = "directory"
    TEXT = "generated file"
    LINK = "symlink"
    ATTR = "sysfs attribute"
    LOG = "kernel log"
    NODE = "DRM node"
    CHAR = "character device node (stat only)"


class NotADirectory(VdrmError):
    """ENOTDIR: a directory operation on something that is not one."""

    errno = _errno.ENOTDIR


class IsADirectory(VdrmError):
    """EISDIR: a file operation on a directory."""

    errno = _errno.EISDIR


class NotPermitted(VdrmError):
    """EPERM: the tree's shape and attributes are fixed (chmod, truncate of a text...)."""

    errno = _errno.EPERM


class InvalidLink(VdrmError):
    """EINVAL: readlink of something that is not a symlink."""

    errno = _errno.EINVAL


class BadDescriptor(VdrmError):
    """EBADF: the open file does not allow this (a write to a read-only open)."""

    errno = _errno.EBADF


# -- content renderers: (tree, args) -> str | bytes ------------------------------------


def _fdinfo(tree: "Tree", a: dict, ref: "FdRef | None" = None) -> str:
    ref = ref or tree.procfs.fd(a["pid"], a["fd"])
    file = (ref.file or tree.client(ref.ino)) if ref else None
    if file is None:
        raise NoEntry(f"fd {a['fd']} of pid {a['pid']} is not an open vdrm node")
    # pos is 0: a real DRM fd's position never moves (requests are ioctls), while this
    # FUSE file's moves with every request and reply.
    return tree.machine.fdinfo(file, pos=0 if ref.file is None else ref.pos, flags=ref.flags,
                              mnt_id=ref.mnt_id, ino=ref.ino)


def _fd_target(tree: "Tree", a: dict) -> str:
    ref = tree.procfs.fd(a["pid"], a["fd"])
    file = (ref.file or tree.client(ref.ino)) if ref else None
    if file is None:
        raise NoEntry(f"fd {a['fd']} of pid {a['pid']} is not an open vdrm node")
    return "/dev/dri/" + node_name(file.minor)


def _real(name: str) -> Callable[["Tree", dict], bytes]:
    """The host's ``/proc/<pid>/<name>`` (``<pid>/task/<tid>/<name>`` under ``task/``)."""
    def render(tree: "Tree", a: dict) -> bytes:
        path = f"task/{a['tid']}/{name}" if "tid" in a else name
        try:
            return tree.procfs.read(a["pid"], path)
        except PermissionError:
            raise AccessDenied(f"/proc/{a['pid']}/{path} is not readable by vdrm") from None
        except OSError:
            raise NoEntry(f"process {a['pid']} is gone") from None
    render.__name__ = f"real_{name}"
    return render


def _real_link(name: str) -> Callable[["Tree", dict], str]:
    """The target of the host's ``/proc/<pid>/<name>`` link (``exe``, ``cwd``, ``root``)."""
    def render(tree: "Tree", a: dict) -> str:
        try:
            return tree.procfs.readlink(a["pid"], name)
        except PermissionError:
            raise AccessDenied(f"/proc/{a['pid']}/{name} is not readable by vdrm") from None
        except OSError:
            raise NoEntry(f"process {a['pid']} is gone") from None
    render.__name__ = f"real_link_{name}"
    return render


def _host(name: str) -> Callable[["Tree", dict], bytes]:
    """The host's system-wide ``/proc/<name>`` (``meminfo``, ``uptime`` ...)."""
    def render(tree: "Tree", a: dict) -> bytes:
        try:
            return tree.procfs.read_host(name)
        except OSError as e:
            raise NoEntry(f"/proc/{name}: {e.strerror}") from None
    render.__name__ = f"host_{name}"
    return render


def _self(tree: "Tree", a: dict) -> str:
    return str(tree.procfs.tgid(a["caller"].tid))


def _thread_self(tree: "Tree", a: dict) -> str:
    tid = a["caller"].tid
    return f"{tree.procfs.tgid(tid)}/task/{tid}"


def _debugfs(tree: "Tree", a: dict) -> str:
    render = _gpu(tree, a).debugfs_files().get(a["debugfs"])
    if render is None:
        raise NoEntry(f"no debugfs file {a['debugfs']}")
    return render()


def _gpu(tree: "Tree", a: dict) -> GpuDevice:
    return tree.machine.devices[a["gpu"]]


def _client_of(tree: "Tree", a: dict) -> "DrmFile":
    file = _gpu(tree, a).drm.files.get(a["client"])
    if file is None:
        raise NoEntry(f"no DRM client {a['client']}")
    return file


def _client_fdinfo(tree: "Tree", a: dict) -> str:
    return tree.machine.fdinfo(_client_of(tree, a))


def _client_truth(tree: "Tree", a: dict) -> str:
    return json.dumps(tree.machine.truth(_client_of(tree, a)), indent=1) + "\n"


def _clock_show(tree: "Tree", a: dict) -> str:
    clock = tree.machine.clock
    kind = "virtual" if clock.virtual else "real"
    return f"clock {kind}\nnow_ns {clock.now_ns()}\nlast_step_ns {tree.machine.timeline.last_step.step_ns}\n"


def _clock_store(tree: "Tree", a: dict, text: str) -> None:
    """``echo 16ms > vdrm-clock`` (or ``advance 16ms``, ``+16ms``): one clock step."""
    words = text.split()
    if words[:1] == ["advance"]:
        words = words[1:]
    if len(words) != 1:
        raise InvalidArgument(f"write a duration such as 16ms to advance the clock, not {text.strip()!r}")
    tree.machine.advance(protocol.parse_value(_CLOCK_STEP, words[0].lstrip("+")))


def _pdev_uevent(tree: "Tree", a: dict) -> str:
    return _gpu(tree, a).uevent()


def _attr_show(tree: "Tree", a: dict) -> str:
    return _gpu(tree, a).sysfs_attributes()[a["attr"]].show()


def _attr_store(tree: "Tree", a: dict, text: str) -> None:
    store = _gpu(tree, a).sysfs_attributes()[a["attr"]].store
    if store is None:
        raise AccessDenied(f"{a['attr']} is read-only")
    store(text)


def _dattr_show(tree: "Tree", a: dict) -> str:
    return _gpu(tree, a).debugfs_attributes()[a["dattr"]].show()


def _dattr_store(tree: "Tree", a: dict, text: str) -> None:
    store = _gpu(tree, a).debugfs_attributes()[a["dattr"]].store
    if store is None:
        raise AccessDenied(f"{a['dattr']} is read-only")
    store(text)


@dataclass(frozen=True)
class Row:
    """One path of the tree: its kind, permission bits and content.

    ``content`` by kind: TEXT a renderer or a format string; LINK a target format string
    or a renderer; ATTR a (show, store) pair; others None.
    """

    path: str
    kind: Kind
    mode: int
    content: Any = None
    size: int = 0
    all_pids: bool = False  # only in a tree built with all_pids (the namespace runner)
    by_caller: bool = False  # LINK whose target depends on who asks; st_size 0 as in procfs
    feature: str | None = None  # only where the emulated release has it (driver.has)


D, T, L, A, G, N, C = Kind.DIR, Kind.TEXT, Kind.LINK, Kind.ATTR, Kind.LOG, Kind.NODE, Kind.CHAR
_DEV = "sys/devices/platform/{pdev}"
# The host's system-wide /proc files tools commonly read, copied in all_pids mode.
HOST_PROC_FILES = ("stat", "meminfo", "uptime", "loadavg", "cpuinfo", "version", "filesystems",
                   "swaps", "vmstat", "diskstats", "partitions", "modules", "devices", "cmdline")
# The host's per-process files copied into proc/<pid>/ in all_pids mode, with their
# modes. procfs guards environ, io and maps with ptrace checks the copies cannot make, so
# they are for the process's owner (and root) only.
HOST_PID_FILES = {"environ": 0o400, "io": 0o400, "maps": 0o400, "mounts": 0o444, "mountinfo": 0o444,
                  "cgroup": 0o444, "limits": 0o444, "statm": 0o444, "oom_score": 0o444,
                  "oom_score_adj": 0o444, "loginuid": 0o444, "sessionid": 0o444, "wchan": 0o444,
                  "schedstat": 0o444, "uid_map": 0o444, "gid_map": 0o444, "setgroups": 0o444}
HOST_PID_LINKS = ("exe", "cwd", "root")
# proc/<pid>/task/<tid>/: the files per thread.
TASK_FILES = ("stat", "status", "comm", "cmdline")


def _all_pids_rows() -> tuple[Row, ...]:
    rows = [Row("proc/self", L, 0o777, _self, all_pids=True, by_caller=True),
            Row("proc/thread-self", L, 0o777, _thread_self, all_pids=True, by_caller=True),
            Row("proc/mounts", L, 0o777, "self/mounts", all_pids=True),
            Row("proc/sys", D, 0o555, all_pids=True)]  # the runner binds the host's /proc/sys here
    rows += [Row(f"proc/{name}", T, 0o444, _host(name), all_pids=True) for name in HOST_PROC_FILES]
    rows += [Row(f"proc/{{pid}}/{name}", T, mode, _real(name), all_pids=True)
             for name, mode in HOST_PID_FILES.items()]
    rows += [Row(f"proc/{{pid}}/{name}", L, 0o777, _real_link(name), all_pids=True) for name in HOST_PID_LINKS]
    rows += [Row("proc/{pid}/task", D, 0o555, all_pids=True),
             Row("proc/{pid}/task/{tid}", D, 0o555, all_pids=True)]
    rows += [Row(f"proc/{{pid}}/task/{{tid}}/{name}", T, 0o444, _real(name), all_pids=True)
             for name in TASK_FILES]
    return tuple(rows)

TABLE: tuple[Row, ...] = (
    Row("", D, 0o755),
    Row("dmesg", G, 0o444),
    Row("dev", D, 0o755),
    Row("dev/dri", D, 0o755),
    Row("dev/dri/{node}", N, 0o666),
    Row("dev/dri/by-path", D, 0o755),
    Row("dev/dri/by-path/platform-{pdev}-{kind}", L, 0o777, "../{node}"),
    Row("dev/dri-nodes", D, 0o755),  # what the runner binds at /dev/dri where the bridge cannot run
    Row("dev/dri-nodes/{node}", C, 0o666),
    Row("dev/dri-nodes/by-path", D, 0o755),
    Row("dev/dri-nodes/by-path/platform-{pdev}-{kind}", L, 0o777, "../{node}"),
    Row("proc", D, 0o555),
    Row("proc/{pid}", D, 0o555),
    Row("proc/{pid}/fd", D, 0o500),
    Row("proc/{pid}/fd/{fd}", L, 0o700, _fd_target, FD_LINK_SIZE),  # mode from the open's flags
    Row("proc/{pid}/fdinfo", D, 0o555),
    Row("proc/{pid}/fdinfo/{fd}", T, 0o444, _fdinfo),
    Row("proc/{pid}/stat", T, 0o444, _real("stat")),
    Row("proc/{pid}/status", T, 0o444, _real("status")),
    Row("proc/{pid}/comm", T, 0o444, _real("comm")),  # 0644 in procfs; renaming is not mirrored
    Row("proc/{pid}/cmdline", T, 0o444, _real("cmdline")),
    Row("sys", D, 0o555),
    Row("sys/class", D, 0o755),
    Row("sys/class/drm", D, 0o755),
    Row("sys/class/drm/{node}", L, 0o777, "../../devices/platform/{pdev}/drm/{node}"),
    Row("sys/dev", D, 0o755),
    Row("sys/dev/char", D, 0o755),
    Row("sys/dev/char/226:{minor}", L, 0o777, "../../devices/platform/{pdev}/drm/{node}"),
    Row("sys/devices", D, 0o755),
    Row("sys/devices/platform", D, 0o755),
    Row(_DEV, D, 0o755),
    Row(_DEV + "/uevent", T, 0o444, _pdev_uevent, SYSFS_ATTR_SIZE),
    Row(_DEV + "/{attr}", A, 0o644, (_attr_show, _attr_store), SYSFS_ATTR_SIZE),
    Row(_DEV + "/subsystem", L, 0o777, "../../../bus/platform"),  # libdrm: the bus type
    Row(_DEV + "/driver", L, 0o777, "../../../bus/platform/drivers/{driver}"),
    Row(_DEV + "/drm", D, 0o755),
    Row(_DEV + "/drm/{node}", D, 0o755),
    Row(_DEV + "/drm/{node}/dev", T, 0o444, "226:{minor}\n", SYSFS_ATTR_SIZE),
    Row(_DEV + "/drm/{node}/uevent", T, 0o444,
        "MAJOR=226\nMINOR={minor}\nDEVNAME=dri/{node}\nDEVTYPE=drm_minor\n", SYSFS_ATTR_SIZE),
    Row(_DEV + "/drm/{node}/device", L, 0o777, "../../../{pdev}"),
    Row(_DEV + "/drm/{node}/subsystem", L, 0o777, "../../../../../class/drm"),
    Row("sys/bus", D, 0o755),
    Row("sys/bus/platform", D, 0o755),
    Row("sys/bus/platform/devices", D, 0o755),
    Row("sys/bus/platform/devices/{pdev}", L, 0o777, "../../../devices/platform/{pdev}"),
    Row("sys/bus/platform/drivers", D, 0o755),
    Row("sys/bus/platform/drivers/{driver}", D, 0o755),
    Row("sys/bus/platform/drivers/{driver}/{pdev}", L, 0o777, "../../../../devices/platform/{pdev}"),
    Row("sys/kernel", D, 0o755),
    Row("sys/kernel/debug", D, 0o700),
    Row("sys/kernel/debug/dri", D, 0o755),
    Row("sys/kernel/debug/dri/{minor}", D, 0o755),
    Row("sys/kernel/debug/dri/{minor}/{debugfs}", T, 0o444, _debugfs),
    Row("sys/kernel/debug/dri/{minor}/{dattr}", A, 0o600, (_dattr_show, _dattr_store)),
    Row("sys/kernel/debug/dri/{minor}/vdrm-clock", A, 0o644, (_clock_show, _clock_store)),
    Row("sys/kernel/debug/dri/{minor}/vdrm-clients", D, 0o755),
    Row("sys/kernel/debug/dri/{minor}/vdrm-clients/{client}", D, 0o755),
    Row("sys/kernel/debug/dri/{minor}/vdrm-clients/{client}/fdinfo", T, 0o444, _client_fdinfo),
    Row("sys/kernel/debug/dri/{minor}/vdrm-clients/{client}/truth.json", T, 0o444, _client_truth),
) + _all_pids_rows()
del D, T, L, A, G, N, C

_NODE_KEYS = ("{node}", "{minor}", "{kind}")
_DYNAMIC = ("pid", "fd", "tid", "debugfs", "client")  # placeholders resolved at lookup time
_CLOCK_STEP = Arg("by", "duration")


def node_name(minor: int) -> str:
    return f"card{minor}" if minor < 128 else f"renderD{minor}"


# -- the pattern tree built from TABLE -------------------------------------------------


class _Pattern:
    """A row with the build-time placeholders filled in: a node of the pattern tree."""

    def __init__(self, row: Row, path: str, args: dict[str, Any]):
        self.row = row
        self.path = path  # may still contain {pid} {fd} {debugfs}
        self.args = args  # build-time values: gpu, node, minor, kind, pdev, attr
        self.children: dict[str, _Pattern] = {}
        self.var_child: _Pattern | None = None
        self.name = path.rsplit("/", 1)[-1]
        self.var = self.name[1:-1] if self.name[1:-1] in _DYNAMIC and self.name.startswith("{") else None
        self.dynamic = any("{" + v + "}" in path for v in _DYNAMIC)

    @property
    def kind(self) -> Kind:
        return self.row.kind


def _expand(machine: Machine, all_pids: bool = False) -> list[_Pattern]:
    patterns = []
    for row in TABLE:
        if row.all_pids and not all_pids:
            continue
        variants: list[dict[str, Any]] = [{}]
        if any(key in row.path for key in _NODE_KEYS):
            variants = [{"gpu": i, "pdev": gpu.platform_device, "driver": gpu.driver_name, "node": n, "minor": m,
                         "kind": k} for i, gpu in enumerate(machine.devices) for n, m, k in gpu.nodes]
        elif "{pdev}" in row.path or "{driver}" in row.path:
            variants = [{"gpu": i, "pdev": gpu.platform_device, "driver": gpu.driver_name}
                        for i, gpu in enumerate(machine.devices)]
        if row.feature is not None:  # only on the GPUs whose release has it
            variants = [v for v in variants if "gpu" in v and machine.devices[v["gpu"]].driver.has(row.feature)]
        if "{attr}" in row.path:
            variants = [{**v, "attr": name} for v in variants
                        for name in machine.devices[v["gpu"]].sysfs_attributes()]
        if "{dattr}" in row.path:
            variants = [{**v, "dattr": name} for v in variants
                        for name in machine.devices[v["gpu"]].debugfs_attributes()]
        for variant in variants:
            args = dict(variant)
            path = row.path
            for key, value in args.items():
                path = path.replace("{" + key + "}", str(value))
            patterns.append(_Pattern(row, path, args))
    return patterns


# -- inodes and attributes ---------------------------------------------------------------


@dataclass(eq=False)
class Inode:
    """A name the kernel knows: its pattern, its concrete path and its lookup count."""

    ino: int
    pattern: _Pattern
    path: str
    args: dict[str, Any]
    parent: int
    static: bool = False
    nlookup: int = 0

    @property
    def kind(self) -> Kind:
        return self.pattern.kind


@dataclass(frozen=True)
class Stat:
    """What getattr reports (converted to ``pyfuse3.EntryAttributes`` at the edge)."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    rdev: int
    mtime_ns: int
    entry_timeout: float
    attr_timeout: float


@dataclass(frozen=True)
class DirEntry:
    name: str
    inode: Inode
    stat: "Stat"
    counted: bool  # False for "." and "..": listing them does not add a lookup


@dataclass(frozen=True)
class Caller:
    """Who made a request: FUSE reports the calling thread's id."""

    tid: int
    uid: int
    gid: int


class Waker(Protocol):
    """Wakes a poll(2)/select(2) waiter once (``pyfuse3.PollHandle``)."""

    def notify(self) -> None: ...


# -- open files ---------------------------------------------------------------------------


MAX_WRITERS = 64  # writing threads with their own streams per open file; more share one

POLL_READABLE = select.POLLIN | select.POLLRDNORM
POLL_WRITABLE = select.POLLOUT | select.POLLWRNORM


class OpenFile:
    """One open of a tree file; ``read``/``write`` get the offset the kernel passes."""

    direct_io = True
    keep_cache = False

    def read(self, offset: int, size: int) -> bytes:
        raise BadDescriptor("not open for reading")

    def write(self, offset: int, data: bytes) -> int:
        raise BadDescriptor("not open for writing")

    def poll(self, waker: Waker | None) -> int:
        return POLL_READABLE

    def release(self) -> None:
        pass


class Snapshot(OpenFile):
    """A generated file: the text rendered once at open, served as slices of it."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]


class CachedText(OpenFile):
    """A generated file served through the kernel's page cache (:mod:`vdrm.fs.cache`):
    every read serves the text whose size the kernel was given."""

    direct_io = False

    def __init__(self, cache: KernelCache, ino: int, keep_cache: bool):
        self._cache = cache
        self._ino = ino
        self.keep_cache = keep_cache

    def read(self, offset: int, size: int) -> bytes:
        return self._cache.page_text(self._ino)[offset:offset + size]


class Attribute(Snapshot):
    """A sysfs attribute: reads serve the text shown at open; each write is one store."""

    def __init__(self, data: bytes, store: Callable[[str], None]):
        super().__init__(data)
        self._store = store

    def write(self, offset: int, data: bytes) -> int:
        self._store(data.decode(errors="replace"))
        return len(data)

    def poll(self, waker: Waker | None) -> int:
        return POLL_READABLE | POLL_WRITABLE


class LogReader(OpenFile):
    """The kernel log at any offset; it only grows, so ``tail -f`` sees new records."""

    def __init__(self, machine: Machine):
        self._log = machine.log

    def read(self, offset: int, size: int) -> bytes:
        return self._log.read(offset, size)


class DrmOpen(OpenFile):
    """One open of a DRM node: a DRM client and its request/reply streams.

    Writes are cut into request lines and answered in order; every reply is queued and a
    read takes the next one (``b""``, i.e. end-of-file, when none is queued: a read never
    blocks). A request that must wait for the device clock (WAIT_BO on the real clock)
    stays at the head of the queue: :meth:`answer` returns the time to wait until, and the
    writer calls it again after sleeping.

    Per writer, as an ioctl's result goes back to its caller: each writing thread (its
    tid, from the request's FUSE header, :mod:`vdrm.fs.caller`) has its own partial line
    and its own reply queue, so processes sharing the open file (inherited, dup'd) never
    read each other's replies nor mix their arguments. A reader takes its own thread's
    replies first; with none, those of a related writer (its own process, an ancestor or
    descendant process, or a writer that has exited: ``echo VERSION >&3; head -1 <&3``
    reads the shell's reply), never those of an unrelated live process. Writer 0 is
    "unknown" (no header); it and a reader 0 share everything, as one stream did.
    """

    def __init__(self, tree: "Tree", ino: int, file: "DrmFile"):
        self.tree = tree
        self.ino = ino
        self.file = file
        limits = getattr(file.dev, "limits", None)
        self._reply_limit = limits.reply_bytes if limits else protocol.REPLY_QUEUE_BYTES
        self._streams: dict[int, protocol.RequestStream] = {}
        self._queues: dict[int, protocol.ReplyQueue] = {}
        self._pending: deque[tuple[int, bytes]] = deque()
        self._waker: Waker | None = None
        self.released = False
        self.owner_fd: int | None = None  # the owner's fd on this open, last seen (update_owner)
        # the owner holds it: the opener holds the fd open(2) returns, until a close (FLUSH)
        self.owner_holds = True

    @property
    def requests(self) -> protocol.RequestStream:
        """The unknown writer's stream (tests and the single-writer case)."""
        return self._stream(0)

    @property
    def replies(self) -> protocol.ReplyQueue:
        """The unknown writer's reply queue."""
        return self._queue(0)

    def _writer(self, tid: int) -> int:
        """The key of writer ``tid``: past :data:`MAX_WRITERS` new writers share key 0."""
        if tid in self._streams or tid in self._queues or len(self._streams) < MAX_WRITERS:
            return tid
        return 0

    def _stream(self, key: int) -> protocol.RequestStream:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = protocol.RequestStream()
        return stream

    def _queue(self, key: int) -> protocol.ReplyQueue:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = protocol.ReplyQueue(self._reply_limit)
        return queue

    @property
    def pending_bytes(self) -> int:
        """Reply bytes waiting for any reader."""
        return sum(q.pending_bytes for q in self._queues.values())

    def write(self, offset: int, data: bytes, writer: int = 0) -> int:
        key = self._writer(writer)
        stream = self._stream(key)
        self._pending.extend((key, line) for line in stream.feed(data))
        if stream.idle and key:
            del self._streams[key]  # nothing held for this writer, nor a long line being discarded
        return len(data)

    def answer(self) -> int | None:
        """Answer the pending requests in order; the clock time (ns) to wait for, or None."""
        table = self.tree.machine.ioctls_of(self.file)
        if self._pending and not self.released:
            self.tree.update_owner(self)
        try:
            while self._pending and not self.released:
                writer, line = self._pending[0]
                try:
                    reply = protocol.handle(table, self.file, line)
                except WouldBlock as e:
                    return e.until_ns
                if isinstance(reply.exception, WouldBlock):
                    return reply.exception.until_ns
                self._pending.popleft()
                if reply.exception is not None:
                    log.error("request %r of client %d failed inside vdrm", line[:200],
                              self.file.client_id, exc_info=reply.exception)
                self._queue(writer).push(reply.line)
            return None
        finally:
            self.wake()

    def interrupt(self) -> None:
        """A signal reached the waiter: the waiting request fails with EINTR, the rest run."""
        if not self._pending:
            return
        writer, _line = self._pending.popleft()
        priv = getattr(self.file, "driver_priv", None)
        if getattr(priv, "waiting", None) is not None:
            priv.waiting = None  # WAIT_BO: the interrupted wait is over
        self._queue(writer).push(protocol.format_error(
            "EINTR", "interrupted by a signal while waiting (the kernel's ERESTARTSYS)"))
        self.wake()

    def read(self, offset: int, size: int, reader: int = 0) -> bytes:
        key = self._reader(reader)
        if key is None:
            return b""
        queue = self._queues[key]
        data = queue.read(size)
        if key and not queue.pending_bytes and key not in self._streams \
                and not any(w == key for w, _ in self._pending):
            del self._queues[key]  # this writer has nothing left here
        return data

    def _reader(self, reader: int) -> int | None:
        """Whose queue ``reader`` reads: its own, else a related writer's (oldest key first)."""
        own = self._queues.get(reader)
        if own is not None and own.pending_bytes:
            return reader
        may_read = self._may_read(reader)
        for key, queue in self._queues.items():
            if queue.pending_bytes and may_read(key):
                return key
        return None

    def waiting_for(self, reader: int) -> bool:
        """Whether a request whose reply ``reader`` may read is still to be answered."""
        may_read = self._may_read(reader)
        return any(may_read(writer) for writer, _ in self._pending)

    def _may_read(self, reader: int) -> Callable[[int], bool]:
        """Whether ``reader`` may take writer ``key``'s replies: unknown on either side, the
        same thread or process, an ancestor or descendant process, or a writer that has
        exited. Each thread's lineage is read from the host's /proc once per call."""
        lineages: dict[int, list[int] | None] = {}

        def lineage(tid: int) -> list[int] | None:
            if tid not in lineages:
                lineages[tid] = self.tree.procfs.lineage(tid)
            return lineages[tid]

        def may_read(key: int) -> bool:
            if not reader or not key or key == reader:
                return True
            theirs = lineage(key)
            if theirs is None:
                return True  # the writer is gone: its replies are anyone's who shares the file
            mine = lineage(reader)
            return mine is not None and (mine[0] in theirs or theirs[0] in mine)

        return may_read

    def poll(self, waker: Waker | None) -> int:
        if self.pending_bytes:
            return POLL_READABLE | POLL_WRITABLE
        if waker is not None:
            self._waker = waker  # a fresh handle replaces the old one
        return POLL_WRITABLE

    def wake(self, *, always: bool = False) -> None:
        """Notify a poll(2) waiter if a reply is waiting, the file is going away, or ``always``."""
        waker = self._waker
        if waker is not None and (always or self.pending_bytes or self.released):
            self._waker = None
            try:
                waker.notify()
            except OSError:
                pass  # the waiter is gone

    def release(self) -> None:
        # A last request written without a newline still runs; its reply has no reader.
        for key, stream in list(self._streams.items()):
            self._pending.extend((key, line) for line in stream.close())
        self.answer()
        self.tree.release_client(self)


# -- the tree -------------------------------------------------------------------------------


class Tree:
    """The mounted tree over one device and the host's processes."""

    def __init__(self, device: "GpuDevice | Machine", procfs: "ProcessTable", *,
                 static_timeout: float = STATIC_TIMEOUT, all_pids: bool = False, access: NodeAccess | None = None,
                 owner: tuple[int, int] = (0, 0)):
        """``device``: one GPU or a machine of several. ``all_pids``: serve the rows marked
        so (the namespace runner's tree); ``procfs`` should then list every real process
        (``ProcessTable(all_pids=True)``). ``access``: the DRM nodes' modes and groups
        (:mod:`vdrm.fs.permissions`). ``owner``: uid and gid of every other file outside
        ``proc/<pid>`` (an unprivileged mount's user, so its ``vdrm-clock`` is writable)."""
        self.owner = owner
        self.machine = as_machine(device)
        self.device = self.machine  # what the tree's callers reach: clock, log, open, release
        self.access = access or NodeAccess.udev_default()
        self.procfs = procfs
        self.static_timeout = static_timeout
        self.all_pids = all_pids
        self.mtime_ns = time.time_ns()
        self._patterns = _expand(self.machine, all_pids)
        self._inodes: dict[int, Inode] = {}
        self._by_path: dict[str, Inode] = {}  # dynamic inodes the kernel knows, by path
        self._next_ino = itertools.count(len(self._patterns) + 1)
        self._opens: dict[int, list[DrmOpen]] = {}  # DRM node inode -> its live opens
        self.cache = KernelCache()  # what the kernel may cache of proc/ (vdrm.fs.cache)
        self._listing_versions: dict[int, int] = {}  # emulated pid -> fd closes (its dirs' mtime)
        by_path: dict[str, _Pattern] = {}
        for ino, pattern in enumerate(self._patterns, start=ROOT_INO):
            by_path[pattern.path] = pattern
            if pattern.path:
                parent = by_path[pattern.path.rpartition("/")[0]]
                if pattern.var:
                    parent.var_child = pattern
                else:
                    parent.children[pattern.name] = pattern
            if not pattern.dynamic and pattern.kind is not Kind.NODE:
                parent_ino = self._by_path[pattern.path.rpartition("/")[0]].ino if pattern.path else ROOT_INO
                inode = Inode(ino, pattern, pattern.path, dict(pattern.args), parent_ino, static=True)
                self._inodes[ino] = inode
                self._by_path[pattern.path] = inode

    # -- names ------------------------------------------------------------------------

    def inode(self, ino: int) -> Inode:
        inode = self._inodes.get(ino)
        if inode is None:
            raise NoEntry(f"inode {ino} is not known (forgotten)")
        return inode

    def lookup(self, parent_ino: int, name: str, caller: Caller | None = None) -> Stat:
        """The attributes of ``name`` in a directory; counts one lookup of its inode.

        The count (the kernel's reference) is taken only once the answer is complete, so
        a lookup that fails leaves nothing behind. ``caller`` (who walks) is checked
        where procfs checks more than mode bits (``proc/<pid>/fdinfo/``).
        """
        parent = self.inode(parent_ino)
        if parent.kind is not Kind.DIR:
            raise NotADirectory(f"{parent.path or '/'} is not a directory")
        self._check_traced(parent, caller)
        if name in (".", ".."):  # asked only when exported over NFS; counted all the same
            inode = parent if name == "." else self.inode(parent.parent)
        else:
            inode = self._child(parent, name)
        try:
            st = self.stat(inode)
            self._handed_out(inode)
        except BaseException:
            self.drop_unreferenced([inode])
            raise
        inode.nlookup += 1
        return st

    def _handed_out(self, inode: Inode, ref: "FdRef | None" = None) -> None:
        """A cached name reached the kernel: record which open files it refers to, so that
        a close of any of their fds invalidates it (:mod:`vdrm.fs.cache`)."""
        var = inode.pattern.var
        a = inode.args
        if var == "fd":
            ref = ref or self.procfs.fd(a["pid"], a["fd"])
            if ref is not None and ref.file is None:
                self.cache.entry_handed_out(ref.ino, a["pid"], a["fd"])
        elif var == "pid" and not self.all_pids:
            for held in self.procfs.fds(a["pid"]).values():
                if held.file is None:
                    self.cache.entry_handed_out(held.ino, a["pid"], None)

    def _exact_name(self, inode: Inode) -> bool:
        """Whether the kernel may cache this name: one that only a close (FLUSH) or a
        scenario event removes, and vdrm then invalidates."""
        var = inode.pattern.var
        if var == "fd":
            return True
        if self.all_pids or "tid" in inode.args:  # every process listed: exits send nothing
            return False
        return var == "pid" or (var is None and "pid" in inode.args)

    def _child(self, parent: Inode, name: str, *, listed: bool = False) -> Inode:
        """The inode of ``name`` in ``parent``; ``listed``: it was just enumerated (exists)."""
        pattern = parent.pattern.children.get(name)
        if pattern is None:
            pattern = parent.pattern.var_child
            if pattern is None or not (listed or self._exists(pattern.var, name, parent.args)):
                raise NoEntry(f"no {name!r} in /{parent.path}")
            args = {**parent.args, **pattern.args, pattern.var: name if pattern.var == "debugfs" else int(name)}
        else:
            args = {**parent.args, **pattern.args}
        if pattern.var is None and not listed and not self._alive(parent):
            raise NoEntry(f"/{parent.path} is gone")
        path = f"{parent.path}/{name}" if parent.path else name
        if not pattern.dynamic and pattern.kind is not Kind.NODE:
            return self._by_path[path]
        if pattern.kind is Kind.NODE:  # a fresh inode per lookup: one per open(2)
            return self._new_inode(pattern, path, args, parent.ino)
        inode = self._by_path.get(path)
        if inode is None:
            inode = self._new_inode(pattern, path, args, parent.ino)
            self._by_path[path] = inode
        inode.parent = parent.ino  # the parent's inode may have been forgotten and remade
        return inode

    def _new_inode(self, pattern: _Pattern, path: str, args: dict, parent: int) -> Inode:
        inode = Inode(next(self._next_ino), pattern, path, args, parent)
        self._inodes[inode.ino] = inode
        return inode

    def _exists(self, var: str, name: str, args: dict) -> bool:
        if var == "debugfs":
            return name in self.machine.devices[args["gpu"]].debugfs_files()
        if not name.isdigit() or str(int(name)) != name:
            return False
        if var == "client":
            return int(name) in self.machine.devices[args["gpu"]].drm.files
        if var == "pid":
            return self.procfs.has(int(name))
        if var == "tid":
            return int(name) in self.procfs.tids(args["pid"])
        return self.procfs.fd(args["pid"], int(name)) is not None

    def _alive(self, inode: Inode) -> bool:
        """Whether a dynamic inode's path still exists (its process, fd, debugfs file)."""
        if inode.static or inode.kind is Kind.NODE:
            return True
        a = inode.args
        if "fd" in a:
            return self.procfs.fd(a["pid"], a["fd"]) is not None
        if "tid" in a:
            return a["tid"] in self.procfs.tids(a["pid"])
        if "pid" in a:
            return self.procfs.has(a["pid"])
        if "debugfs" in a:
            return a["debugfs"] in self.machine.devices[a["gpu"]].debugfs_files()
        if "client" in a:
            return a["client"] in self.machine.devices[a["gpu"]].drm.files
        return True

    def remember(self, inode: Inode) -> None:
        """A readdir entry reached the kernel: it holds one more lookup of ``inode``.

        The listing was made at OPENDIR (or a rewind); the kernel may have forgotten the
        inode since (FORGET), and it was dropped. It knows it again now: so must we."""
        inode.nlookup += 1
        if self._inodes.get(inode.ino) is not inode:
            self._inodes[inode.ino] = inode
            self._by_path.setdefault(inode.path, inode)

    def forget(self, ino: int, nlookup: int) -> None:
        """The kernel dropped ``nlookup`` references; a dynamic inode at 0 is forgotten."""
        inode = self._inodes.get(ino)
        if inode is None or inode.static:
            return
        inode.nlookup -= nlookup
        if inode.nlookup <= 0:
            self._drop(inode)

    def drop_unreferenced(self, inodes: Iterable[Inode]) -> None:
        """Forget dynamic inodes made for a listing that never reached the kernel."""
        for inode in inodes:
            if not inode.static and inode.nlookup <= 0:
                self._drop(inode)

    def _drop(self, inode: Inode) -> None:
        self._inodes.pop(inode.ino, None)
        self.cache.forget(inode.ino)
        if self._by_path.get(inode.path) is inode:
            del self._by_path[inode.path]

    # -- attributes -------------------------------------------------------------------

    def getattr(self, ino: int) -> Stat:
        inode = self.inode(ino)
        if not self._alive(inode):
            raise NoEntry(f"/{inode.path} is gone")
        return self.stat(inode)

    def stat(self, inode: Inode, ref: "FdRef | None" = None) -> Stat:
        row, kind = inode.pattern.row, inode.kind
        a = inode.args
        uid, gid = self.owner
        if "pid" in a:
            try:
                uid, gid = self.procfs.owner(a["pid"])
            except OSError:
                raise NoEntry(f"process {a['pid']} is gone") from None
        mode, size, mtime_ns, rdev = row.mode, row.size, self.mtime_ns, 0
        if kind is Kind.DIR:
            fmt, nlink = _stat.S_IFDIR, 2
        elif kind is Kind.LINK:
            fmt, nlink = _stat.S_IFLNK, 1
            if "fd" in a:
                mode = self._fd_link_mode(a, ref)
            elif not row.by_caller:
                size = size or len(self._link_target(inode))
        elif kind is Kind.CHAR:
            fmt, nlink, rdev = _stat.S_IFCHR, 1, os.makedev(DRM_MAJOR, a["minor"])
            mode, gid = self.access.of(a["node"])
        else:
            fmt, nlink = _stat.S_IFREG, 1
            if kind is Kind.NODE:
                mode, gid = self.access.of(a["node"])
            if kind is Kind.LOG:
                size, mtime_ns = self.machine.log.size, time.time_ns()
        if row.content is _fdinfo:  # the exact size: reads may come from the page cache
            text, cacheable = self._fdinfo_text(inode, ref)
            size = len(text)
            self.cache.told(inode.ino, text, cacheable)
            return Stat(inode.ino, fmt | mode, nlink, uid, gid, size, rdev, mtime_ns, CACHE_TIMEOUT,
                        CACHE_TIMEOUT if cacheable else 0.0)
        if kind is Kind.LOG:  # st_size grows: never cache attributes
            entry_timeout, attr_timeout = self.static_timeout, 0.0
        elif self._exact_name(inode):  # invalidated exactly, see vdrm.fs.cache
            entry_timeout = CACHE_TIMEOUT
            # an fd's link mode is its open's; a host process's owner may change (setuid),
            # an emulated one's never, and its fd listing changes only by scenario events
            emulated = self.procfs.emulated(a["pid"])
            attr_timeout = CACHE_TIMEOUT if "fd" in a or emulated else DYNAMIC_TIMEOUT
            if emulated and kind is Kind.DIR:
                mtime_ns += self._listing_versions.get(a["pid"], 0)
        elif inode.static:
            entry_timeout = attr_timeout = self.static_timeout
        elif kind is Kind.NODE or inode.pattern.var:  # names that come and go, or one inode per open
            entry_timeout, attr_timeout = 0.0, DYNAMIC_TIMEOUT
        else:  # fixed names inside proc/<pid>: reached only through a revalidated <pid>
            entry_timeout = attr_timeout = DYNAMIC_TIMEOUT
        return Stat(inode.ino, fmt | mode, nlink, uid, gid, size, rdev, mtime_ns, entry_timeout, attr_timeout)

    def _fd_link_mode(self, a: dict, ref: "FdRef | None") -> int:
        """procfs: r-x for an fd open for reading, -wx for writing (``proc_fd_instantiate``)."""
        ref = ref or self.procfs.fd(a["pid"], a["fd"])
        if ref is None:
            raise NoEntry(f"fd {a['fd']} of pid {a['pid']} is closed")
        accmode = ref.flags & os.O_ACCMODE
        mode = 0
        if accmode in (os.O_RDONLY, os.O_RDWR):
            mode |= 0o500
        if accmode in (os.O_WRONLY, os.O_RDWR):
            mode |= 0o300
        return mode

    def readlink(self, ino: int, caller: Caller | None = None) -> str:
        """A symlink's target; ``caller`` (who follows it) decides ``proc/self``'s."""
        inode = self.inode(ino)
        if inode.kind is not Kind.LINK:
            raise InvalidLink(f"/{inode.path} is not a symlink")
        return self._link_target(inode, caller)

    def _link_target(self, inode: Inode, caller: Caller | None = None) -> str:
        row = inode.pattern.row
        if row.by_caller:
            if caller is None:
                raise InvalidLink(f"/{inode.path} names the caller, who is not known here")
            return row.content(self, {**inode.args, "caller": caller})
        if callable(row.content):
            return row.content(self, inode.args)
        return row.content.format(**inode.args)

    # -- directories ------------------------------------------------------------------

    def _check_traced(self, inode: Inode, caller: Caller | None) -> None:
        """procfs 5.14+: ``fdinfo/`` needs ptrace access to its process (same uid or root)."""
        if caller is None or not inode.path.endswith("/fdinfo") or "pid" not in inode.args:
            return
        try:
            uid, _ = self.procfs.owner(inode.args["pid"])
        except OSError:
            raise NoEntry(f"process {inode.args['pid']} is gone") from None
        if not may_trace(caller.uid, uid):
            raise AccessDenied(f"proc/{inode.args['pid']}/fdinfo needs ptrace access "
                               f"(the process belongs to uid {uid})")

    def listdir(self, ino: int, caller: Caller | None = None) -> list[DirEntry]:
        """The entries of a directory, ``.`` and ``..`` first, as the kernel should see them.

        Dynamic inodes are made for every entry; the caller reports each entry that reached
        the kernel with :meth:`remember` and then hands all of them to
        :meth:`drop_unreferenced`.
        """
        inode = self.inode(ino)
        if inode.kind is not Kind.DIR:
            raise NotADirectory(f"/{inode.path} is not a directory")
        if not self._alive(inode):
            raise NoEntry(f"/{inode.path} is gone")
        self._check_traced(inode, caller)
        parent = self.inode(inode.parent)
        entries = [DirEntry(".", inode, self.stat(inode), False),
                   DirEntry("..", parent, self.stat(parent), False)]
        for name in inode.pattern.children:
            child = self._child(inode, name, listed=True)
            entries.append(DirEntry(name, child, self.stat(child), True))
        var_child = inode.pattern.var_child
        if var_child is not None:
            for name, ref in self._enumerate(var_child.var, inode.args):
                child = self._child(inode, name, listed=True)
                try:
                    entries.append(DirEntry(name, child, self.stat(child, ref), True))
                    self._handed_out(child, ref)
                except NoEntry:  # gone since it was listed
                    self.drop_unreferenced([child])
        return entries

    def _enumerate(self, var: str, args: dict) -> list[tuple[str, "FdRef | None"]]:
        if var == "pid":
            return [(str(pid), None) for pid in self.procfs.pids()]
        if var == "fd":
            return [(str(fd), ref) for fd, ref in self.procfs.fds(args["pid"]).items()]
        if var == "tid":
            return [(str(tid), None) for tid in self.procfs.tids(args["pid"])]
        if var == "client":
            return [(str(cid), None) for cid in self.machine.devices[args["gpu"]].drm.files]
        return [(name, None) for name in sorted(self.machine.devices[args["gpu"]].debugfs_files())]

    # -- opening files ----------------------------------------------------------------

    def open(self, ino: int, flags: int, caller: Caller) -> OpenFile:
        """Open a file for ``caller``: a new DRM client, a snapshot, an attribute, the log."""
        inode = self.inode(ino)
        kind = inode.kind
        if kind is Kind.DIR:
            raise IsADirectory(f"/{inode.path} is a directory")
        if kind is Kind.LINK:
            raise InvalidLink(f"/{inode.path} is a symlink")  # the kernel follows links itself
        if kind is Kind.CHAR:  # a nodev mount refuses before asking; say the same
            raise AccessDenied(f"/{inode.path} is a device node for stat only; "
                               f"open dev/dri/{inode.args['node']} to be a DRM client")
        writing = flags & os.O_ACCMODE != os.O_RDONLY
        if writing and kind not in (Kind.NODE, Kind.ATTR):
            raise AccessDenied(f"/{inode.path} is read-only")
        if kind is Kind.NODE:
            return self._open_node(inode, caller)
        if kind is Kind.LOG:
            return LogReader(self.machine)
        if "fd" in inode.args and caller.uid != 0:  # procfs: fdinfo only for the process's owner (or root)
            uid, _ = self.procfs.owner(inode.args["pid"])
            if not may_trace(caller.uid, uid):
                raise AccessDenied(f"fdinfo of pid {inode.args['pid']} belongs to uid {uid}")
        content = inode.pattern.row.content
        if content is _fdinfo:
            a = inode.args
            ref = getattr(self.procfs, "header", self.procfs.fd)(a["pid"], a["fd"])
            if ref is None:
                raise NoEntry(f"fd {a['fd']} of pid {a['pid']} is not an open vdrm node")
            text, cacheable = self._fdinfo_text(inode, ref)
            how = self.cache.opened(inode.ino, text, cacheable)
            return Snapshot(text) if how.direct_io else CachedText(self.cache, inode.ino, how.keep_cache)
        if kind is Kind.ATTR:
            show, store = content
            return Attribute(_encode(show(self, inode.args)), lambda text: store(self, inode.args, text))
        if callable(content):
            return Snapshot(_encode(content(self, inode.args)))
        return Snapshot(_encode(content.format(**inode.args)))

    def _fdinfo_text(self, inode: Inode, ref: "FdRef | None" = None) -> tuple[bytes, bool]:
        """An fdinfo file's text (rendered once per state of the device and of the fd) and
        whether it stays put until an event vdrm sees."""
        a = inode.args
        ref = ref or self.procfs.fd(a["pid"], a["fd"])
        if ref is None:
            raise NoEntry(f"fd {a['fd']} of pid {a['pid']} is not an open vdrm node")
        key = (self.cache.generation, ref.ino, ref.flags, ref.mnt_id, 0 if ref.file is None else ref.pos,
               id(ref.file))
        text = self.cache.rendered(inode.ino, key, lambda: _encode(_fdinfo(self, a, ref)))
        return text, self._frozen()

    def _frozen(self) -> bool:
        """Whether the device's state moves only through events vdrm sees (requests, stores,
        clock steps): always on the virtual clock; on the real one, while no job is queued
        or running and no timed event is pending."""
        clock = self.device.clock
        if getattr(clock, "virtual", False):
            return True
        driver = getattr(self.device, "driver", None)
        sched = getattr(driver, "sched", None)
        if sched is None:
            return False
        self.device.update()
        return not any(sched.running) and not any(sched.queues) and not driver.timeline.pending()

    # -- what changes the kernel's cache (vdrm.fs.cache) --------------------------------

    def changed(self) -> None:
        """An event that may change any fdinfo text happened (a request, a release, a store,
        a clock step); scenario fds it closed lose their names."""
        self.cache.changed()
        take_closed = getattr(self.procfs, "take_closed", None)
        if take_closed is not None:
            closed = take_closed()
            if closed:
                pids = sorted({pid for pid, _ in closed})
                self.cache.names_gone([(pid, fd) for pid, fd in closed] + [(pid, None) for pid in pids])
                self._listings_changed(pids)

    def listing_cached(self, ino: int) -> bool:
        """Whether the kernel may keep this directory's listing (FOPEN_CACHE_DIR): an
        emulated process's ``fd/`` and ``fdinfo/``, whose fds only scenario events close.

        A host process's are never cached: ``dup`` and ``fork`` add fds without a FUSE
        request. Exactness on a close: :meth:`_listings_changed`."""
        inode = self._inodes.get(ino)
        if inode is None or inode.kind is not Kind.DIR or inode.pattern.var is not None:
            return False
        a = inode.args
        return (inode.pattern.name in ("fd", "fdinfo") and "pid" in a and "tid" not in a
                and self.procfs.emulated(a["pid"]))

    def _listings_changed(self, pids: list[int]) -> None:
        """Emulated processes' fds were closed: their ``fd/`` and ``fdinfo/`` listings go.

        Two things make a cached listing unusable, and both happen before the event's
        reply: the directory's inode is invalidated (its attributes and the pages the
        listing is cached in), and its mtime moves on. The mtime is what closes the race
        with a READDIR answered just before the event: the kernel stamps a cache with the
        directory's mtime when it starts filling it, and at the next opendir's first
        readdir (attributes refreshed, as they were invalidated) finds the stamps differ
        and drops the cache, whenever its pages were filled."""
        for pid in pids:
            self._listing_versions[pid] = self._listing_versions.get(pid, 0) + 1
            for directory in ("fd", "fdinfo"):
                inode = self._by_path.get(f"proc/{pid}/{directory}")
                if inode is not None:
                    self.cache.inode_changed(inode.ino)

    def flushed(self, handle: "DrmOpen") -> None:
        """FLUSH of an open DRM node: one of its fds was closed (the fd is already gone)."""
        handle.owner_holds = False  # it may have been the owner's last
        self.cache.flushed(handle.ino)

    def invalidations(self) -> tuple[list[int], list[tuple[int, bytes]]]:
        """What to tell the kernel to forget now: inodes, and (directory inode, name) pairs."""
        inodes, names = self.cache.take()
        out: list[tuple[int, bytes]] = []
        proc = self._by_path.get("proc")
        for pid, fd in names:
            if fd is None:
                if proc is not None:
                    out.append((proc.ino, str(pid).encode()))
                continue
            for directory in ("fd", "fdinfo"):
                parent = self._by_path.get(f"proc/{pid}/{directory}")
                if parent is not None:
                    out.append((parent.ino, str(fd).encode()))
        return inodes, out

    def _open_node(self, inode: Inode, caller: Caller) -> DrmOpen:
        pid = self.procfs.tgid(caller.tid)
        file = self.machine.open(inode.args["minor"], pid=pid, comm=self.procfs.comm(pid), uid=caller.uid)
        handle = DrmOpen(self, inode.ino, file)
        self._opens.setdefault(inode.ino, []).append(handle)
        self.procfs.invalidate()
        return handle

    def release_client(self, handle: DrmOpen) -> None:
        """The last fd of an open closed: the DRM client and everything it holds go."""
        if handle.released:
            return
        handle.released = True
        opens = self._opens.get(handle.ino, [])
        if handle in opens:
            opens.remove(handle)
        if not opens:
            self._opens.pop(handle.ino, None)
        self.procfs.invalidate()
        handle.wake()
        self.machine.release(handle.file)
        self.cache.flushed(handle.ino)
        self.changed()

    def update_owner(self, handle: DrmOpen) -> None:
        """Before requests run: who makes them, for ``drm_file_update_pid`` (6.4+).

        FUSE does not say who wrote a request (pyfuse3's ``write`` has no context), so
        the caller is found from the fd holders, the way procfs is: while the owner still
        holds an fd on this open it is taken to be the caller (the kernel's "single
        handover followed by exclusive repeated use"); once it holds none (it exited or
        closed, e.g. a parent that passed the fd to a child), the lowest pid that holds
        one becomes the owner. The opener holds the fd its open(2) returns, and whether
        the owner holds can only change when one of the open's fds is closed, which FUSE
        tells with FLUSH (:meth:`flushed`), so it is probed only after a FLUSH, the fd it
        was last seen holding (:attr:`DrmOpen.owner_fd`) first: a process holding
        thousands of clients would otherwise have every request scan its fds.
        """
        file = handle.file
        if file.was_master or handle.owner_holds:
            return
        if file.pid:
            handle.owner_fd = self.procfs.holding_fd(file.pid, handle.ino, handle.owner_fd)
            if handle.owner_fd is not None:
                handle.owner_holds = True  # until a close of one of its fds (FLUSH)
                return
        holders = self.procfs.holders(handle.ino)
        if holders:
            file.update_pid(holders[0], self.procfs.comm(holders[0]))

    def client(self, ino: int) -> "DrmFile | None":
        """The DRM client opened on node inode ``ino`` (the first, if reopened via /proc)."""
        opens = self._opens.get(ino)
        return opens[0].file if opens else None

    def node_minor(self, ino: int) -> int | None:
        """The minor of the DRM node inode ``ino`` names (opened or only looked up), or
        None if ``ino`` is something else (the process bridge's stat answers)."""
        inode = self._inodes.get(ino)
        return inode.args["minor"] if inode is not None and inode.kind is Kind.NODE else None

    def known_inodes(self) -> int:
        """How many inodes the tree holds (static ones included): for leak checks."""
        return len(self._inodes)

    def is_open_ino(self, ino: int) -> bool:
        return ino in self._opens

    def opens(self) -> list[DrmOpen]:
        return [h for handles in self._opens.values() for h in handles]

    def setattr_size(self, ino: int) -> Stat:
        """O_TRUNC on a node or attribute (``echo 1 > profiling``): accepted, as sysfs does."""
        inode = self.inode(ino)
        if inode.kind not in (Kind.NODE, Kind.ATTR):
            raise NotPermitted(f"/{inode.path} cannot be truncated")
        return self.getattr(ino)


def _encode(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()
