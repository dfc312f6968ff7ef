"""Soak and fuzz the real mount: many clients, several users, SIGKILLs, fork and dup sharing.

:func:`soak` mounts a daemon (``mount.py --daemon``), then keeps ``workers`` client
processes busy until ``lines`` request lines have been sent. Each worker is forked from
the controller, becomes one of ``uids`` (root and unprivileged users), opens
``renderD128`` (or ``card0``), and writes batches of lines from :mod:`vdrm.fuzz.requests`,
reading one reply per line with ``poll(2)``. Now and then it closes and reopens, dup()s
its fd, or forks a child that shares the fd (an inherited open file: both write and
read it). The controller SIGKILLs a random worker every ``kill_interval`` seconds and
starts another, and probes the mount (``stat`` and a debugfs read) four times a second.

Figures (:class:`Figures`): lines sent and replies read; tracebacks in the daemon log;
``error EIO`` replies and EIO from read/write; hangs (a reply not readable within
:data:`HANG_S` seconds, or a probe slower than that); pages still allocated once every
client is gone (leaked); the daemon's RSS after warm-up and at the end; and replies a
worker of a shared file never saw (another process read them).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vdrm.fuzz import requests

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 10.0  # a reply or probe slower than this is a hang
LINES_PER_WORKER = 1500
UNPRIVILEGED_UIDS = (65534, 65533)  # nobody, and a second uid without a passwd entry


@dataclass
class Figures:
    lines: int = 0
    replies: int = 0
    tracebacks: int = 0
    eio: int = 0
    hangs: int = 0
    kills: int = 0
    workers: int = 0
    shared_missing: int = 0  # replies of a shared file that another process took
    open_refused: int = 0  # opens the permission model refused (card0 for non-video users)
    pages_leaked: int = -1
    clients_left: int = -1
    rss_warm_kib: int = 0
    rss_end_kib: int = 0
    rss_max_kib: int = 0
    probe_max_s: float = 0.0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rss_growth_kib(self) -> int:
        return self.rss_end_kib - self.rss_warm_kib

    def report(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items(), key=lambda kv: -kv[1])[:8])
        return (f"lines {self.lines} ({rate:.0f}/s over {self.seconds:.1f} s), replies {self.replies}, "
                f"workers {self.workers}, SIGKILLs {self.kills}\n"
                f"tracebacks {self.tracebacks}, EIO {self.eio}, hangs {self.hangs}, "
                f"pages leaked {self.pages_leaked}, clients left {self.clients_left}\n"
                f"daemon RSS: {self.rss_warm_kib} KiB after warm-up, {self.rss_end_kib} KiB at the end "
                f"({self.rss_growth_kib:+d} KiB), {self.rss_max_kib} KiB at most\n"
                f"slowest probe {self.probe_max_s * 1000:.0f} ms; shared-file replies another process "
                f"read: {self.shared_missing}; opens refused by permissions: {self.open_refused}\n"
                f"errors: {top}")


# -- one worker ------------------------------------------------------------------------


class _Worker:
    def __init__(self, mnt: Path, rng: random.Random, stats_path: str):
        self.mnt, self.rng, self.stats_path = mnt, rng, stats_path
        self.stats: Counter[str] = Counter()
        self.shared = False

    def save(self) -> None:
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(self.stats), f)
        os.replace(tmp, self.stats_path)

    def open(self) -> int | None:
        node = "card0" if self.rng.random() < 0.2 else "renderD128"
        try:
            return os.open(self.mnt / "dev/dri" / node, os.O_RDWR)
        except PermissionError:
            self.stats["open_refused"] += 1
            return os.open(self.mnt / "dev/dri/renderD128", os.O_RDWR)

    def replies(self, fd: int, expected: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        for _ in range(expected):
            timeout = 500 if self.shared else HANG_S * 1000
            if not poller.poll(timeout):
                self.stats["shared_missing" if self.shared else "hangs"] += 1
                return
            try:
                reply = os.read(fd, 65536)
            except OSError as e:
                if e.errno == errno.EIO:
                    self.stats["eio"] += 1
                self.stats["read_" + errno.errorcode.get(e.errno, str(e.errno))] += 1
                continue
            if not reply:
                self.stats["shared_missing" if self.shared else "empty_read"] += 1
                continue
            self.stats["replies"] += 1
            if reply.startswith(b"error "):
                name = reply.split(b" ", 2)[1].decode("ascii", "replace")
                self.stats["error_" + name] += 1
                if name == "EIO":
                    self.stats["eio"] += 1

    def run(self, quota: int) -> None:
        rng = self.rng
        fd = self.open()
        child = 0
        batches = 0
        while self.stats["lines"] < quota:
            lines = [requests.line(rng) for _ in range(rng.randint(1, 6))]
            try:
                os.write(fd, b"".join(line + b"\n" for line in lines))
            except OSError as e:
                self.stats["eio" if e.errno == errno.EIO else "write_" + errno.errorcode.get(e.errno, "?")] += 1
            self.stats["lines"] += len(lines)
            self.replies(fd, len(lines))
            batches += 1
            if batches % 16 == 0:
                self.save()
            action = rng.random()
            if action < 0.02:
                os.close(fd)
                fd = self.open()
            elif action < 0.03:
                fd2 = os.dup(fd)
                os.close(fd)
                fd = fd2
            elif action < 0.04 and not child and not self.shared:
                child = os.fork()
                if child == 0:  # the child shares the open file, sends a few batches, exits
                    self.stats = Counter()
                    self.shared = True
                    self.stats_path += ".child"
                    quota = rng.randint(10, 60)
                    rng.seed(os.getpid())
                    continue
                self.shared = True
            if child and os.waitpid(child, os.WNOHANG)[0]:
                child = 0
                self.shared = False
        self.save()
        if child:
            os.waitpid(child, 0)


def _worker_main(mnt: Path, seed: int, uid: int, quota: int, stats_path: str) -> None:
    try:
        if uid:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _Worker(mnt, random.Random(seed), stats_path).run(quota)
    except BaseException:  # a worker's own bug: say so, never continue in the controller's code
        import traceback

        traceback.print_exc()
        os._exit(3)
    os._exit(0)


# -- the controller ----------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M)
        return int(m[1]) if m else 0
    except OSError:
        return 0


def _debugfs(mnt: Path, name: str) -> str:
    return (mnt / "sys/kernel/debug/dri/128" / name).read_text()


def _allocated_pages(mnt: Path) -> int:
    m = re.search(r"^allocated_pages (\d+)", _debugfs(mnt, "vdrm-memory"), re.M)
    return int(m[1]) if m else -1


def _clients(mnt: Path) -> int:
    return max(0, len(_debugfs(mnt, "clients").splitlines()) - 1)  # minus the header


def soak(lines: int = 1_000_000, *, workers: int = 12, kill_interval: float = 0.25, seed: int = 0,
         uids: tuple[int, ...] = (0, *UNPRIVILEGED_UIDS), mount_args: tuple[str, ...] = (),
         say=lambda text: None) -> Figures:
    """Run the soak; returns its figures (see the module documentation)."""
    if os.geteuid() != 0:
        uids = (0,)  # cannot become other users: everyone is the caller
    figures = Figures()
    rng = random.Random(seed)
    mnt = Path(tempfile.mkdtemp(prefix="vdrm-fuzz-"))
    os.chmod(mnt, 0o755)
    stats_dir = Path(tempfile.mkdtemp(prefix="vdrm-fuzz-stats-"))
    os.chmod(stats_dir, 0o777)
    log = stats_dir / "daemon.log"
    out = subprocess.run([sys.executable, str(ROOT / "mount.py"), str(mnt), "--daemon", "--log-file", str(log),
                          *mount_args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    m = re.search(r"daemon pid (\d+)", out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"mount failed: {out.stdout}{out.stderr}")
    dpid = int(m[1])
    stop_probe = threading.Event()

    def probe() -> None:
        while not stop_probe.is_set():
            start = time.monotonic()
            try:
                os.stat(mnt / "dmesg")
                _allocated_pages(mnt)
            except OSError:
                pass
            took = time.monotonic() - start
            figures.probe_max_s = max(figures.probe_max_s, took)
            figures.rss_max_kib = max(figures.rss_max_kib, _rss_kib(dpid))
            stop_probe.wait(0.25)

    prober = threading.Thread(target=probe, name="vdrm-fuzz-probe", daemon=True)
    prober.start()
    started = time.monotonic()
    running: dict[int, str] = {}
    serial = 0
    warm = max(1, lines // 10)

    def sent() -> int:
        total = 0
        for path in stats_dir.glob("w*.json*"):
            try:
                total += json.loads(path.read_text()).get("lines", 0)
            except (OSError, ValueError):
                pass
        return total

    try:
        last_kill = time.monotonic()
        while True:
            done = sent()
            if not figures.rss_warm_kib and done >= warm:
                figures.rss_warm_kib = _rss_kib(dpid)
            if done >= lines and not running:
                break
            while done < lines and len(running) < workers:
                serial += 1
                path = str(stats_dir / f"w{serial}.json")
                pid = os.fork()
                if pid == 0:
                    stop_probe.set()
                    _worker_main(mnt, rng.getrandbits(32) + serial, uids[serial % len(uids)],
                                 LINES_PER_WORKER, path)
                running[pid] = path
                figures.workers += 1
            if running and time.monotonic() - last_kill >= kill_interval:
                victim = rng.choice(list(running))
                os.kill(victim, signal.SIGKILL)
                figures.kills += 1
                last_kill = time.monotonic()
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                running.pop(pid, None)
                if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3:
                    figures.errors["worker_crash"] = figures.errors.get("worker_crash", 0) + 1
            if done >= lines:
                for pid in running:  # enough lines: the rest are killed, part of the storm
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
            say(f"\r{done} lines, {len(running)} workers, {figures.kills} SIGKILLs ")
        figures.seconds = time.monotonic() - started
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_clients(mnt) or _allocated_pages(mnt)):
            time.sleep(0.2)  # closes of killed clients, jobs timing out (at most 500 ms each)
        figures.clients_left = _clients(mnt)
        figures.pages_leaked = _allocated_pages(mnt)
        figures.rss_end_kib = _rss_kib(dpid)
    finally:
        stop_probe.set()
        prober.join(5)
        for pid in running:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        try:
            os.kill(dpid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(100):
            if not os.path.ismount(mnt):
                break
            time.sleep(0.05)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        try:
            os.rmdir(mnt)
        except OSError:
            pass
    totals: Counter[str] = Counter()
    for path in stats_dir.glob("w*.json*"):
        try:
            totals.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    figures.lines = totals.pop("lines", 0)
    figures.replies = totals.pop("replies", 0)
    figures.eio = totals.pop("eio", 0)
    figures.hangs = totals.pop("hangs", 0) + (1 if figures.probe_max_s > HANG_S else 0)
    figures.shared_missing = totals.pop("shared_missing", 0)
    figures.open_refused = totals.pop("open_refused", 0)
    figures.errors.update(totals)
    text = log.read_text(errors="replace") if log.exists() else ""
    figures.tracebacks = text.count("Traceback (most recent call last)")
    if figures.tracebacks:
        figures.errors["first_traceback_at"] = text.index("Traceback")
        (stats_dir / "KEEP").write_text("tracebacks found\n")
    else:
        for path in stats_dir.iterdir():
            path.unlink()
        stats_dir.rmdir()
    return figures


def as_json(figures: Figures) -> str:
    data = asdict(figures)
    data["rss_growth_kib"] = figures.rss_growth_kib
    return json.dumps(data, indent=1)
