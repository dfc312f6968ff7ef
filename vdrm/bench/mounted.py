"""Parts 3, 4 (through the mount) and 5: vdrm's mount beside the ceiling filesystem.

Every figure is a side-by-side comparison in one run (:func:`~vdrm.bench.common.compare`):

* ``fdinfo_read``: open, read to EOF and close ``proc/<pid>/fdinfo/<fd>`` of this process's
  own open ``renderD128`` (vdrm) against ``file`` (ceiling);
* ``request``: one ``VERSION`` request written and its reply read on one open
  ``renderD128`` against a line echoed by the ceiling's ``echo``;
* ``fault_vs_round_trip``: one in-engine 2 MiB heap fault (sparse) against one ceiling
  round trip, alternating batches (the engine target: the fault costs at most half);
* ``kernel_fdinfo``: the same vdrm fdinfo read against the kernel's own
  ``/proc/self/fdinfo/<fd>`` (an ordinary file's), the stretch target;
* ``proc_walk``: what nvtop does each refresh — list ``proc/``, list each ``proc/<pid>/fd``,
  ``lstat`` each fd, read each ``fdinfo`` — over 1,000 and 10,000 emulated clients (a
  generated scenario) against the ceiling's tree of the same shape, with the time each
  scenario took to mount (``mount.py --daemon`` start to ready);
* scale: one client's fdinfo and one request with 10 clients against 10,000 clients ×
  10 BOs (real clients held open by a helper process), two daemons side by side, and
  the large daemon's RSS per client and per BO;
* concurrency: round trips per second with 1, 2, 8 and 32 client processes at once.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from vdrm.bench import speed
from vdrm.bench.common import CeilingMount, VdrmMount, compare

REQUEST = b"VERSION\n"
READ_SIZE = 65536


def read_file(path: str) -> int:
    """open, read to EOF, close: bytes read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        total = 0
        while True:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                return total
            total += len(chunk)
    finally:
        os.close(fd)


def round_trip(fd: int, line: bytes = REQUEST) -> bytes:
    os.write(fd, line)
    return os.read(fd, 4096)


def proc_walk(proc: str) -> int:
    """nvtop's refresh over ``proc``: fdinfo files read."""
    count = 0
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                os.lstat(f"{fd_dir}/{fd}")
                read_file(f"{proc}/{pid}/fdinfo/{fd}")
            except OSError:
                continue
            count += 1
    return count


def scenario_text(clients: int, bos: int, *, bo_size: str = "4K") -> str:
    """A scenario of ``clients`` emulated processes, each holding fd 3 on its own client."""
    out = ['description = "vdrm benchmark: many clients"\n', '[device]\nkernel = "6.18"\n'
           f'ram = "{max(1, (clients * bos * 4096) >> 30) + 1}G"\n']
    for i in range(1, clients + 1):
        out.append(f'[[client]]\nid = "c{i}"\n')
        for j in range(bos):
            out.append(f'[[client.bo]]\nid = "c{i}b{j}"\nsize = "{bo_size}"\nflags = ["NOEXEC"]\n')
    for i in range(1, clients + 1):
        out.append(f'[[process]]\npid = {i}\ncomm = "bench{i}"\nfds = {{ 3 = "c{i}" }}\n')
    return "".join(out)


def write_scenario(clients: int, bos: int, directory: str) -> str:
    path = Path(directory) / f"bench-{clients}x{bos}.toml"
    path.write_text(scenario_text(clients, bos))
    return str(path)


class _OpenNode:
    """This process's open ``renderD128`` on a vdrm mount (a DRM client)."""

    def __init__(self, mount: VdrmMount):
        self.fd = os.open(f"{mount.path}/dev/dri/renderD128", os.O_RDWR)
        self.fdinfo = f"{mount.path}/proc/{os.getpid()}/fdinfo/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)


def basic(*, batch: int = 300, repeats: int = 9, walk_clients: int = 1000, walk_repeats: int = 5,
          tmp: str | None = None) -> dict[str, Any]:
    """fdinfo reads, request round trips and the /proc walk, each against the ceiling."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vdrm-bench-") as tmpdir:
        scenario = write_scenario(walk_clients, 1, tmp or tmpdir)
        with CeilingMount(pids=walk_clients) as ceiling, VdrmMount() as vdrm:
            node = _OpenNode(vdrm)
            echo = os.open(f"{ceiling.path}/echo", os.O_RDWR)
            try:
                assert round_trip(node.fd).startswith(b"ok "), "vdrm did not answer VERSION"
                assert read_file(node.fdinfo) > 0
                out["fdinfo_read"] = compare(lambda: read_file(node.fdinfo),
                                             lambda: read_file(f"{ceiling.path}/file"),
                                             batch=batch, repeats=repeats).as_dict()
                with open(os.devnull, "rb") as plain:
                    own = f"/proc/self/fdinfo/{plain.fileno()}"
                    out["kernel_fdinfo"] = compare(lambda: read_file(node.fdinfo), lambda: read_file(own),
                                                   batch=batch, repeats=repeats).as_dict()
                out["request"] = compare(lambda: round_trip(node.fd), lambda: round_trip(echo),
                                         batch=batch, repeats=repeats).as_dict()
                # the engine target, side by side: one 2 MiB fault against one FUSE round trip
                fault = compare(speed.fault_op("sparse"), lambda: round_trip(echo),
                                batch=max(8, batch // 5), repeats=repeats)
                out["fault_vs_round_trip"] = {**fault.as_dict(), "fault_over_round_trip": 1 / fault.ratio}
            finally:
                os.close(echo)
                node.close()
            out["proc_walk"] = walk(ceiling, scenario, walk_clients, walk_repeats)
    return out


def walk(ceiling: CeilingMount, scenario: str, clients: int, repeats: int) -> dict[str, Any]:
    """The nvtop-style walk over a mounted ``scenario`` of ``clients`` against the ceiling."""
    # a scenario past the daemon's default client limit lifts it, as a user would
    with VdrmMount("--max-clients", str(max(clients, 1024)), scenario=scenario) as walked:
        found = proc_walk(f"{walked.path}/proc")
        if found < clients:
            raise RuntimeError(f"the /proc walk found {found} fdinfo files, not {clients}")
        w = compare(lambda: proc_walk(f"{walked.path}/proc"), lambda: proc_walk(f"{ceiling.path}/proc"),
                    batch=1, repeats=repeats)
        return {**w.as_dict(), "clients": clients, "seconds": 1 / w.a, "reference_seconds": 1 / w.b,
                "us_per_client": 1e6 / w.a / clients, "mount_seconds": walked.start_seconds}


def large_walk(*, clients: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    """:func:`walk` over ``clients`` (its own ceiling and scenario)."""
    with tempfile.TemporaryDirectory(prefix="vdrm-bench-") as tmpdir:
        scenario = write_scenario(clients, 1, tmpdir)
        with CeilingMount(pids=clients) as ceiling:
            return walk(ceiling, scenario, clients, repeats)


def _holder(path: str, clients: int, bos: int, ready: Any, done: Any) -> None:
    """Open ``clients`` DRM clients on ``path``, give each ``bos`` BOs, hold them until ``done``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = clients + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    fds = []
    try:
        for _ in range(clients):
            fds.append(os.open(path, os.O_RDWR))
        ready.put("opened")
        lines = b"CREATE_BO size=4K flags=NOEXEC\n" * bos
        for fd in fds:
            if bos:
                os.write(fd, lines)
                for _ in range(bos):
                    reply = os.read(fd, 4096)
                    if not reply.startswith(b"ok "):
                        raise RuntimeError(f"CREATE_BO failed: {reply!r}")
        ready.put("created")
        done.wait()
    except BaseException as e:  # noqa: BLE001 - tell the waiting parent
        ready.put(f"error {e}")
    finally:
        for fd in fds:
            os.close(fd)


class _Holder:
    """A helper process holding many DRM clients of one mount (real fds, real requests)."""

    def __init__(self, path: str, clients: int, bos: int):
        ctx = multiprocessing.get_context("fork")
        self.ready = ctx.Queue()
        self.done = ctx.Event()
        self.proc = ctx.Process(target=_holder, args=(path, clients, bos, self.ready, self.done))
        self.proc.start()

    def wait(self, what: str, timeout: float = 600) -> None:
        status = self.ready.get(timeout=timeout)
        if status != what:
            raise RuntimeError(f"the client holder failed: {status}")

    def close(self) -> None:
        self.done.set()
        self.proc.join(timeout=120)
        if self.proc.is_alive():
            self.proc.kill()


def scale(*, small: int = 10, large: int = 10_000, bos: int = 10, batch: int = 300,
          repeats: int = 9) -> dict[str, Any]:
    """One client's fdinfo and one request, ``small`` against ``large`` clients × ``bos``.

    The clients are real: a helper process per daemon holds them open, each with ``bos``
    4 KiB BOs made by CREATE_BO. The measured client is this process's own open, whose
    fdinfo is read through ``proc/<pid>/fdinfo/<fd>`` as a monitor reads it.
    """
    out: dict[str, Any] = {"small_clients": small, "large_clients": large, "bos_per_client": bos}
    # Past the daemon's default --max-clients / --max-bos: the holders are the benchmark's own.
    caps = ("--max-clients", str(2 * large + 16), "--max-bos", str(2 * (large + 1) * bos + 16))
    with VdrmMount(*caps) as a, VdrmMount(*caps) as b:
        out["rss_empty"] = b.rss()
        start = time.perf_counter()
        ha = _Holder(f"{a.path}/dev/dri/renderD128", small, bos)
        hb = _Holder(f"{b.path}/dev/dri/renderD128", large, bos)
        try:
            ha.wait("opened")
            hb.wait("opened")
            out["rss_clients"] = b.rss()
            ha.wait("created")
            hb.wait("created")
            out["setup_seconds"] = time.perf_counter() - start
            out["rss_clients_and_bos"] = b.rss()
            na, nb = _OpenNode(a), _OpenNode(b)
            try:
                for node in (na, nb):
                    os.write(node.fd, b"CREATE_BO size=4K flags=NOEXEC\n" * bos)
                    for _ in range(bos):
                        os.read(node.fd, 4096)
                assert read_file(na.fdinfo) and read_file(nb.fdinfo)
                fdinfo = compare(lambda: read_file(nb.fdinfo), lambda: read_file(na.fdinfo),
                                 batch=batch, repeats=repeats)
                request = compare(lambda: round_trip(nb.fd), lambda: round_trip(na.fd),
                                  batch=batch, repeats=repeats)
            finally:
                na.close()
                nb.close()
        finally:
            ha.close()
            hb.close()
    out["fdinfo"] = {**fdinfo.as_dict(), "cost_ratio": 1 / fdinfo.ratio}
    out["request"] = {**request.as_dict(), "cost_ratio": 1 / request.ratio}
    out["rss_per_client"] = (out["rss_clients"] - out["rss_empty"]) / large
    out["rss_per_bo"] = (out["rss_clients_and_bos"] - out["rss_clients"]) / (large * bos)
    return out


def _worker(path: str, start: Any, stop_at: Any, results: Any) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        round_trip(fd)
        start.wait()
        deadline = stop_at.value
        count = 0
        while time.monotonic() < deadline:
            for _ in range(20):
                round_trip(fd)
            count += 20
        results.put(count)
    finally:
        os.close(fd)


def throughput(path: str, processes: int, seconds: float) -> float:
    """Round trips per second, summed over ``processes`` clients each on its own open."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    stop_at = ctx.Value("d", 0.0)
    results = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(path, start, stop_at, results)) for _ in range(processes)]
    for w in workers:
        w.start()
    time.sleep(0.2 + 0.01 * processes)  # every worker has opened and is waiting
    t0 = time.monotonic()
    stop_at.value = t0 + seconds
    start.set()
    counts = [results.get(timeout=60 + seconds) for _ in workers]
    elapsed = time.monotonic() - t0
    for w in workers:
        w.join(timeout=30)
    return sum(counts) / elapsed


def concurrency(*, processes: tuple[int, ...] = (1, 2, 8, 32), seconds: float = 1.5,
                repeats: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with CeilingMount() as ceiling, VdrmMount() as vdrm:
        v_path = f"{vdrm.path}/dev/dri/renderD128"
        c_path = f"{ceiling.path}/echo"
        for n in processes:
            samples = []
            for _ in range(repeats):
                rc = throughput(c_path, n, seconds)
                rv = throughput(v_path, n, seconds)
                samples.append((rv, rc))
            out[str(n)] = {"rate": statistics.median(s[0] for s in samples),
                           "reference_rate": statistics.median(s[1] for s in samples),
                           "ratio": statistics.median(s[0] / s[1] for s in samples),
                           "samples": [list(s) for s in samples]}
    one = out[str(processes[0])]["rate"]
    for n in processes:
        out[str(n)]["vs_one_process"] = out[str(n)]["rate"] / one
    return out


def fault_vs_round_trip(mount: dict[str, Any]) -> dict[str, float]:
    """The engine target from part 3's side-by-side fault / round-trip comparison."""
    f = mount["fault_vs_round_trip"]
    return {"fault_us": 1e6 / f["rate"], "ceiling_round_trip_us": 1e6 / f["reference_rate"],
            "vdrm_round_trip_us": 1e6 / mount["request"]["rate"],
            "fault_over_ceiling_round_trip": f["fault_over_round_trip"],
            "fault_over_vdrm_round_trip": mount["request"]["rate"] / f["rate"]}


def timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    print(f"  [{label}: {time.perf_counter() - start:.1f} s]", flush=True)
    return result
