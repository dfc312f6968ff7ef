"""The replay driver: a recorded machine's DRM clients and nodes, played back byte for byte.

A trace (:mod:`vdrm.record`) holds samples of every DRM client's fdinfo text, its owner's
``stat``/``status``/``comm``/``cmdline``, which fds share each client, and each DRM node's
sysfs identity. :func:`load` builds from it a :class:`~vdrm.drm.gpu.Machine` of
:class:`ReplayDevice` GPUs (one per recorded device, with the recorded nodes, minors,
device name, ``uevent`` and attributes) and a :class:`Replay`, which plays the samples:
the first is shown at mount time and each step of the virtual clock, whatever its length,
shows the next (the last one stays, and then reads as idle over each further step). There is no emulation behind it, so any driver's
text plays back: amdgpu, i915, xe, msm, v3d, panfrost, panthor or one vdrm has never seen.

The FUSE side is unchanged: a :class:`Replay` looks to it like a scenario (its
``processes`` are the recorded ones, their fds carry the recorded header values), and each
:class:`ReplayDevice` is a GPU behind the driver-neutral interface. Its ``fdinfo`` is the
recorded text of that very (pid, fd), header lines included; its ``truth`` is what a
correct parser computes from the recorded texts of the two samples around the last step
(:func:`parse_fdinfo`): per engine the busy-time delta over the *recorded* interval
divided by the engine's capacity (or, where a driver prints only cycles, ``drm-cycles``
over ``drm-total-cycles``, as xe), and memory per region and category in bytes.

Where the replay differs from the machine it recorded, by design:

- a recorded device's directory is served at ``sys/devices/platform/<name>`` whatever
  bus it sat on, so ``sys/class/drm/<node>`` links differ from a PCI machine's (the
  recorded target is kept in the trace); the ``device`` link's basename, the device's
  ``uevent`` and its attributes (PCI ids, ``profiling``) are the recorded ones, read-only;
- debugfs holds only vdrm's own files (``vdrm-clock``, ``vdrm-clients/``), and ``dmesg`` is
  empty: neither is recorded;
- a recorded pid equal to a live one hides the live one in ``proc/`` (the runner's tree);
- a node opened on the replay mount is a new, empty client (ids above the recorded ones).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from vdrm.drm.device import ClientIdCounter, Driver, DrmDevice
from vdrm.drm.file import DrmFile
from vdrm.drm.gpu import DeviceConfig, GpuDevice, Machine, Services, SysfsAttribute
from vdrm.drm.ioctl import CORE_IOCTLS, build_table
from vdrm.errors import InvalidArgument

TRACE_FORMAT = "vdrm-trace/1"
_NODE = re.compile(r"(card|renderD)(\d+)")
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_MEMORY = re.compile(r"drm-(total|shared|resident|purgeable|active|memory)-(.+)")
_FIELDS = {"pos": 10, "flags": 8, "mnt_id": 10, "ino": 10}


class TraceError(InvalidArgument):
    """A trace file that is not a vdrm trace, or is inconsistent."""


# -- reading fdinfo text (what a correct parser does) ----------------------------------------


def parse_fdinfo(text: str) -> dict[str, Any]:
    """The DRM keys of one fdinfo text, as drm-usage-stats.rst defines them.

    ``engines``: per engine ``busy_ns``, ``cycles``, ``total_cycles``, ``capacity`` (1 when
    absent), ``maxfreq_hz``, ``curfreq_hz`` where printed; ``memory``: bytes per region
    and category (``drm-memory-<region>`` is the old name of ``resident``).
    """
    out: dict[str, Any] = {"engines": {}, "memory": {}}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key.startswith("drm-"):
            continue
        number, _, unit = value.partition(" ")
        try:
            n = int(number)
        except ValueError:
            n = None
        if key in ("drm-driver", "drm-pdev", "drm-client-name"):
            out[key[4:]] = value
        elif key == "drm-client-id" and n is not None:
            out["client_id"] = n
        elif n is None:
            continue
        elif key.startswith("drm-engine-capacity-"):
            out["engines"].setdefault(key[20:], {})["capacity"] = n
        elif key.startswith("drm-engine-") and unit == "ns":
            out["engines"].setdefault(key[11:], {})["busy_ns"] = n
        elif key.startswith("drm-total-cycles-"):
            out["engines"].setdefault(key[17:], {})["total_cycles"] = n
        elif key.startswith("drm-cycles-"):
            out["engines"].setdefault(key[11:], {})["cycles"] = n
        elif key.startswith(("drm-maxfreq-", "drm-curfreq-")):
            scale = {"Hz": 1, "KHz": 1000, "MHz": 1000_000}.get(unit, 1)
            out["engines"].setdefault(key[12:], {})[key[4:11] + "_hz"] = n * scale
        elif m := _MEMORY.fullmatch(key):
            category = "resident" if m.group(1) == "memory" else m.group(1)
            out["memory"].setdefault(m.group(2), {})[category] = n * _UNITS.get(unit, 1)
    return out


def _header(text: str) -> dict[str, int]:
    """``pos``, ``flags``, ``mnt_id``, ``ino`` of an fdinfo text (0 where missing)."""
    values = dict.fromkeys(_FIELDS, 0)
    for line in text.splitlines()[:8]:
        key, _, value = line.partition(":")
        if key in _FIELDS:
            try:
                values[key] = int(value.strip(), _FIELDS[key])
            except ValueError:
                pass
    return values


# -- what the FUSE side sees of recorded processes --------------------------------------------


@dataclass(eq=False)
class FdView:
    """One recorded (pid, fd) of a client: the DrmFile it shares, plus whose fd it is, so
    the device answers this fd's own recorded text."""

    file: DrmFile
    pid: int
    fd: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


@dataclass
class ReplayFd:
    """A recorded fd as :class:`~vdrm.fs.procfs.ScenarioProcessTable` reads one."""

    fd: int
    file: FdView
    pos: int
    flags: int
    mnt_id: int
    ino: int
    target: str


@dataclass
class ReplayProcess:
    """A recorded process: its files as recorded, and its DRM fds."""

    pid: int
    comm: str
    uid: int
    gid: int
    files: dict[str, str]
    fds: dict[int, ReplayFd] = field(default_factory=dict)

    def stat(self) -> str:
        return self.files.get("stat") or ""

    def status(self) -> str:
        return self.files.get("status") or ""

    def cmdline_bytes(self) -> bytes:
        return (self.files.get("cmdline") or "").encode("utf-8", "surrogateescape")


def _ids(status: str) -> tuple[int, int]:
    uid = gid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("Gid:"):
            gid = int(line.split()[1])
    return uid, gid


# -- the device ----------------------------------------------------------------------------------


class _ReplayIds(ClientIdCounter):
    """The client-id counter: the recorded id for a recorded client, fresh ones above."""

    def __init__(self, first: int):
        super().__init__(first)
        self.preset: int | None = None

    def next(self) -> int:
        if self.preset is not None:
            value, self.preset = self.preset, None
            return value
        return super().next()


class _ReplayDrm(DrmDevice):
    """A DRM device whose minors are the recorded ones (``card1`` + ``renderD128`` ...)."""

    def __init__(self, driver: Driver, minors: tuple[int, ...], **kwargs: Any):
        self._minors = minors
        super().__init__(driver, **kwargs)

    @property
    def minors(self) -> tuple[int, ...]:  # type: ignore[override]
        return self._minors


class ReplayDriver(Driver):
    """No emulation: the recorded texts are the driver's whole behaviour."""

    def __init__(self, name: str):
        self.name = name


class ReplayDevice(GpuDevice):
    """One recorded GPU behind the driver-neutral interface."""

    DRIVER = "replay"

    def __init__(self, replay: "Replay", spec: dict[str, Any], config: DeviceConfig, services: Services):
        # GpuDevice.__init__ builds a DRM device with minors N and 128 + N; a recorded
        # machine has its own, so the parts are assembled here instead.
        self.replay = replay
        self.spec = spec
        self.config = config
        self.services = services
        self.clock, self.log, self.pages = services.clock, services.log, services.pages
        self.platform_device = spec["name"]
        self.KERNEL_VERSIONS = (config.kernel,)
        self._nodes = tuple((n["name"], n["minor"], "card" if n["name"].startswith("card") else "render")
                            for n in spec["nodes"])
        self.driver = ReplayDriver(_driver_name(spec))
        self._ioctls = build_table(CORE_IOCTLS)
        self.drm = _ReplayDrm(self.driver, tuple(n[1] for n in self._nodes), pages=self.pages,
                              clock=self.clock, log=self.log, client_ids=services.client_ids,
                              ioctls=self._ioctls, unique=spec["name"])
        self.timeline = self.driver.timeline = services.timeline
        self.timeline.attach(self)
        attrs = spec.get("attributes", {})
        self._attributes = {name: SysfsAttribute(show=(lambda text=text: text)) for name, text in attrs.items()}

    @property
    def nodes(self) -> tuple[tuple[str, int, str], ...]:
        return self._nodes

    def update(self) -> None:
        self.replay.update()

    def busy_snapshot(self) -> dict[int, list[int]]:
        """Called once at the start of every clock step: the next sample is due."""
        self.replay.arm()
        return {}

    def fdinfo(self, file: DrmFile, **header: Any) -> str:
        return self.replay.fdinfo(file)

    def truth(self, file: DrmFile) -> dict:
        return self.replay.truth(file)

    def uevent(self) -> str:
        return self.spec.get("uevent", "")

    def sysfs_attributes(self) -> dict[str, SysfsAttribute]:
        return self._attributes

    def debugfs_files(self) -> dict[str, Callable[[], str]]:
        return {}

    @property
    def profiling(self) -> bool | None:
        text = self.spec.get("attributes", {}).get("profiling")
        try:
            return bool(int(text.strip(), 0)) if text is not None else None
        except ValueError:
            return None


def _driver_name(spec: dict[str, Any]) -> str:
    for line in spec.get("uevent", "").splitlines():
        if line.startswith("DRIVER="):
            return line[7:]
    return spec.get("driver", "unknown")


# -- the player ------------------------------------------------------------------------------------


class Replay:
    """The samples of a trace, played on a machine of :class:`ReplayDevice`."""

    def __init__(self, trace: dict[str, Any]):
        check(trace)
        self.trace = trace
        self.samples: list[dict[str, Any]] = trace["samples"]
        self.index = 0
        self.previous = 0  # the sample shown before the last step
        self.processes: dict[int, ReplayProcess] = {}
        # (pid, fd) that left the tree at a step (gone, or now another client's): the
        # mount's kernel cache forgets their names (as for a scenario's closed fds)
        self.closed_fds: list[tuple[int, int]] = []
        self.clients: dict[tuple[int, int], DrmFile] = {}
        self._armed = False
        self._applying = False
        self.steps = 0
        recorded_ids = [c["drm-client-id"] for s in self.samples for c in s["clients"]]
        config = DeviceConfig(clock="virtual")
        services = Services(config)
        services.client_ids = _ReplayIds(max(recorded_ids, default=0) + 1)
        self.ids = services.client_ids
        specs = _device_specs(trace)
        try:
            self.machine = Machine(ReplayDevice(self, spec, config, services) for spec in specs)
        except InvalidArgument as e:  # two devices with one minor or one name
            raise TraceError(f"the trace's devices do not fit one machine: {e}") from None
        self.device = self.machine.device
        self._apply(0)

    # the timeline's hooks (through every ReplayDevice)

    def arm(self) -> None:
        self._armed = True

    def update(self) -> None:
        if self._armed and not self._applying:
            self._armed = False
            self.previous = self.index
            self.steps += 1
            self._apply(min(self.index + 1, len(self.samples) - 1))

    def _apply(self, index: int) -> None:
        self._applying = True
        try:
            self.index = index
            sample = self.samples[index]
            present = {(c["minor"], c["drm-client-id"]): c for c in sample["clients"]}
            for key in [k for k in self.clients if k not in present]:
                file = self.clients.pop(key)
                file.dev.release(file)
            recorded = sample["processes"]
            for key, client in present.items():
                if key not in self.clients:
                    pid, _ = client["fds"][0]
                    comm = (recorded.get(str(pid), {}).get("comm") or "").rstrip("\n")
                    self.ids.preset = key[1]
                    self.clients[key] = self.machine.on_minor(key[0]).drm.open(key[0], pid=pid, comm=comm)
            owner = {(pid, fd): key for key, c in present.items() for pid, fd in c["fds"]}
            processes = {}
            for pid_text, entry in recorded.items():
                pid = int(pid_text)
                uid, gid = _ids(entry.get("status") or "")
                proc = ReplayProcess(pid, (entry.get("comm") or "").rstrip("\n"), uid, gid, entry)
                for fd_text, info in entry["fds"].items():
                    key = owner.get((pid, int(fd_text)))
                    if key is None:
                        continue
                    h = _header(info["fdinfo"])
                    proc.fds[int(fd_text)] = ReplayFd(int(fd_text), FdView(self.clients[key], pid, int(fd_text)),
                                                      h["pos"], h["flags"], h["mnt_id"], h["ino"], info["target"])
                processes[pid] = proc
            held = {(pid, fd): ref.file.file for pid, p in processes.items() for fd, ref in p.fds.items()}
            self.closed_fds.extend(sorted((pid, fd) for pid, p in self.processes.items() for fd, ref in p.fds.items()
                                          if held.get((pid, fd)) is not ref.file.file))
            self.processes = processes
        finally:
            self._applying = False

    # what the devices answer

    def _text(self, sample: dict[str, Any], pid: int, fd: int) -> str | None:
        entry = sample["processes"].get(str(pid))
        info = entry and entry["fds"].get(str(fd))
        return info["fdinfo"] if info else None

    def _client_text(self, sample: dict[str, Any], key: tuple[int, int]) -> str | None:
        for c in sample["clients"]:
            if (c["minor"], c["drm-client-id"]) == key:
                pid, fd = c["fds"][0]
                return self._text(sample, pid, fd)
        return None

    def fdinfo(self, file: DrmFile | FdView) -> str:
        sample = self.samples[self.index]
        if isinstance(file, FdView):
            text = self._text(sample, file.pid, file.fd)
        else:
            text = self._client_text(sample, (file.minor, file.client_id))
        if text is not None:
            return text
        return (f"pos:\t0\nflags:\t02\nmnt_id:\t0\nino:\t0\ndrm-driver:\t{file.dev.driver.name}\n"
                f"drm-client-id:\t{file.client_id}\n")  # opened on the replay mount: an empty client

    def truth(self, file: DrmFile | FdView) -> dict[str, Any]:
        key = (file.minor, file.client_id)
        now_text = self._client_text(self.samples[self.index], key) or ""
        before_text = self._client_text(self.samples[self.previous], key)
        now, before = parse_fdinfo(now_text), parse_fdinfo(before_text if before_text is not None else now_text)
        interval = self.samples[self.index]["t_ns"] - self.samples[self.previous]["t_ns"]
        stepped = self.steps > 0
        if stepped and interval <= 0:  # past the last sample: nothing moves, over the clock's step
            interval = self.machine.timeline.last_step.step_ns
        engines = {}
        for name, row in now["engines"].items():
            prev = before["engines"].get(name, {})
            capacity = row.get("capacity", 1) or 1
            out: dict[str, Any] = {k: v for k, v in row.items()}
            utilisation = None
            if "busy_ns" in row and "busy_ns" in prev:
                out["delta_ns"] = row["busy_ns"] - prev["busy_ns"]
                if stepped and interval > 0:
                    utilisation = out["delta_ns"] / interval / capacity
            elif "cycles" in row and "total_cycles" in row and "cycles" in prev and "total_cycles" in prev:
                total = row["total_cycles"] - prev["total_cycles"]
                out["delta_cycles"] = row["cycles"] - prev["cycles"]
                if stepped and total > 0:
                    utilisation = out["delta_cycles"] / total / capacity
            out["utilisation"] = utilisation
            engines[name] = out
        memory: dict[str, Any] = now["memory"]
        if set(memory) == {"memory"}:
            memory = memory["memory"]
        device = self.machine.of(file.file if isinstance(file, FdView) else file)
        step = self.machine.timeline.last_step
        return {"drm-client-id": file.client_id, "drm-driver": now.get("driver", device.driver.name),
                "minor": file.minor, "pid": file.pid, "comm": file.comm,
                "clock": {"now_ns": self.machine.clock.now_ns(), "step_start_ns": step.start_ns,
                          "step_end_ns": step.end_ns, "step_ns": step.step_ns},
                "sample": {"index": self.index, "previous": self.previous, "interval_ns": interval},
                "profiling": device.profiling, "engines": engines, "memory": memory}


def _device_specs(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded devices, plus one made up for minors no recorded device has (their
    sysfs was not visible to the recorder): named ``replay-<minor>`` after its first minor."""
    specs = [dict(d) for d in trace.get("devices", [])]
    known = {n["minor"] for d in specs for n in d["nodes"]}
    orphans = sorted({c["minor"] for s in trace["samples"] for c in s["clients"]} - known)
    if orphans:
        specs.append({"name": f"replay-{orphans[0]}", "uevent": "", "attributes": {},
                      "nodes": [{"name": f"card{m}" if m < 128 else f"renderD{m}", "minor": m} for m in orphans]})
    if not specs:
        raise TraceError("the trace has no DRM node and no client: nothing to replay")
    return specs


def check(trace: Any) -> None:
    """TraceError unless ``trace`` has the shape :mod:`vdrm.record` writes (every field the
    replay reads, of the right type, and every client's fds present in its sample)."""
    if not isinstance(trace, dict) or trace.get("format") != TRACE_FORMAT:
        raise TraceError(f"not a vdrm trace (format {TRACE_FORMAT!r} expected)")
    samples = trace.get("samples")
    if not isinstance(samples, list) or not samples:
        raise TraceError("the trace has no samples")
    for i, sample in enumerate(samples):
        try:
            _check_sample(sample)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TraceError(f"sample {i} is inconsistent: {type(e).__name__} {e}") from None
    devices = trace.get("devices", [])
    if not isinstance(devices, list):
        raise TraceError("devices is not a list")
    for d in devices:
        try:
            _check_device(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TraceError(f"device {d.get('name') if isinstance(d, dict) else d!r} is inconsistent: "
                             f"{type(e).__name__} {e}") from None


def _check_sample(sample: dict[str, Any]) -> None:
    if not isinstance(sample["t_ns"], int):
        raise TypeError("t_ns is not an integer")
    for pid, entry in sample["processes"].items():
        int(pid)
        for name in ("stat", "status", "comm", "cmdline"):
            if not isinstance(entry.get(name) or "", str):
                raise TypeError(f"process {pid}: {name} is not text")
        for fd, info in entry["fds"].items():
            int(fd)
            if not isinstance(info["target"], str) or not isinstance(info["fdinfo"], str):
                raise TypeError(f"process {pid} fd {fd}: target and fdinfo must be text")
    seen = set()
    for c in sample["clients"]:
        key = (int(c["minor"]), int(c["drm-client-id"]))
        if key in seen or not c["fds"]:
            raise ValueError(f"client {key} is listed twice or holds no fd")
        seen.add(key)
        for pid, fd in c["fds"]:
            if str(fd) not in sample["processes"][str(pid)]["fds"]:
                raise KeyError(f"{pid}/{fd}")


def _check_device(d: dict[str, Any]) -> None:
    if not isinstance(d["name"], str) or not d["name"] or "/" in d["name"]:
        raise ValueError("a device needs a name without '/'")
    for key in ("uevent",):
        if not isinstance(d.get(key, ""), str):
            raise TypeError(f"{key} is not text")
    if not all(isinstance(k, str) and isinstance(v, str) and "/" not in k
               for k, v in d.get("attributes", {}).items()):
        raise TypeError("attributes must map file names to text")
    for n in d["nodes"]:
        if not _NODE.fullmatch(n["name"]) or not isinstance(n["minor"], int):
            raise ValueError(f"{n.get('name')!r} is not a DRM node name with a minor")


def load(path: str) -> Replay:
    """The replay of the trace file at ``path``."""
    try:
        with open(path) as f:
            trace = json.load(f)
    except OSError as e:
        raise TraceError(f"cannot read the trace {path}: {e.strerror}") from None
    except ValueError as e:
        raise TraceError(f"{path} is not JSON: {e}") from None
    return Replay(trace)
