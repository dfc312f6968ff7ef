"""Real processes and the vdrm files they hold: what ``proc/<pid>/`` in the tree shows.

The tree's ``proc/`` mirrors the host's ``/proc`` for every real process holding a file
descriptor on an open ``dev/dri/card0`` or ``dev/dri/renderD128`` of this mount, with the
pid and fd numbers that process sees; with ``all_pids`` (the namespace runner) it lists
every real process, each with its vdrm fds only. FUSE never tells a filesystem about ``dup()``,
``fork()`` or ``close()`` (only about the open and the final release), so the holders are
found the way ``lsof`` finds them: ``readlink /proc/<pid>/fd/<n>`` as a cheap filter on the
name, then the real ``/proc/<pid>/fdinfo/<n>`` for ``pos``, ``flags``, ``mnt_id`` and ``ino``.

Invariants:

- An fd is ours when its ``ino`` is an inode the tree has open (every open of a DRM node
  gets its own inode, see :mod:`vdrm.fs.tree`) **and** its ``mnt_id`` is a mount of this
  filesystem (in the daemon's mount namespace or, for a process in another namespace that
  bind-mounted part of the tree, in its own).
- Nothing here ever touches a path on the vdrm mount itself: ``stat`` or ``open`` of our
  own files from inside a request handler would wait for the busy daemon (deadlock).
  Everything read lives on the host's procfs.
- Nothing is cached here: every answer is read fresh, so an fd closed, dup'd or
  inherited a moment ago is seen (a ``fork`` sends FUSE nothing, so even the whole-system
  scan cannot be reused). What the kernel may cache of the answers is
  :mod:`vdrm.fs.cache`'s business: names are invalidated on close, and an open of
  ``fdinfo/<fd>`` costs one read of the real fdinfo (:meth:`ProcessTable.header`).

Cost, measured on a 2-vCPU VM with about 75 processes: a whole scan 3 ms, one fd probe
(readlink plus fdinfo) 25 µs; only fds whose link names a DRM node get their fdinfo read.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

# Names an fd link must end with to be worth reading its fdinfo (the DRM nodes' names,
# of every GPU: card0, renderD128, card1, renderD129 ...).
_NODE_NAME = re.compile(r"/(card\d+|renderD\d+)$")
# Every lookup of a node name mints a new inode and unhashes the old dentry, so the host
# shows earlier opens of the same name as deleted: "/mnt/dev/dri/card0 (deleted)".
_DELETED = " (deleted)"


@dataclass(frozen=True)
class FdRef:
    """One fd on an open vdrm DRM node: a real one as the host kernel reports it, or an
    emulated one (``file`` set: scenario fds share their node's inode, as fds of a real
    character device do, so the inode cannot name the client)."""

    pid: int
    fd: int
    pos: int
    flags: int  # f_flags as fdinfo prints them (octal there)
    mnt_id: int
    ino: int
    file: Any = None
    target: str | None = None  # emulated fds: the fd link's text


def _read(path: str) -> bytes:
    """The whole of a small proc file: raw reads until EOF (no file object, no fstat)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def status_fields(pid: int, keys: tuple[str, ...], proc: str = "/proc") -> dict[str, str]:
    """The named fields of ``/proc/<pid>/status`` (a tid works too); ``{}`` if it is gone."""
    try:
        text = _read(f"{proc}/{pid}/status").decode("ascii", "replace")
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            fields[key] = value.strip()
    return fields


# fs/proc/fd.c prints the four in this order, one per line: "pos:\t%lli\nflags:\t0%o\n..."
_HEADER = re.compile(r"pos:\s*(-?\d+)\nflags:\s*([0-7]+)\nmnt_id:\s*(\d+)\nino:\s*(\d+)\n")


def parse_fdinfo_header(text: str) -> tuple[int, int, int, int] | None:
    """``pos``, ``flags``, ``mnt_id`` and ``ino`` from a real fdinfo text, or None."""
    m = _HEADER.match(text)
    if m is not None:
        return int(m[1]), int(m[2], 8), int(m[3]), int(m[4])
    values: dict[str, int] = {}  # not procfs's layout (an older kernel, a test): line by line
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("pos", "mnt_id", "ino"):
            values[key] = int(value.strip())
        elif key == "flags":
            values[key] = int(value.strip(), 8)
        if len(values) == 4:
            return values["pos"], values["flags"], values["mnt_id"], values["ino"]
    return None


class HeldFdinfo:
    """Real ``/proc/<pid>/fdinfo/<fd>`` files kept open and read again with ``pread``.

    procfs renders fdinfo afresh on every read from offset 0, and looks the fd up by
    number each time: a flag changed with ``fcntl`` shows, a closed fd reads ENOENT, a
    number reused shows its new file, and a process that exited reads an error even if
    its pid was reused (the open file holds the old process, not the number). So one
    ``pread`` answers what open, read and close did, in a sixth of the time (1 against
    7 us here); the fdinfo open of every real fd pays it. At most ``size`` files are
    kept (least recently read goes first), and one that fails is closed.
    """

    def __init__(self, proc: str = "/proc", size: int = 256):
        self._proc = proc
        self._size = size
        self._files: OrderedDict[tuple[int, int], int] = OrderedDict()

    def read(self, pid: int, fd: int) -> bytes:
        """The text of ``pid``'s fdinfo ``fd`` now; OSError if the fd or process is gone."""
        key = (pid, fd)
        held = self._files.get(key)
        if held is None:
            held = self._open(f"{self._proc}/{pid}/fdinfo/{fd}")
            self._files[key] = held
            if len(self._files) > self._size:
                _, oldest = self._files.popitem(last=False)
                os.close(oldest)
        else:
            self._files.move_to_end(key)
        try:
            return os.pread(held, 65536, 0)
        except OSError:
            del self._files[key]
            os.close(held)
            raise

    def _open(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE) or not self._files:
                raise
        self.close()  # out of fds: the kept files are what can go, not the answer
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        for held in self._files.values():
            os.close(held)
        self._files.clear()


class ProcessTable:
    """Which real processes hold which vdrm fds, and their real ``/proc`` files.

    ``is_open_ino(ino)`` says whether ``ino`` is a DRM node inode with a live open (the
    tree's answer); ``fuse_dev`` is the ``major:minor`` of this FUSE superblock as
    ``/proc/self/mountinfo`` shows it, learned lazily from ``mountpoint`` if not given.
    """

    def __init__(self, is_open_ino: Callable[[int], bool], *, mountpoint: str | None = None,
                 fuse_dev: str | None = None, proc: str = "/proc", all_pids: bool = False):
        self._is_open_ino = is_open_ino
        self.all_pids = all_pids
        self._mountpoint = mountpoint  # canonical: it is matched against mountinfo as is
        self._fuse_dev = fuse_dev
        self._proc = proc
        self._self_pid = os.getpid()
        self._mnt_ids: dict[int, bool] = {}  # mnt_id -> is it a mount of our superblock
        self._fdinfo = HeldFdinfo(proc)

    # -- which fds are ours --------------------------------------------------------

    def invalidate(self) -> None:
        """A DRM node was opened or released (nothing is cached here to forget)."""

    def pids(self) -> list[int]:
        """Every pid holding at least one vdrm fd (every pid with ``all_pids``), ascending:
        a whole-/proc scan each time (a fork adds a holder without telling FUSE)."""
        pids = self._all_pids()
        return pids if self.all_pids else [pid for pid in pids if self.has(pid)]

    def has(self, pid: int) -> bool:
        """Whether ``proc/<pid>`` exists: it holds a vdrm fd (or, with ``all_pids``, lives)."""
        if self.all_pids:
            return os.path.isdir(f"{self._proc}/{pid}")
        return next(self._iter_fds(pid), None) is not None  # stop at the first one

    def tids(self, pid: int) -> list[int]:
        """The threads of ``pid``, ascending; empty if it is gone."""
        try:
            return sorted(int(n) for n in os.listdir(f"{self._proc}/{pid}/task") if n.isdigit())
        except OSError:
            return []

    def fds(self, pid: int) -> dict[int, FdRef]:
        """The vdrm fds of ``pid`` by fd number, ascending; empty if it has none or is gone."""
        return {ref.fd: ref for ref in self._iter_fds(pid)}

    def _iter_fds(self, pid: int) -> Iterator[FdRef]:
        if pid == self._self_pid:
            return
        try:
            names = os.listdir(f"{self._proc}/{pid}/fd")
        except OSError:
            return
        for name in sorted(names, key=int):
            ref = self._probe(pid, int(name))
            if ref is not None:
                yield ref

    def holds(self, pid: int, ino: int) -> bool:
        """Whether ``pid`` holds an fd on DRM node inode ``ino`` now (read fresh)."""
        return self.holding_fd(pid, ino) is not None

    def holding_fd(self, pid: int, ino: int, hint: int | None = None) -> int | None:
        """The fd by which ``pid`` holds DRM node inode ``ino`` now (read fresh), or None.

        ``hint`` (where it was found last time) is probed first: one readlink and one
        fdinfo read while it still holds, instead of a scan of all the process's fds
        (a process holding thousands of clients made every request cost thousands)."""
        if hint is not None and pid != self._self_pid:
            ref = self._probe(pid, hint)
            if ref is not None and ref.ino == ino:
                return hint
        return next((ref.fd for ref in self._iter_fds(pid) if ref.ino == ino), None)

    def holders(self, ino: int) -> list[int]:
        """The pids holding an fd on DRM node inode ``ino``, ascending (a whole scan)."""
        return [pid for pid in self._all_pids() if self.holds(pid, ino)]

    def fd(self, pid: int, fd: int) -> FdRef | None:
        """``pid``'s fd ``fd`` if it is on an open vdrm node, read fresh."""
        if pid == self._self_pid:
            return None
        return self._probe(pid, fd)

    def header(self, pid: int, fd: int) -> FdRef | None:
        """:meth:`fd` with one read: the real fdinfo alone (its ``ino`` and ``mnt_id`` say
        whether the fd is ours; the link's name is only :meth:`fd`'s cheap filter). What an
        open of ``fdinfo/<fd>`` costs the host: the ``flags`` may have changed by fcntl."""
        if pid == self._self_pid:
            return None
        return self._header(pid, fd)

    def _header(self, pid: int, fd: int) -> FdRef | None:
        try:
            header = parse_fdinfo_header(self._fdinfo.read(pid, fd).decode())
        except OSError:
            return None
        if header is None:
            return None
        pos, flags, mnt_id, ino = header
        if not self._is_open_ino(ino) or not self._is_our_mount(pid, mnt_id):
            return None
        return FdRef(pid, fd, pos, flags, mnt_id, ino)

    def _probe(self, pid: int, fd: int) -> FdRef | None:
        try:
            target = os.readlink(f"{self._proc}/{pid}/fd/{fd}")
        except OSError:
            return None
        if not _NODE_NAME.search(target.removesuffix(_DELETED)):
            return None
        return self._header(pid, fd)

    def _is_our_mount(self, pid: int, mnt_id: int) -> bool:
        known = self._mnt_ids.get(mnt_id)
        if known is not None:
            return known
        dev = self._our_dev()
        if dev is None:
            return False
        # The mount may live in another mount namespace: ask the holder's own table.
        mine = False
        for path in (f"{self._proc}/self/mountinfo", f"{self._proc}/{pid}/mountinfo"):
            try:
                table = _read(path).decode(errors="replace")
            except OSError:
                continue
            for line in table.splitlines():
                fields = line.split(" ", 3)
                if len(fields) > 2 and fields[0] == str(mnt_id):
                    mine = fields[2] == dev
                    break
            else:
                continue
            break
        self._mnt_ids[mnt_id] = mine
        return mine

    def _our_dev(self) -> str | None:
        if self._fuse_dev is None and self._mountpoint is not None:
            self._fuse_dev = mount_dev(self._mountpoint, proc=self._proc)
        return self._fuse_dev

    def _all_pids(self) -> list[int]:
        try:
            names = os.listdir(self._proc)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    # -- the processes themselves ----------------------------------------------------

    def tgid(self, tid: int) -> int:
        """The process (thread group) of thread ``tid``; FUSE reports the thread."""
        try:
            return int(status_fields(tid, ("Tgid",), self._proc)["Tgid"])
        except (KeyError, ValueError):
            return tid

    def emulated(self, pid: int) -> bool:
        """Whether ``pid`` is a scenario's process: none here, every pid is the host's."""
        return False

    def lineage(self, tid: int) -> list[int] | None:
        """Thread ``tid``'s process and its ancestors, nearest first; None if it is gone."""
        status = status_fields(tid, ("Tgid", "PPid"), self._proc)
        try:
            chain = [int(status["Tgid"])]
            ppid = int(status.get("PPid", "0"))
            while ppid > 0 and ppid not in chain and len(chain) < 64:
                chain.append(ppid)
                ppid = int(status_fields(ppid, ("PPid",), self._proc).get("PPid", "0"))
        except (KeyError, ValueError):
            return None if not status else [tid]
        return chain

    def owner(self, pid: int) -> tuple[int, int]:
        """The uid and gid real ``/proc/<pid>`` is owned by (the process's euid/egid)."""
        st = os.stat(f"{self._proc}/{pid}")
        return st.st_uid, st.st_gid

    def comm(self, pid: int) -> str:
        try:
            return _read(f"{self._proc}/{pid}/comm").decode(errors="replace").rstrip("\n")
        except OSError:
            return ""

    def read(self, pid: int, name: str) -> bytes:
        """The real ``/proc/<pid>/<name>`` (``stat``, ``comm``, ``cmdline``, ``status``,
        ``task/<tid>/stat`` ...)."""
        return _read(f"{self._proc}/{pid}/{name}")

    def readlink(self, pid: int, name: str) -> str:
        """The target of the real ``/proc/<pid>/<name>`` link (``exe``, ``cwd``, ``root``)."""
        return os.readlink(f"{self._proc}/{pid}/{name}")

    def read_host(self, name: str) -> bytes:
        """The host's system-wide ``/proc/<name>`` (``meminfo``, ``uptime`` ...)."""
        return _read(f"{self._proc}/{name}")


def mount_dev(mountpoint: str, *, proc: str = "/proc") -> str | None:
    """``major:minor`` of the filesystem mounted at ``mountpoint`` (the last one stacked)."""
    found = None
    try:
        table = _read(f"{proc}/self/mountinfo").decode(errors="replace")
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split(" ")
        if len(fields) > 4 and _unescape(fields[4]) == mountpoint:
            found = fields[2]
    return found


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space ...)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class ScenarioProcessTable:
    """The host's vdrm fd holders plus a scenario's emulated processes, as one table.

    Emulated pids live above ``PID_MAX_LIMIT`` (see :mod:`vdrm.scenario`), so the two
    never collide and a pid says which side answers. ``owner``, if given, is the uid and
    gid every emulated process is owned by instead of the scenario's (the unprivileged
    runner: its user must be able to enter their ``fd/``; ``status`` keeps the scenario's).
    """

    def __init__(self, real: ProcessTable, scenario: Any, *, owner: tuple[int, int] | None = None):
        self.real = real
        self.scenario = scenario
        self._owner = owner

    def _emulated(self, pid: int) -> Any:
        return self.scenario.processes.get(pid)

    def invalidate(self) -> None:
        self.real.invalidate()

    def pids(self) -> list[int]:
        emulated = [pid for pid, proc in self.scenario.processes.items() if proc.fds]
        # an emulated pid hides a real one of the same number (a replayed trace's pids)
        return [p for p in self.real.pids() if p not in self.scenario.processes] + sorted(emulated)

    def has(self, pid: int) -> bool:
        proc = self._emulated(pid)
        return self.real.has(pid) if proc is None else bool(proc.fds)

    def holds(self, pid: int, ino: int) -> bool:
        # an emulated process's fds are the scenario's own clients: it always holds them
        return self.real.holds(pid, ino) if self._emulated(pid) is None else True

    def holding_fd(self, pid: int, ino: int, hint: int | None = None) -> int | None:
        if self._emulated(pid) is None:
            return self.real.holding_fd(pid, ino, hint)
        return hint if hint is not None else -1  # held, by the scenario (no real fd)

    def holders(self, ino: int) -> list[int]:
        return self.real.holders(ino)

    def tids(self, pid: int) -> list[int]:
        return self.real.tids(pid) if self._emulated(pid) is None else [pid]

    def readlink(self, pid: int, name: str) -> str:
        proc = self._emulated(pid)
        if proc is None:
            return self.real.readlink(pid, name)
        return {"exe": f"/usr/bin/{proc.comm}"}.get(name, "/")

    def read_host(self, name: str) -> bytes:
        return self.real.read_host(name)

    def fds(self, pid: int) -> dict[int, FdRef]:
        proc = self._emulated(pid)
        if proc is None:
            return self.real.fds(pid)
        return {fd: self._ref(pid, efd) for fd, efd in sorted(proc.fds.items())}

    def fd(self, pid: int, fd: int) -> FdRef | None:
        proc = self._emulated(pid)
        if proc is None:
            return self.real.fd(pid, fd)
        efd = proc.fds.get(fd)
        return self._ref(pid, efd) if efd else None

    def header(self, pid: int, fd: int) -> FdRef | None:
        proc = self._emulated(pid)
        if proc is None:
            return self.real.header(pid, fd)
        efd = proc.fds.get(fd)
        return self._ref(pid, efd) if efd else None

    def take_closed(self) -> list[tuple[int, int]]:
        """The emulated ``(pid, fd)`` that scenario events closed since the last call."""
        closed = list(self.scenario.closed_fds)
        self.scenario.closed_fds.clear()
        return closed

    @staticmethod
    def _ref(pid: int, efd: Any) -> FdRef:
        return FdRef(pid, efd.fd, efd.pos, efd.flags, efd.mnt_id, efd.ino, efd.file, efd.target)

    def tgid(self, tid: int) -> int:
        return self.real.tgid(tid)

    def lineage(self, tid: int) -> list[int] | None:
        return self.real.lineage(tid)  # request senders are real threads

    def emulated(self, pid: int) -> bool:
        """Whether ``pid`` is the scenario's: its fds and owner change only through scenario
        events (:meth:`take_closed`), never behind vdrm's back."""
        return self._emulated(pid) is not None

    def owner(self, pid: int) -> tuple[int, int]:
        proc = self._emulated(pid)
        if proc is None:
            return self.real.owner(pid)
        return self._owner or (proc.uid, proc.gid)

    def comm(self, pid: int) -> str:
        proc = self._emulated(pid)
        return self.real.comm(pid) if proc is None else proc.comm

    def read(self, pid: int, name: str) -> bytes:
        proc = self._emulated(pid)
        if proc is None:
            return self.real.read(pid, name)
        name = name.rpartition("/")[2]  # task/<pid>/stat: the one thread is the process
        if name == "cmdline":
            return proc.cmdline_bytes()
        if name == "comm":
            return (proc.comm + "\n").encode()
        render = _EMULATED_FILES.get(name)
        if render is not None:
            text = render(proc)
            return text if isinstance(text, bytes) else text.encode()
        if name in _EMULATED_AS_DAEMON:  # all_pids copies: the daemon's own, as plausible values
            return self.real.read(os.getpid(), name)
        return b""  # maps, wchar ...: an emulated process maps nothing


# The files an emulated process renders itself, in their kernel formats.
_EMULATED_FILES: dict[str, Callable[[Any], "str | bytes"]] = {
    "stat": lambda p: p.stat(), "status": lambda p: p.status(), "statm": lambda p: p.statm(),
    "io": lambda p: p.io(), "environ": lambda p: p.environ(), "cgroup": lambda p: p.cgroup()}
# all_pids files an emulated process shows as the daemon's own (it has no real ones).
_EMULATED_AS_DAEMON = ("mounts", "mountinfo", "limits")
