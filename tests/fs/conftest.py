"""Fixtures for the FUSE side.

Two kinds of test live here:

- pure tests of the tree (``test_tree.py``) against :class:`FakeDevice` and
  :class:`FakeProcesses`, which stand in for the engine and the host's ``/proc``;
- real-mount tests, which start ``mount.py`` as a subprocess on a fresh directory, drive
  it with bash and coreutils the way a user would, and always unmount. The session's
  shared mount (:func:`vdrm_mount`) fails the test during which the daemon logged a
  traceback (a request that reached the EIO edge).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from vdrm.drm.device import Driver
from vdrm.panfrost.releases import PANFROST
from vdrm.drm.gpu import SysfsAttribute
from vdrm.drm.ioctl import Arg, Ioctl
from vdrm.drm.timeline import Timeline
from vdrm.errors import InvalidArgument, WouldBlock
from vdrm.fs.procfs import FdRef
from vdrm.kernel.clock import VirtualClock
from vdrm.kernel.printk import KernelLog

ROOT = Path(__file__).resolve().parents[2]
MOUNT_PY = ROOT / "mount.py"
TIMEOUT = 30  # seconds any one shell command may take


# -- stand-ins for the pure tree tests -------------------------------------------------


@dataclass(eq=False)
class FakeFile:
    dev: "FakeDevice"
    minor: int
    client_id: int
    pid: int
    comm: str
    uid: int
    requests: list[str] = field(default_factory=list)
    was_master: bool = False

    def update_pid(self, pid: int, comm: str) -> bool:
        changed = pid != self.pid and not self.was_master
        if changed:
            self.pid, self.comm = pid, comm
        return changed


def _echo(file: FakeFile, text: str) -> dict[str, Any]:
    file.requests.append(text)
    return {"text": text}


def _wait(file: FakeFile, until: int) -> dict[str, Any]:
    clock = file.dev.clock
    if clock.now_ns() < until:
        raise WouldBlock(until)
    return {"at": clock.now_ns()}


def _boom(file: FakeFile) -> dict[str, Any]:
    raise RuntimeError("a bug")


class _Driver618(Driver):
    def has(self, feature: str) -> bool:
        return PANFROST.has(feature, (6, 18))


class FakeDevice:
    """The part of the ``GpuDevice`` interface the tree uses, with visible bookkeeping."""

    platform_device = "fde60000.gpu"
    nodes = (("card0", 0, "card"), ("renderD128", 128, "render"))
    minors = (0, 128)
    driver_name = "panfrost"

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.log = KernelLog(self.clock)
        self.services = self  # one GPU: its own clock and log
        self.timeline = Timeline(self.clock)
        self.profiling = False
        self.files: dict[int, FakeFile] = {}
        self.drm = self  # the tree lists clients through device.drm.files
        self.driver = _Driver618()  # the release-dependent rows of the tree as in 6.18
        self.released: list[FakeFile] = []
        self._next_id = 1
        self.ioctls = {
            "ECHO": Ioctl("ECHO", (Arg("text", "str"),), _echo, "Echo text back."),
            "WAIT": Ioctl("WAIT", (Arg("until", "u64"),), _wait, "Wait for the clock."),
            "BOOM": Ioctl("BOOM", (), _boom, "A handler with a bug."),
        }

    def open(self, minor: int, *, pid: int = 0, comm: str = "", uid: int = 0) -> FakeFile:
        file = FakeFile(self, minor, self._next_id, pid, comm, uid)
        self._next_id += 1
        self.files[file.client_id] = file
        return file

    def release(self, file: FakeFile) -> None:
        del self.files[file.client_id]
        self.released.append(file)

    def fdinfo(self, file: FakeFile, *, pos: int = 0, flags: int = 0, mnt_id: int = 0, ino: int = 0) -> str:
        return (f"pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{mnt_id}\nino:\t{ino}\n"
                f"drm-driver:\tpanfrost\ndrm-client-id:\t{file.client_id}\n")

    def update(self) -> None:
        pass

    def uevent(self) -> str:
        return "DRIVER=panfrost\n"

    def debugfs_attributes(self) -> dict[str, SysfsAttribute]:
        return {}

    def sysfs_attributes(self) -> dict[str, SysfsAttribute]:
        return {"profiling": SysfsAttribute(lambda: "1\n" if self.profiling else "0\n", self.write_profiling)}

    def write_profiling(self, text: str) -> None:
        value = text.strip()
        if value not in ("0", "1"):
            raise InvalidArgument(f"{value!r} is not a boolean")
        self.profiling = value == "1"

    def debugfs_files(self) -> dict[str, Callable[[], str]]:
        return {"clients": lambda: "".join(f"{f.client_id}\n" for f in self.files.values()),
                "gems": lambda: "no objects\n"}


class FakeProcesses:
    """The host's processes as ``ProcessTable`` reports them, set up by the test.

    ``hold(pid, fd, ino)`` makes ``pid`` hold ``fd`` on DRM node inode ``ino``; as in the
    real table, an fd counts only while the tree has that inode open.
    """

    def __init__(self) -> None:
        self.is_open_ino: Callable[[int], bool] = lambda ino: True
        self.held: dict[int, dict[int, FdRef]] = {}
        self.owners: dict[int, tuple[int, int]] = {}
        self.threads: dict[int, int] = {}  # tid -> tgid
        self.invalidations = 0
        self.all_pids = False  # every process in owners is listed, as ProcessTable(all_pids=True)

    def spawn(self, pid: int, *, uid: int = 0, threads: tuple[int, ...] = ()) -> None:
        """A process holding no vdrm fd (seen only with ``all_pids``)."""
        self.owners.setdefault(pid, (uid, uid))
        for tid in threads:
            self.threads[tid] = pid

    def hold(self, pid: int, fd: int, ino: int, *, flags: int = 0o100002, uid: int = 0) -> None:
        self.held.setdefault(pid, {})[fd] = FdRef(pid, fd, 0, flags, 42, ino)
        self.owners.setdefault(pid, (uid, uid))

    def close(self, pid: int, fd: int) -> None:
        self.held.get(pid, {}).pop(fd, None)

    def invalidate(self) -> None:
        self.invalidations += 1

    def fds(self, pid: int) -> dict[int, FdRef]:
        return {fd: ref for fd, ref in sorted(self.held.get(pid, {}).items()) if self.is_open_ino(ref.ino)}

    def fd(self, pid: int, fd: int) -> FdRef | None:
        return self.fds(pid).get(fd)

    def holds(self, pid: int, ino: int) -> bool:
        return any(ref.ino == ino for ref in self.fds(pid).values())

    def holding_fd(self, pid: int, ino: int, hint: int | None = None) -> int | None:
        return next((fd for fd, ref in self.fds(pid).items() if ref.ino == ino), None)

    def holders(self, ino: int) -> list[int]:
        return [pid for pid in sorted(self.held) if self.holds(pid, ino)]

    def pids(self) -> list[int]:
        if self.all_pids:
            return sorted(self.owners)
        return [pid for pid in sorted(self.held) if self.fds(pid)]

    def has(self, pid: int) -> bool:
        return pid in self.owners if self.all_pids else bool(self.fds(pid))

    def tids(self, pid: int) -> list[int]:
        return sorted([pid] + [tid for tid, tgid in self.threads.items() if tgid == pid and tid != pid]) \
            if pid in self.owners else []

    def readlink(self, pid: int, name: str) -> str:
        if pid not in self.owners:
            raise FileNotFoundError(errno.ENOENT, "no such process")
        return f"/host/{pid}/{name}"

    def read_host(self, name: str) -> bytes:
        return f"host {name}\n".encode()

    def tgid(self, tid: int) -> int:
        return self.threads.get(tid, tid)

    def emulated(self, pid: int) -> bool:
        return False  # every fake process stands for a host process

    def lineage(self, tid: int) -> list[int] | None:
        pid = self.tgid(tid)
        return [pid] if pid in self.owners else None

    def owner(self, pid: int) -> tuple[int, int]:
        if pid not in self.owners:
            raise FileNotFoundError(errno.ENOENT, "no such process")
        return self.owners[pid]

    def comm(self, pid: int) -> str:
        return f"proc{pid}"

    def read(self, pid: int, name: str) -> bytes:
        if pid not in self.owners:
            raise FileNotFoundError(errno.ENOENT, "no such process")
        return f"{pid} ({self.comm(pid)}) {name}\n".encode()


# -- real mounts ----------------------------------------------------------------------------


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point now (by /proc/self/mountinfo, never by stat)."""
    text = Path("/proc/self/mountinfo").read_text()
    return any(line.split(" ")[4] == str(path) for line in text.splitlines())


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def make_mountpoint() -> Path:
    """A fresh ``mnt`` directory other users can reach (pytest's tmp_path is 0700 root).

    Its parent holds the daemon's log too; :func:`remove_mountpoint` deletes both.
    """
    base = Path(tempfile.mkdtemp(prefix="vdrm-test-"))
    base.chmod(0o755)
    path = base / "mnt"
    path.mkdir(mode=0o755)
    return path


def remove_mountpoint(path: Path) -> None:
    lazy_unmount(path)
    shutil.rmtree(path.parent, ignore_errors=True)


def lazy_unmount(path: Path) -> None:
    if mounted(path):
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=TIMEOUT)


@dataclass
class Daemon:
    """A vdrm daemon serving ``path``; ``log`` is its --log-file."""

    path: Path
    log: Path
    pid: int
    proc: subprocess.Popen | None = None  # set when started in the foreground
    _log_offset: int = 0

    def sh(self, script: str, *, check: bool = True, timeout: float = TIMEOUT, **env: str) -> subprocess.CompletedProcess:
        """Run a bash script with ``$MNT`` set to the mount point; stdout/stderr as text."""
        full_env = {**os.environ, "MNT": str(self.path), **env}
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=full_env, text=True,
                                capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"script failed ({result.returncode}):\n{script}\n"
                                 f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}")
        return result

    def new_log(self) -> str:
        """What the daemon logged since the last call."""
        data = self.log.read_bytes() if self.log.exists() else b""
        text = data[self._log_offset:].decode(errors="replace")
        self._log_offset = len(data)
        return text

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie child of ours is dead too
            return Path(f"/proc/{self.pid}/stat").read_text().split(") ")[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the daemon and wait until it is gone and the mount with it."""
        if self.alive():
            os.kill(self.pid, sig)
        if self.proc is not None:
            self.proc.wait(timeout=timeout)
        wait_for(lambda: not self.alive(), timeout, f"daemon {self.pid} to exit")
        if sig != signal.SIGKILL:
            wait_for(lambda: not mounted(self.path), timeout, f"{self.path} to be unmounted")


def start_daemon(path: Path, *args: str, log: Path | None = None) -> Daemon:
    """``mount.py PATH --daemon``: returns once the mount is ready."""
    log = log or path.with_name("daemon.log")
    result = subprocess.run([sys.executable, str(MOUNT_PY), str(path), "--daemon", "--log-file", str(log),
                             "--log-level", "info", *args],
                            cwd=ROOT, text=True, capture_output=True, timeout=TIMEOUT)
    if result.returncode != 0:
        raise AssertionError(f"mount.py --daemon failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    m = re.search(r"daemon pid (\d+)", result.stdout)
    assert m, result.stdout
    assert mounted(path), f"{path} is not mounted after mount.py --daemon returned"
    daemon = Daemon(path, log, int(m.group(1)))
    daemon.startup_output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return daemon


def tracebacks(log_text: str) -> list[str]:
    """The failure reports (with tracebacks) in a stretch of the daemon's log."""
    return [chunk for chunk in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log_text)
            if "Traceback" in chunk or "request failed" in chunk]


@pytest.fixture(scope="session")
def vdrm_mount() -> Iterator[Daemon]:
    """One daemon for the session, started with --daemon and always unmounted."""
    path = make_mountpoint()
    daemon = start_daemon(path)
    try:
        yield daemon
    finally:
        try:
            daemon.stop()
        finally:
            lazy_unmount(path)
            if daemon.alive():
                os.kill(daemon.pid, signal.SIGKILL)
            remove_mountpoint(path)


@pytest.fixture
def mnt(vdrm_mount: Daemon) -> Iterator[Daemon]:
    """The shared mount; the test fails if the daemon logged a traceback meanwhile."""
    vdrm_mount.new_log()
    yield vdrm_mount
    assert vdrm_mount.alive(), "the vdrm daemon died"
    failures = tracebacks(vdrm_mount.new_log())
    if failures:
        pytest.fail("the daemon logged a traceback during this test:\n" + "\n".join(failures), pytrace=False)


@pytest.fixture
def own_mount() -> Iterator[Callable[..., Daemon]]:
    """Start private daemons (for lifecycle tests); all are stopped and unmounted after."""
    started: list[Daemon] = []
    paths: list[Path] = []

    def start(*args: str, path: Path | None = None) -> Daemon:
        if path is None:
            path = make_mountpoint()
            paths.append(path)
        daemon = start_daemon(path, *args)
        started.append(daemon)
        return daemon

    start.paths = paths  # type: ignore[attr-defined]
    yield start
    for daemon in started:
        if daemon.alive():
            os.kill(daemon.pid, signal.SIGKILL)
        lazy_unmount(daemon.path)
    for path in paths:
        remove_mountpoint(path)
