"""Building a scenario on a device and playing its timeline.

:class:`Scenario` opens the scenario's clients, creates their BOs, shares them, faults in
heap residency and applies madvise, all through the same ioctl handlers a real client
reaches, so a scenario exercises exactly the code real clients do. Jobs and events are
put on the device's timeline (:meth:`PanfrostDevice.schedule`) at ``clock start + at``;
a repeated job schedules its next run when it is submitted, so a long timeline costs
nothing until the clock gets there.

Emulated processes (:class:`EmulatedProcess`) carry what ``/proc/<pid>`` shows for them:
``stat``, ``status``, ``comm``, ``cmdline`` and their DRM fds with the header values of
fdinfo (``pos``, ``flags``, ``mnt_id``, ``ino``). All opens of one node share its inode
number, as with a real character device (``renderD128`` is 531 and ``card0`` 530, the
numbers of the kernel documentation's example).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdrm.drm.file import DrmFile
from vdrm.errors import VdrmError
from vdrm.kernel.printk import KERN_INFO
from vdrm.panfrost import ioctl as pf
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice
from vdrm.panfrost.gem import SZ_2M
from vdrm.scenario.load import DEFAULT_FD_FLAGS, ScenarioSpec

NODE_INO = {0: 530, 128: 531}
NODE_PATH = {0: "/dev/dri/card0", 128: "/dev/dri/renderD128"}
CLK_TCK = 100


@dataclass
class EmulatedFd:
    """One fd of an emulated process: the client behind it and its fdinfo header values."""

    fd: int
    file: DrmFile
    flags: int
    mnt_id: int
    pos: int = 0

    @property
    def ino(self) -> int:
        return NODE_INO[self.file.minor]

    @property
    def target(self) -> str:
        return NODE_PATH[self.file.minor]


@dataclass
class EmulatedProcess:
    """A process that exists only in the scenario, with ``/proc/<pid>`` contents."""

    pid: int
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    uid: int
    gid: int
    start_ns: int
    fds: dict[int, EmulatedFd] = field(default_factory=dict)

    def stat(self) -> str:
        """``/proc/<pid>/stat``: 52 fields, ``pid (comm) state ppid ...``."""
        starttime = self.start_ns * CLK_TCK // 1_000_000_000
        fields = [str(self.pid), f"({self.comm})", "S", str(self.ppid), str(self.pid), str(self.pid),
                  "0", "-1", "4194560", "0", "0", "0", "0", "0", "0", "0", "0", "20", "0", "1", "0",
                  str(starttime), "0", "0", "18446744073709551615"] + ["0"] * 27
        return " ".join(fields) + "\n"

    def status(self) -> str:
        u, g = self.uid, self.gid
        return (f"Name:\t{self.comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{self.pid}\nNgid:\t0\n"
                f"Pid:\t{self.pid}\nPPid:\t{self.ppid}\nTracerPid:\t0\nUid:\t{u}\t{u}\t{u}\t{u}\n"
                f"Gid:\t{g}\t{g}\t{g}\t{g}\nFDSize:\t64\nGroups:\t\nThreads:\t1\n")

    def cmdline_bytes(self) -> bytes:
        return b"".join(a.encode() + b"\0" for a in self.cmdline)


class Scenario:
    """A :class:`ScenarioSpec` built on a fresh virtual-clock device."""

    def __init__(self, spec: ScenarioSpec):
        self.spec = spec
        d = spec.device
        self.device = PanfrostDevice(DeviceConfig(
            kernel=d.kernel, heap_backing=d.heap_backing, ram_size=d.ram_size, as_slots=d.as_slots,
            clock="virtual", seed=d.seed, fragmentation=d.fragmentation,
            first_client_id=d.first_client_id, profiling=d.profiling,
            clock_start_ns=spec.clock_start, size_units=d.size_units, fdinfo_revision=d.fdinfo_revision,
            job_timeout_ns=d.job_timeout_ns))
        drv = self.device.driver
        for slot, hz in d.maxfreq.items():
            drv.max_freq_hz[slot] = drv.cur_freq_hz[slot] = hz
        for slot, hz in d.curfreq.items():
            drv.cur_freq_hz[slot] = hz
        self.clients: dict[str, DrmFile] = {}
        self.handles: dict[tuple[str, str], int] = {}  # (client id, BO id) -> handle
        self.processes: dict[int, EmulatedProcess] = {}
        self._build()

    # -- building -------------------------------------------------------------------------

    def _opener(self, client_id: str) -> Any:
        for proc in self.spec.processes:
            if client_id in proc.fds.values():
                return proc
        return None

    def _build(self) -> None:
        spec = self.spec
        for c in spec.clients:
            opener = self._opener(c.id)
            file = self.device.open(c.minor, pid=opener.pid if opener else 0,
                                    comm=opener.comm if opener else "", uid=opener.uid if opener else 0)
            if c.name:
                file.set_client_name(c.name)
            usage = file.driver_priv.usage
            for slot, (ns, cycles) in c.usage.items():
                usage.elapsed_ns[slot], usage.cycles[slot] = ns, cycles
            self.clients[c.id] = file
        for c in spec.clients:
            file = self.clients[c.id]
            for bo in c.bos:
                handle = pf.create_bo(file, bo.size, bo.flags, 0)["handle"]
                self.handles[(c.id, bo.id)] = handle
                if bo.label is not None:
                    pf.set_label_bo(file, handle, 0, bo.label)
        for c in spec.clients:
            for bo in c.bos:
                if not bo.share_with:
                    continue
                from vdrm.drm import gem

                name = gem.flink(self.clients[c.id], self.handles[(c.id, bo.id)])
                for other in bo.share_with:
                    self.handles[(other, bo.id)] = gem.gem_open(self.clients[other], name)[0]
        for c in spec.clients:
            for bo in c.bos:
                base = self.va(c.id, bo.id)
                for block in range(bo.resident // SZ_2M):
                    pf.fault(self.clients[c.id], base + block * SZ_2M, 0xC3, 3, 0)
                if bo.madvise:
                    pf.madvise(self.clients[c.id], self.handles[(c.id, bo.id)], 1 if bo.madvise == "DONTNEED" else 0)
                if bo.purged:
                    handle = self.handles[(c.id, bo.id)]
                    self.device.driver.purge(self.clients[c.id].handles.lookup(handle))
        for p in spec.processes:
            proc = EmulatedProcess(p.pid, p.ppid, p.comm, p.cmdline, p.uid, p.gid, spec.clock_start)
            for fd, client_id in sorted(p.fds.items()):
                proc.fds[fd] = EmulatedFd(fd, self.clients[client_id], p.fd_flags.get(fd, DEFAULT_FD_FLAGS),
                                          spec.mnt_id)
            self.processes[p.pid] = proc
        start = spec.clock_start
        for job in spec.jobs:
            self.device.schedule(start + job.at, lambda job=job: self._submit(job, job.count))
        for event in spec.events:
            self.device.schedule(start + event.at, lambda event=event: self._event(event))
        self.device.run_due()

    def va(self, client_id: str, bo_id: str) -> int:
        """The GPU VA of BO ``bo_id`` in client ``client_id``."""
        file = self.clients[client_id]
        bo = file.handles.lookup(self.handles[(client_id, bo_id)])
        return bo.mapping_for(file.driver_priv.mmu).iova

    # -- the timeline ---------------------------------------------------------------------

    def _submit(self, job, remaining: int) -> None:
        file = self.clients.get(job.client)
        if file is None or file.closed:
            return
        handles = [self.handles[(job.client, b)] for b in job.bos]
        touch = [(self.va(job.client, bo) if bo else 0) + off for bo, off in job.touch]
        pf.submit(file, 1, handles, 1 if job.engine == 0 else 0, 0, 0, 0, job.engine, job.duration, touch)
        if remaining > 1:
            at = self.device.clock.now_ns() + job.every
            self.device.schedule(at, lambda: self._submit(job, remaining - 1))

    def _event(self, event) -> None:
        dev = self.device
        file = self.clients.get(event.client) if event.client else None
        if event.client and (file is None or file.closed):
            return
        if event.kind == "engine_skew":
            usage = file.driver_priv.usage
            for slot, delta in event.value.items():
                usage.elapsed_ns[slot] = max(0, usage.elapsed_ns[slot] + delta)
        elif event.kind == "profiling":
            dev.driver.profiling = event.value
        elif event.kind == "curfreq":
            for slot, hz in event.value.items():
                dev.driver.cur_freq_hz[slot] = hz
        elif event.kind == "close_client":
            for proc in self.processes.values():
                for fd in [fd for fd, efd in proc.fds.items() if efd.file is file]:
                    del proc.fds[fd]
            dev.release(file)
        elif event.kind == "madvise":
            handle = self.handles[(event.client, event.value["bo"])]
            pf.madvise(file, handle, 1 if event.value["madv"] == "DONTNEED" else 0)
        elif event.kind == "fault":
            bo, off = event.value
            try:
                pf.fault(file, (self.va(event.client, bo) if bo else 0) + off, 0xC3, 3, 0)
            except VdrmError as err:  # a terminal fault is part of the story, not an error
                dev.log.printk(KERN_INFO, f"vdrm: scenario fault at line {event.line}: {err}")
