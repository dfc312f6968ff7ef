"""What every part of the benchmark shares: timing, side-by-side ratios, mounts to measure.

Timing follows ``timeit``: a rate is operations over wall time of one batch, repeated,
and the median taken. A comparison runs both sides alternately, batch by batch, and
reports the median of the per-batch ratios, so drift on a shared machine hits both.

Mounts are subprocesses, always unmounted: :class:`VdrmMount` is
``python mount.py MNT --daemon --clock virtual`` (plus options), :class:`CeilingMount`
is :mod:`vdrm.bench.ceiling`. Both stop with SIGTERM, and fall back to SIGKILL and a
lazy unmount.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
MOUNT_PY = ROOT / "mount.py"
START_TIMEOUT = 300.0  # seconds: a 10,000-client scenario takes a while to build


def rate(op: Callable[[], Any], *, batch: int) -> float:
    """Operations per second of one batch of ``batch`` calls."""
    start = time.perf_counter()
    for _ in range(batch):
        op()
    return batch / (time.perf_counter() - start)


def _settled_rate(op: Callable[[], Any], batch: int, settle: int) -> float:
    for _ in range(settle):
        op()
    return rate(op, batch=batch)


def median_rate(op: Callable[[], Any], *, batch: int, repeats: int) -> float:
    return statistics.median(rate(op, batch=batch) for _ in range(repeats))


@dataclass
class Comparison:
    """Two rates measured side by side; ``ratio`` is the median of per-batch a/b."""

    a: float  # median rate (ops/s) of the measured side
    b: float  # median rate of the reference side
    ratio: float
    samples: list[tuple[float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.a, "reference_rate": self.b, "ratio": self.ratio,
                "samples": [list(s) for s in self.samples]}


def compare(a: Callable[[], Any], b: Callable[[], Any], *, batch: int, repeats: int,
            warmup: int = 1) -> Comparison:
    """Rates of ``a`` and ``b`` in alternating batches; the ratio a/b, median of repeats.

    Each timed batch of 10 calls or more follows a tenth of a batch of untimed calls of
    the same side: switching sides costs the first calls after the switch (a process
    that slept wakes up, caches hold the other side's data), and on this project's VM a
    2 MiB fault timed right after round trips measured 68-98 us where the same code
    measured 51-57 us right after faults. The settling calls keep that cost out of
    both sides' figures.
    """
    for _ in range(warmup):
        rate(b, batch=max(1, batch // 4))
        rate(a, batch=max(1, batch // 4))
    settle = batch // 10
    samples = []
    for i in range(repeats):
        if i % 2:
            ra = _settled_rate(a, batch, settle)
            rb = _settled_rate(b, batch, settle)
        else:
            rb = _settled_rate(b, batch, settle)
            ra = _settled_rate(a, batch, settle)
        samples.append((ra, rb))
    return Comparison(statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples),
                      statistics.median(s[0] / s[1] for s in samples), samples)


# -- CPU placement ----------------------------------------------------------------------

# On a small VM the round-trip rate depends most on whether the client and the daemon
# share a core (the notes measured 0.57-0.75 of C libfuse across two cores, 0.14-0.18 on
# one). To compare like with like, every daemon is pinned to the last CPU and the
# benchmark (and the client processes it forks) to the others, when there are two or more.


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


_ALL_CPUS = _cpus()
DAEMON_CPUS = set(_ALL_CPUS[-1:]) if len(_ALL_CPUS) >= 2 else set()
CLIENT_CPUS = set(_ALL_CPUS[:-1]) if len(_ALL_CPUS) >= 2 else set()


def pin_clients() -> None:
    """Pin this process (and what it forks later) to the client CPUs."""
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)


def pin_daemon(pid: int) -> None:
    """Pin every thread of daemon ``pid`` to the daemon CPU."""
    if not DAEMON_CPUS:
        return
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, DAEMON_CPUS)
        except OSError:
            pass


def placement() -> dict[str, Any]:
    return {"client_cpus": sorted(CLIENT_CPUS), "daemon_cpus": sorted(DAEMON_CPUS)}


# -- mounts -----------------------------------------------------------------------------


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == str(path) for line in f)


def _lazy_unmount(path: Path) -> None:
    if _mounted(path):
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _new_mountpoint(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    path = base / "mnt"
    path.mkdir(mode=0o755)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _stop(pid: int, path: Path, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _lazy_unmount(path)


class VdrmMount:
    """``mount.py MNT --daemon --clock virtual [args]`` for the length of a ``with``."""

    def __init__(self, *args: str, scenario: str | None = None):
        self.args = list(args)
        if scenario is not None:
            self.args += ["--scenario", scenario]
        elif "--clock" not in self.args:
            self.args += ["--clock", "virtual"]
        self.path: Path | None = None
        self.pid = 0
        self.start_seconds = 0.0

    def __enter__(self) -> "VdrmMount":
        self.path = _new_mountpoint("vdrm-bench-")
        log = self.path.with_name("daemon.log")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(MOUNT_PY), str(self.path), "--daemon",
                                 "--log-file", str(log), "--log-level", "warning", *self.args],
                                cwd=ROOT, text=True, capture_output=True, timeout=START_TIMEOUT)
        self.start_seconds = time.perf_counter() - start
        m = re.search(r"daemon pid (\d+)", result.stdout)
        if result.returncode != 0 or m is None:
            shutil.rmtree(self.path.parent, ignore_errors=True)
            raise RuntimeError(f"mount.py failed ({result.returncode}): {result.stdout}{result.stderr}")
        self.pid = int(m.group(1))
        pin_daemon(self.pid)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.path is not None
        try:
            _stop(self.pid, self.path)
        finally:
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.pid).memory_info().rss

    def log_text(self) -> str:
        assert self.path is not None
        log = self.path.with_name("daemon.log")
        return log.read_text(errors="replace") if log.exists() else ""


class CeilingMount:
    """:mod:`vdrm.bench.ceiling` serving a mount point for the length of a ``with``."""

    def __init__(self, *, pids: int = 0, size: int = 400):
        self.pids = pids
        self.size = size
        self.path: Path | None = None
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "CeilingMount":
        self.path = _new_mountpoint("vdrm-ceiling-")
        self.proc = subprocess.Popen([sys.executable, "-m", "vdrm.bench.ceiling", str(self.path),
                                      "--pids", str(self.pids), "--size", str(self.size)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.__exit__()
            raise RuntimeError(f"the ceiling filesystem did not mount: {line}{err}")
        pin_daemon(self.proc.pid)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.path is not None and self.proc is not None
        try:
            _stop(self.proc.pid, self.path, self.proc)
        finally:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            shutil.rmtree(self.path.parent, ignore_errors=True)


def cpu_ticks() -> tuple[int, int]:
    """``(steal, total)`` clock ticks of all CPUs so far (``/proc/stat``), or (0, 0).

    Steal is time the hypervisor gave this VM's CPUs to someone else: on a shared VM it
    is what makes two runs of the same code differ, so every part reports its share."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time stolen between two :func:`cpu_ticks` readings (0 if unknown)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(), "kernel": platform.release(),
            "load_average": load, "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **placement()}
