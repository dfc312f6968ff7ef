"""Reading and validating scenario files.

The format, by example (``fixtures/*.toml`` has complete ones)::

    description = "one game on both engines"

    [device]
    gpus = ["panfrost"]        # card0/renderD128 first; ["panfrost", "panthor"]: two GPUs
    kernel = "6.18"            # kernel dialect: 6.6 .. 7.0 (every GPU must have it; Panthor 6.10+)
    profiling = true
    heap_backing = "sparse"    # or "dense"
    ram = "1G"
    first_client_id = 1
    size_units = "auto"        # auto (by kernel) | exact (6.7+) | truncating (6.5-6.6)
    fdinfo_revision = "merged" # or "docs": the revision of the kernel docs' example
    job_timeout = "500ms"      # the kernel's job timeout; "0s": jobs never time out
    frequency = { fragment = 800000000, vertex-tiler = 800000000 }   # Hz, max = cur
    curfreq = { fragment = 400000000 }                                # optional

    [clock]
    start = "10s"

    [[client]]
    id = "game"                # the scenario's name for the client
    node = "renderD128"        # or "card0"; "renderD129"/"card1" on the second GPU
    name = "supertuxkart"      # drm-client-name (6.13+), optional
    usage = { fragment = [1846584880, 1424359409] }   # engine [busy ns, cycles] at start

    [[client.bo]]
    id = "heap"
    size = "64M"
    flags = ["HEAP", "NOEXEC"]
    resident = "8M"            # heaps: fault in this much from the start (2M blocks)
    label = "tiler heap"
    madvise = "DONTNEED"       # optional
    purged = false             # true: purged already (needs madvise = "DONTNEED")
    share_with = ["other"]     # GEM_FLINK here, GEM_OPEN in those clients

    [[process]]
    pid = 100                  # shown as 4194304 + 100
    ppid = 1
    comm = "supertuxkart"
    cmdline = ["supertuxkart", "--fullscreen"]
    uid = 1000
    fds = { 3 = "game", 4 = "game" }        # fd -> client (same client twice = dup)
    fd_flags = { 3 = "02100002" }           # optional, octal as fdinfo prints it

    [[job]]
    client = "game"
    engine = "fragment"        # the client's GPU's: fragment | vertex-tiler | compute-only (Panfrost)
    at = "0ms"
    duration = "12ms"
    every = "16ms"             # optional: repeat ...
    count = 60                 # ... this many times
    bos = ["heap"]
    touch = ["heap+8M"]        # GPU addresses the job touches: BO id + offset

    [[event]]                  # things that happen at a time
    at = "500ms"
    client = "game"
    engine_skew = { fragment = "-2ms" }     # engine time briefly behind (catches up)

Engine names, BO flags and kernel versions are the drivers' own (``GpuDevice.ENGINES``,
``BO_FLAGS``, ``KERNEL_VERSIONS``, found through :mod:`vdrm.drivers`); an engine in
``frequency``/``curfreq`` applies to the GPU that has it.

Every error is a :class:`ScenarioError` whose text is ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import contextlib
import gc
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdrm import drivers
from vdrm.drm.gpu import HEAP_BACKINGS, GpuDevice
from vdrm.drm.grammar import parse_duration, parse_size
from vdrm.drm.limits import MAX_RAM_SIZE
from vdrm.errors import InvalidArgument

PID_BASE = 4194304  # PID_MAX_LIMIT on 64-bit: no real pid is this large
DEFAULT_FD_FLAGS = 0o2100002  # O_RDWR | O_LARGEFILE (x86-64) | O_CLOEXEC
DEFAULT_MNT_ID = 27
SIZE_UNITS = ("auto", "exact", "truncating")
SZ_2M = 2 << 20  # heaps fault in 2 MiB at a time
EVENT_KINDS = ("engine_skew", "profiling", "curfreq", "close_client", "madvise", "fault", "tiler_oom")
PROFILING_MAX = 3  # Panthor's mask (cycles | timestamps); Panfrost's 0/1 is true/false

_FD_RE = re.compile(r"[0-9]{1,9}", re.ASCII)


class ScenarioError(Exception):
    """A scenario file is unusable; the message is ``FILE:LINE: what is wrong``."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class BoSpec:
    id: str
    size: int
    flags: int
    resident: int = 0
    label: str | None = None
    madvise: str | None = None
    share_with: tuple[str, ...] = ()
    line: int = 0
    purged: bool = False


@dataclass(frozen=True)
class HeapSpec:
    """A tiler heap (drivers with ``TILER_HEAPS``): chunks of ``chunk_size``, grown by events."""

    id: str
    chunk_size: int
    initial_chunks: int
    max_chunks: int
    target_in_flight: int
    line: int = 0


@dataclass(frozen=True)
class ClientSpec:
    id: str
    minor: int
    name: str | None
    bos: tuple[BoSpec, ...]
    line: int = 0
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)  # engine -> (ns, cycles) at start
    gpu: int = 0  # the card its node belongs to
    heaps: tuple[HeapSpec, ...] = ()
    queues: tuple[int, ...] = ()  # ring-buffer sizes of the client's group (drivers with TILER_HEAPS)


@dataclass(frozen=True)
class ProcessSpec:
    pid: int  # as presented (PID_BASE added)
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    uid: int
    gid: int
    fds: dict[int, str]
    fd_flags: dict[int, int]
    line: int = 0


@dataclass(frozen=True)
class JobSpec:
    client: str
    engine: str
    at: int
    duration: int
    every: int
    count: int
    bos: tuple[str, ...]
    touch: tuple[tuple[str, int], ...]
    line: int = 0
    tiler_oom: tuple[str, ...] = ()  # heaps that run out of memory once per run of the job


@dataclass(frozen=True)
class EventSpec:
    at: int
    kind: str
    client: str | None
    value: Any
    line: int = 0


@dataclass(frozen=True)
class DeviceSpec:
    kernel: tuple[int, int] = (6, 18)
    profiling: bool | int = True
    heap_backing: str = "sparse"
    ram_size: int = 1 << 30
    first_client_id: int = 1
    size_units: str = "auto"
    seed: int = 0
    fragmentation: float = 0.3
    as_slots: int = 8
    fdinfo_revision: str = "merged"
    job_timeout_ns: int = 500_000_000
    maxfreq: dict[str, int] = field(default_factory=dict)  # engine -> Hz
    curfreq: dict[str, int] = field(default_factory=dict)
    gpus: tuple[str, ...] = ("panfrost",)  # drivers, card0 first

    def classes(self) -> list[type[GpuDevice]]:
        return [drivers.driver(name) for name in self.gpus]

    def nodes(self) -> dict[str, tuple[int, int]]:
        """Node name -> (minor, card)."""
        out = {}
        for card in range(len(self.gpus)):
            out[f"card{card}"], out[f"renderD{128 + card}"] = (card, card), (128 + card, card)
        return out


@dataclass(frozen=True)
class ScenarioSpec:
    path: str
    description: str
    device: DeviceSpec
    clock_start: int
    mnt_id: int
    clients: tuple[ClientSpec, ...]
    processes: tuple[ProcessSpec, ...]
    jobs: tuple[JobSpec, ...]
    events: tuple[EventSpec, ...]
    inodes: dict[int, int] = field(default_factory=dict)  # minor -> the node's inode number in fdinfo


class _Lines:
    """Finds the line of a table or key in the TOML text (tomllib reports none)."""

    _HEADER = re.compile(r"\s*\[\[\s*([^\]]*?)\s*\]\]")

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self._headers: dict[str, list[int]] | None = None

    def headers(self, name: str) -> list[int]:
        """The lines (1-based, ascending) of every ``[[name]]`` header: all names are
        indexed in one pass over the text, so a loader asking per table stays linear."""
        if self._headers is None:
            self._headers = {}
            for i, line in enumerate(self.lines):
                m = self._HEADER.match(line)
                if m:
                    self._headers.setdefault(m.group(1), []).append(i + 1)
        return self._headers.get(name, [])

    def table(self, name: str) -> int | None:
        pattern = re.compile(r"^\s*\[\s*" + re.escape(name) + r"\s*\]")
        return next((i + 1 for i, line in enumerate(self.lines) if pattern.match(line)), None)

    def key(self, key: str, start: int | None, end: int | None = None) -> int | None:
        """The first line at or after ``start`` (1-based) assigning ``key``, before ``end``.

        Without a table line (an inline or implicit table), the first line anywhere that
        assigns ``key``, inline (``{ key = ...``) or not; then ``start``; then line 1, so
        an error always has a line."""
        pattern = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        first = (start or 1) - 1
        last = (end - 1) if end else len(self.lines)
        for i in range(first, last):
            if pattern.match(self.lines[i]):
                return i + 1
            if i > first and self.lines[i].lstrip().startswith("["):
                break
        if start is None:
            anywhere = re.compile(r"(^|[{,]\s*)[\"']?" + re.escape(key) + r"[\"']?\s*=")
            for i, line in enumerate(self.lines):
                if anywhere.search(line):
                    return i + 1
        return start or 1


class _Reader:
    """Typed access to one table of the file, raising ScenarioError with a line."""

    def __init__(self, path: str, lines: _Lines, table: dict[str, Any], what: str, line: int | None):
        self.path, self.lines, self.table, self.what, self.line = path, lines, table, what, line
        if not isinstance(table, dict):
            raise ScenarioError(path, line, f"{what} must be a table")
        self.used: set[str] = set()

    def fail(self, key: str | None, message: str) -> ScenarioError:
        line = self.lines.key(key, self.line) if key else (self.line or 1)
        return ScenarioError(self.path, line, f"{self.what}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required or default is ...:
                raise self.fail(None, f"'{key}' is required")
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"'{key}' must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"'{key}' must be {_kind_name(kind)}, not {type(value).__name__} {value!r}")
        return value

    def size(self, key: str, default: Any = ...) -> int:
        value = self.get(key, (int, str), default)
        if isinstance(value, int):
            if value < 0:
                raise self.fail(key, f"'{key}' must not be negative")
            return value
        try:
            return parse_size(value, key)
        except InvalidArgument as e:
            raise self.fail(key, f"'{key}' = {value!r} is not a size: {e}") from None

    def duration(self, key: str, default: Any = ..., *, signed: bool = False) -> int:
        value = self.get(key, (int, str), default)
        return _duration(self, key, value, signed)

    def check_unknown(self) -> None:
        for key in self.table:
            if key not in self.used:
                known = ", ".join(sorted(self.used))
                raise self.fail(key, f"unknown key '{key}' (known here: {known})")


def _duration(reader: _Reader, key: str, value: Any, signed: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise reader.fail(key, f"'{key}' must be a duration (an integer of ns, or a string such as "
                               f"\"5ms\"), not {type(value).__name__} {value!r}")
    if isinstance(value, int):
        ns = value
    else:
        try:
            ns = parse_duration(value, key)
        except InvalidArgument as e:
            raise reader.fail(key, f"'{key}' = {value!r} is not a duration: {e}") from None
    if ns < 0 and not signed:
        raise reader.fail(key, f"'{key}' must not be negative")
    return ns


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", bool: "true or false", list: "a list", dict: "a table",
             float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _engine(reader: _Reader, key: str, name: str, classes: list[type[GpuDevice]]) -> str:
    """An engine name of one of ``classes`` (the GPUs it may belong to)."""
    known = [e for cls in classes for e in cls.ENGINES]
    if name not in known:
        raise reader.fail(key, f"unknown engine {name!r} (known: {', '.join(known)})")
    return name


def load(path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario file; ScenarioError says where and what is wrong."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ScenarioError(path, None, f"cannot read the scenario: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(path, None, "the scenario is not UTF-8 text") from None
    with gc_paused():
        return loads(text, path)


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside: building a scenario allocates millions of
    objects that all live on, and each collection would rescan every one made so far
    (10,000 clients built in 0.9 s with it, 0.4 s without)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def loads(text: str, path: str = "<scenario>") -> ScenarioSpec:
    """Validate scenario ``text`` (``path`` only names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(err))
        line = int(m[1]) if m else max(1, len(text.splitlines()))  # "(at end of document)"
        message = re.sub(r" [(]at (line|end of document).*", "", str(err))
        raise ScenarioError(path, line, f"not valid TOML: {message}") from None
    lines = _Lines(text)
    top = _Reader(path, lines, data, "scenario", None)
    description = top.get("description", str, "")
    device = _device(_Reader(path, lines, top.get("device", dict, {}), "[device]", lines.table("device")))
    clock = _Reader(path, lines, top.get("clock", dict, {}), "[clock]", lines.table("clock"))
    clock_start = clock.duration("start", 0)
    clock.check_unknown()
    mnt_id = top.get("mnt_id", int, DEFAULT_MNT_ID)
    inodes = {}
    for node, ino in top.get("inodes", dict, {}).items():
        if node not in device.nodes():
            raise top.fail("inodes", f"inodes names {node!r}, not a node of this machine "
                                     f"({', '.join(sorted(device.nodes()))})")
        if not isinstance(ino, int) or isinstance(ino, bool) or ino <= 0:
            raise top.fail("inodes", f"inodes.{node} must be a positive inode number")
        inodes[device.nodes()[node][0]] = ino

    clients = _clients(path, lines, top.get("client", list, []), device)
    client_ids = {c.id for c in clients}
    bo_ids = {b.id: (c.id, b) for c in clients for b in c.bos}
    heap_ids = {h.id: c.id for c in clients for h in c.heaps}
    processes = _processes(path, lines, top.get("process", list, []), client_ids)
    gpu_of = {c.id: device.classes()[c.gpu] for c in clients}
    jobs = _jobs(path, lines, top.get("job", list, []), client_ids, bo_ids, gpu_of, heap_ids)
    events = _events(path, lines, top.get("event", list, []), client_ids, bo_ids, gpu_of, device.classes(),
                     heap_ids)
    top.check_unknown()
    return ScenarioSpec(path, description, device, clock_start, mnt_id, clients, processes, jobs, events, inodes)


def _device(r: _Reader) -> DeviceSpec:
    gpus = r.get("gpus", list, ["panfrost"])
    if not gpus or not all(isinstance(g, str) and g in drivers.DRIVERS for g in gpus):
        raise r.fail("gpus", f"gpus is a non-empty list of drivers from {', '.join(drivers.DRIVERS)}, "
                             f"card0 first, not {gpus!r}")
    if len(set(gpus)) != len(gpus):
        raise r.fail("gpus", "each driver drives one GPU here (two GPUs of one driver would share a "
                             "platform device)")
    classes = [drivers.driver(g) for g in gpus]
    kernel_text = r.get("kernel", str, "6.18")
    m = re.match(r"^(\d+)\.(\d+)$", kernel_text)
    kernel = (int(m[1]), int(m[2])) if m else None
    for cls in classes:
        if kernel not in cls.KERNEL_VERSIONS:
            known = ", ".join(f"{a}.{b}" for a, b in cls.KERNEL_VERSIONS)
            raise r.fail("kernel", f"kernel {kernel_text!r} is not emulated for {cls.DRIVER} (known: {known})")
    backing = r.get("heap_backing", str, "sparse")
    if backing not in HEAP_BACKINGS:
        raise r.fail("heap_backing", f"heap_backing must be sparse or dense, not {backing!r}")
    units = r.get("size_units", str, "auto")
    if units not in SIZE_UNITS:
        raise r.fail("size_units", f"size_units must be one of {', '.join(SIZE_UNITS)}, not {units!r}")
    first_id = r.get("first_client_id", int, 1)
    if first_id < 1:
        raise r.fail("first_client_id", "first_client_id starts at 1 or above")
    frag = r.get("fragmentation", (int, float), 0.3)
    if not 0 <= frag <= 1:
        raise r.fail("fragmentation", "fragmentation is between 0 and 1")
    freqs = {}
    for key in ("frequency", "curfreq"):
        table = r.get(key, dict, {})
        parsed = {}
        for engine, hz in table.items():
            if not isinstance(hz, int) or isinstance(hz, bool) or hz <= 0:
                raise r.fail(key, f"{key}.{engine} must be a positive number of Hz")
            parsed[_engine(r, key, engine, classes)] = hz
        freqs[key] = parsed
    revision = r.get("fdinfo_revision", str, "merged")
    if revision not in ("merged", "docs"):
        raise r.fail("fdinfo_revision", f"fdinfo_revision must be merged or docs, not {revision!r}")
    profiling = r.get("profiling", (bool, int), True)
    if not isinstance(profiling, bool) and not 0 <= profiling <= PROFILING_MAX:
        raise r.fail("profiling", f"profiling is true, false or a mask 0..{PROFILING_MAX} (Panthor: 1 cycles, "
                                  "2 timestamps)")
    spec = DeviceSpec(kernel=kernel, profiling=profiling, heap_backing=backing,
                      fdinfo_revision=revision,
                      ram_size=r.size("ram", 1 << 30), first_client_id=first_id, size_units=units,
                      seed=r.get("seed", int, 0), fragmentation=float(frag),
                      as_slots=r.get("as_slots", int, 8), maxfreq=freqs["frequency"], curfreq=freqs["curfreq"],
                      gpus=tuple(gpus), job_timeout_ns=r.duration("job_timeout", 500_000_000))
    if spec.ram_size < (16 << 20):
        raise r.fail("ram", "ram must be at least 16M")
    if spec.ram_size > MAX_RAM_SIZE:
        raise r.fail("ram", f"ram must be at most {MAX_RAM_SIZE >> 30}G")
    if spec.ram_size % 4096:
        raise r.fail("ram", "ram must be a multiple of 4K")
    r.check_unknown()
    return spec


def _owned(sub_headers: list[int], cursor: int, line: int | None, end: int | None) -> tuple[list[int], int]:
    """The sub-table headers (``[[client.bo]]``...) between a table's header ``line`` and
    the next table's ``end``, from ``cursor`` on; and the cursor past them. Each call moves
    forward only, so all the clients together scan each header list once."""
    while cursor < len(sub_headers) and sub_headers[cursor] <= (line or 0):
        cursor += 1
    first = cursor
    while cursor < len(sub_headers) and (end is None or sub_headers[cursor] < end):
        cursor += 1
    return sub_headers[first:cursor], cursor


def _clients(path: str, lines: _Lines, items: list[Any], device: DeviceSpec) -> tuple[ClientSpec, ...]:
    nodes = device.nodes()
    headers = lines.headers("client")
    bo_headers, heap_headers = lines.headers("client.bo"), lines.headers("client.heap")
    out: list[ClientSpec] = []
    seen_ids: set[str] = set()
    seen_bos: set[str] = set()
    bo_cursor = heap_cursor = 0  # headers come in file order: a client's sub-tables follow it
    for i, item in enumerate(items):
        line = headers[i] if i < len(headers) else None
        r = _Reader(path, lines, item, f"client #{i + 1}", line)
        cid = r.get("id", str, required=True)
        if cid in seen_ids:
            raise r.fail("id", f"client id {cid!r} is used twice")
        seen_ids.add(cid)
        node = r.get("node", str, "renderD128")
        if node not in nodes:
            raise r.fail("node", f"node must be one of {', '.join(sorted(nodes))}, not {node!r}")
        minor, card = nodes[node]
        gpu = device.classes()[card]
        name = r.get("name", str, None)
        end = headers[i + 1] if i + 1 < len(headers) else None
        my_bo_lines, bo_cursor = _owned(bo_headers, bo_cursor, line, end)
        bos = []
        for j, bo_item in enumerate(r.get("bo", list, [])):
            br = _Reader(path, lines, bo_item, f"client {cid!r} bo #{j + 1}",
                         my_bo_lines[j] if j < len(my_bo_lines) else line)
            bo = _bo(br, gpu)
            if bo.id in seen_bos:
                raise br.fail("id", f"BO id {bo.id!r} is used twice (BO ids are scenario-wide)")
            seen_bos.add(bo.id)
            bos.append(bo)
        mine, heap_cursor = _owned(heap_headers, heap_cursor, line, end)
        heaps = []
        for j, heap_item in enumerate(r.get("heap", list, [])):
            hr = _Reader(path, lines, heap_item, f"client {cid!r} heap #{j + 1}", mine[j] if j < len(mine) else line)
            if not gpu.TILER_HEAPS:
                raise hr.fail(None, f"{gpu.DRIVER} has no tiler heaps (its heaps are HEAP BOs that fault in)")
            heap = _heap(hr)
            if heap.id in seen_bos:
                raise hr.fail("id", f"id {heap.id!r} is used twice (BO and heap ids are scenario-wide)")
            seen_bos.add(heap.id)
            heaps.append(heap)
        queues = r.get("queues", list, [])
        if queues and not gpu.TILER_HEAPS:
            raise r.fail("queues", f"{gpu.DRIVER} has no command-stream queues")
        ring_sizes = []
        for q in queues:
            size = _size_value(r, "queues", q)
            if size < 4096 or size > 65536 or size & (size - 1):
                raise r.fail("queues", f"a queue's ring buffer is a power of two from 4K to 64K, not {q!r}")
            ring_sizes.append(size)
        if len(ring_sizes) > 8:
            raise r.fail("queues", "a group has at most 8 queues")
        usage = {}
        for engine, value in r.get("usage", dict, {}).items():
            if (not isinstance(value, list) or len(value) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
                raise r.fail("usage", f"usage.{engine} is [busy_ns, cycles], two non-negative integers")
            usage[_engine(r, "usage", engine, [gpu])] = (value[0], value[1])
        r.check_unknown()
        out.append(ClientSpec(cid, minor, name, tuple(bos), line or 0, usage, card, tuple(heaps), tuple(ring_sizes)))
    ids = {c.id for c in out}
    for c in out:
        for bo in c.bos:
            for other in bo.share_with:
                if other not in ids or other == c.id:
                    raise ScenarioError(path, bo.line, f"BO {bo.id!r}: share_with names {other!r}, "
                                        f"which is not another client")
    return tuple(out)


def _size_value(r: _Reader, key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str):
        raise r.fail(key, f"{value!r} is not a size")
    try:
        return parse_size(value, key)
    except InvalidArgument as e:
        raise r.fail(key, str(e)) from None


def _heap(r: _Reader) -> HeapSpec:
    hid = r.get("id", str, required=True)
    chunk = r.size("chunk_size", 2 << 20)
    if chunk % 4096 or not (128 << 10) <= chunk <= (8 << 20):
        raise r.fail("chunk_size", "chunk_size is page-aligned, from 128K to 8M")
    initial = r.get("initial_chunks", int, 1)
    max_chunks = r.get("max_chunks", int, 64)
    if initial < 1 or max_chunks < initial:
        raise r.fail("max_chunks" if initial >= 1 else "initial_chunks",
                     "initial_chunks >= 1 and max_chunks >= initial_chunks")
    target = r.get("target_in_flight", int, 1)
    if target < 1:
        raise r.fail("target_in_flight", "target_in_flight is at least 1")
    spec = HeapSpec(hid, chunk, initial, max_chunks, target, r.line or 0)
    r.check_unknown()
    return spec


def _bo(r: _Reader, gpu: type[GpuDevice]) -> BoSpec:
    bid = r.get("id", str, required=True)
    size = r.size("size")
    if size == 0:
        raise r.fail("size", "size must be non-zero")
    flags = 0
    bo_flags = gpu.BO_FLAGS
    for name in r.get("flags", list, []):
        if not isinstance(name, str) or name not in bo_flags:
            raise r.fail("flags", f"unknown {gpu.DRIVER} BO flag {name!r} (known: {', '.join(bo_flags)})")
        flags |= bo_flags[name]
    heap = flags & bo_flags[gpu.HEAP_FLAG] if gpu.HEAP_FLAG else 0
    if heap and not flags & bo_flags["NOEXEC"]:
        raise r.fail("flags", "a HEAP BO needs NOEXEC too (heaps are never executable)")
    resident = r.size("resident", 0)
    if resident and not heap:
        raise r.fail("resident", "only heap BOs have a partial residency (other BOs are fully resident)")
    rounded = -(-size // SZ_2M) * SZ_2M if heap else size
    if resident % SZ_2M or resident > rounded:
        raise r.fail("resident", f"resident must be a multiple of 2M and at most the heap size ({rounded})")
    madvise = r.get("madvise", str, None)
    if madvise is not None and not gpu.MADVISE:
        raise r.fail("madvise", f"{gpu.DRIVER} has no madvise")
    if madvise not in (None, "WILLNEED", "DONTNEED"):
        raise r.fail("madvise", f"madvise must be WILLNEED or DONTNEED, not {madvise!r}")
    share = r.get("share_with", list, [])
    if not all(isinstance(s, str) for s in share):
        raise r.fail("share_with", "share_with is a list of client ids")
    purged = r.get("purged", bool, False)
    if purged and (madvise != "DONTNEED" or heap):
        raise r.fail("purged", "only a non-heap BO with madvise = \"DONTNEED\" can be purged")
    spec = BoSpec(bid, size, flags, resident, r.get("label", str, None), madvise, tuple(share), r.line or 0,
                  purged)
    r.check_unknown()
    return spec


def _processes(path: str, lines: _Lines, items: list[Any], clients: set[str]) -> tuple[ProcessSpec, ...]:
    headers = lines.headers("process")
    out: list[ProcessSpec] = []
    seen_pids: set[int] = set()
    for i, item in enumerate(items):
        r = _Reader(path, lines, item, f"process #{i + 1}", headers[i] if i < len(headers) else None)
        pid = r.get("pid", int, required=True)
        if not 1 <= pid < PID_BASE:
            raise r.fail("pid", f"pid must be between 1 and {PID_BASE - 1} (it is shown as {PID_BASE} + pid)")
        if PID_BASE + pid in seen_pids:
            raise r.fail("pid", f"pid {pid} is used twice")
        seen_pids.add(PID_BASE + pid)
        ppid = r.get("ppid", int, 1)
        comm = r.get("comm", str, required=True)
        cmdline = r.get("cmdline", list, [comm])
        if not all(isinstance(a, str) for a in cmdline):
            raise r.fail("cmdline", "cmdline is a list of strings")
        fds: dict[int, str] = {}
        for key, client in r.get("fds", dict, {}).items():
            if not _FD_RE.fullmatch(key):
                raise r.fail("fds", f"fd {key!r} is not a number")
            if not isinstance(client, str) or client not in clients:
                raise r.fail("fds", f"fd {key} names client {client!r}, which the scenario does not define")
            fds[int(key)] = client
        fd_flags: dict[int, int] = {}
        for key, value in r.get("fd_flags", dict, {}).items():
            if not _FD_RE.fullmatch(key) or int(key) not in fds:
                raise r.fail("fd_flags", f"fd_flags names fd {key!r}, which is not in fds")
            if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                    isinstance(value, int) and not 0 <= value < 1 << 32):
                raise r.fail("fd_flags", f"fd_flags.{key} = {value!r} is not an octal string or a flags integer")
            try:
                fd_flags[int(key)] = int(value, 8) if isinstance(value, str) else int(value)
            except ValueError:
                raise r.fail("fd_flags", f"fd_flags.{key} = {value!r} is not an octal number") from None
        uid = r.get("uid", int, 1000)
        spec = ProcessSpec(PID_BASE + pid, PID_BASE + ppid if 1 < ppid < PID_BASE and ppid != pid else ppid,
                           comm[:15], tuple(cmdline), uid, r.get("gid", int, uid), fds, fd_flags, r.line or 0)
        r.check_unknown()
        out.append(spec)
    return tuple(out)


def _address(r: _Reader, key: str, text: Any, bos: dict[str, Any]) -> tuple[str, int]:
    if isinstance(text, int) and not isinstance(text, bool):
        return ("", text)
    if not isinstance(text, str):
        raise r.fail(key, f"{key} entries are addresses or 'bo+offset' strings, not {text!r}")
    name, _, offset = text.partition("+")
    if name.strip() not in bos:
        raise r.fail(key, f"{text!r}: {name.strip()!r} is not a BO id")
    off = 0
    if offset:
        try:
            off = parse_size(offset.strip(), "offset")
        except InvalidArgument as e:
            raise r.fail(key, f"{text!r}: offset {offset!r} is not a size: {e}") from None
    return (name.strip(), off)


def _own_heap(r: _Reader, key: str, name: Any, client: str | None, heaps: dict[str, str]) -> str:
    if not isinstance(name, str) or name not in heaps:
        raise r.fail(key, f"{name!r} is not a heap id")
    if heaps[name] != client:
        raise r.fail(key, f"heap {name!r} belongs to client {heaps[name]!r}, not {client!r}")
    return name


def _jobs(path: str, lines: _Lines, items: list[Any], clients: set[str], bos: dict[str, Any],
          gpu_of: dict[str, type[GpuDevice]], heaps: dict[str, str]) -> tuple[JobSpec, ...]:
    headers = lines.headers("job")
    out = []
    for i, item in enumerate(items):
        r = _Reader(path, lines, item, f"job #{i + 1}", headers[i] if i < len(headers) else None)
        client = r.get("client", str, required=True)
        if client not in clients:
            raise r.fail("client", f"client {client!r} is not defined")
        gpu = gpu_of[client]
        engine = _engine(r, "engine", r.get("engine", str, gpu.DEFAULT_ENGINE), [gpu])
        at = r.duration("at", 0)
        duration = r.duration("duration")
        every = r.duration("every", 0)
        count = r.get("count", int, 1)
        if count < 1 or (count > 1 and every <= 0):
            raise r.fail("count", "count must be >= 1, and a repeated job needs every > 0")
        if count > 1_000_000:
            raise r.fail("count", "count is at most 1000000")
        job_bos = r.get("bos", list, [])
        for b in job_bos:
            if not isinstance(b, str) or b not in bos:
                raise r.fail("bos", f"{b!r} is not a BO id")
            if bos[b][0] != client and client not in bos[b][1].share_with:
                raise r.fail("bos", f"BO {b!r} is not reachable by client {client!r} (share it first)")
        touch = tuple(_address(r, "touch", t, bos) for t in r.get("touch", list, []))
        ooms = tuple(_own_heap(r, "tiler_oom", h, client, heaps) for h in r.get("tiler_oom", list, []))
        r.check_unknown()
        out.append(JobSpec(client, engine, at, duration, every, count, tuple(job_bos), touch, r.line or 0, ooms))
    return tuple(out)


def _events(path: str, lines: _Lines, items: list[Any], clients: set[str], bos: dict[str, Any],
            gpu_of: dict[str, type[GpuDevice]], classes: list[type[GpuDevice]],
            heaps: dict[str, str]) -> tuple[EventSpec, ...]:
    headers = lines.headers("event")
    out = []
    for i, item in enumerate(items):
        r = _Reader(path, lines, item, f"event #{i + 1}", headers[i] if i < len(headers) else None)
        at = r.duration("at")
        client = r.get("client", str, None)
        if client is not None and client not in clients:
            raise r.fail("client", f"client {client!r} is not defined")
        kinds = [k for k in EVENT_KINDS if k in r.table]
        if len(kinds) != 1:
            raise r.fail(None, f"an event does exactly one of: {', '.join(EVENT_KINDS)}")
        kind = kinds[0]
        if kind in ("engine_skew", "close_client", "madvise", "fault", "tiler_oom") and client is None:
            raise r.fail(kind, f"{kind} needs a client")
        gpu = gpu_of.get(client)
        if kind == "fault" and not gpu.HEAP_FLAG:
            raise r.fail(kind, f"{gpu.DRIVER} binds BOs whole: there are no GPU page faults to play "
                               "(tiler heaps grow with tiler_oom)")
        if kind == "madvise" and not gpu.MADVISE:
            raise r.fail(kind, f"{gpu.DRIVER} has no madvise")
        if kind == "engine_skew":
            value = {_engine(r, kind, e, [gpu_of[client]]): _duration(r, kind, d, True)
                     for e, d in r.get(kind, dict).items()}
        elif kind == "profiling":
            value = r.get(kind, (bool, int))
            if not isinstance(value, bool) and not 0 <= value <= PROFILING_MAX:
                raise r.fail(kind, f"profiling is true, false or a mask 0..{PROFILING_MAX}")
        elif kind == "tiler_oom":
            value = _own_heap(r, kind, r.get(kind, str), client, heaps)
        elif kind == "curfreq":
            value = {}
            for e, hz in r.get(kind, dict).items():
                if not isinstance(hz, int) or isinstance(hz, bool) or hz <= 0:
                    raise r.fail(kind, f"curfreq.{e} must be a positive number of Hz")
                value[_engine(r, kind, e, [gpu_of[client]] if client else classes)] = hz
        elif kind == "close_client":
            value = r.get(kind, bool)
        elif kind == "madvise":
            value = r.get(kind, dict)
            bo, madv = value.get("bo"), value.get("madv")
            if (set(value) - {"bo", "madv"} or not isinstance(bo, str) or bo not in bos
                    or madv not in ("WILLNEED", "DONTNEED")):
                raise r.fail(kind, "madvise = { bo = \"<BO id>\", madv = \"WILLNEED\" | \"DONTNEED\" }")
        else:
            value = _address(r, kind, r.get(kind, (str, int)), bos)
        r.check_unknown()
        out.append(EventSpec(at, kind, client, value, r.line or 0))
    return tuple(sorted(out, key=lambda e: e.at))
