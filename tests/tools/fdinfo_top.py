#!/usr/bin/env python3
"""fdinfo_top: the project's own DRM fdinfo parser, walking ``/proc`` as the real tools do.

Written after ``/work/shared/spec/fdinfo-consumers.md`` (nvtop, igt gputop, qmassa), so
that running it under ``mount.py --run`` checks what those tools need from vdrm:

- ``opendir("/proc")``; keep entries whose **d_type is DT_DIR** and whose name is numeric
  (read with ``readdir(3)`` itself: a DT_UNKNOWN entry is skipped, as nvtop skips it);
- the pid needs ``comm`` and ``cmdline`` (qmassa skips it otherwise);
- in ``fd/``, ``stat()`` each entry following links: only **S_IFCHR with major 226**
  counts, and the minor is recorded (igt, qmassa); ``fdinfo/<n>`` must be DT_REG;
- ``fdinfo/<n>`` is read with **one read of at most 4095 bytes** (igt), then parsed:
  ``drm-driver``, ``drm-client-id`` (kept whole: no u32 truncation), ``drm-client-name``,
  ``drm-pdev``, ``drm-engine-<e>`` (`` ns``; ``drm-engine-capacity-<e>`` first),
  ``drm-cycles-<e>``, ``drm-total-cycles-<e>`` (xe: utilisation is then Δcycles over
  Δtotal-cycles), ``drm-{max,cur}freq-<e>`` (`` Hz``), and
  ``drm-{total,shared,resident,purgeable,active}-<region>`` with ``KiB``/``MiB``/``GiB``
  scaled and anything else as bytes; a file without ``drm-driver`` and ``drm-client-id``
  is ignored;
- clients are deduplicated on **(minor, drm-client-id) across all processes** (igt): a
  dup'd fd, a second fd or an inherited one add a (pid, fd) to the same client;
- the device of a minor is the basename of ``/sys/class/drm/<node>/device`` (qmassa),
  and its ``device/profiling`` is reported;
- two samples; between them either ``--clock-step`` (written to vdrm's virtual clock,
  the step is then the wall delta) or ``--interval`` seconds of real time. Engine time
  that went backwards keeps the larger previous value (nvtop's guard): its delta is 0.

Prints one JSON object: ``{"interval_ns": .., "clients": [..]}``, clients sorted by
(minor, client id), each with ``utilisation`` per engine = delta / interval.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import stat
import sys
import time

DRM_MAJOR = 226
DT_DIR, DT_REG, DT_LNK = 4, 8, 10
FDINFO_READ = 4095
MEMORY_KEY = re.compile(r"drm-(total|shared|resident|purgeable|active)-(.+)")
UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
DURATION = re.compile(r"(\d+)(ns|us|ms|s)")
NS_PER = {"ns": 1, "us": 1000, "ms": 1_000_000, "s": 1_000_000_000}


class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = (ctypes.c_char_p,)
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.readdir.argtypes = (ctypes.c_void_p,)
_libc.closedir.argtypes = (ctypes.c_void_p,)


def readdir(path: str) -> list[tuple[str, int]]:
    """(name, d_type) of every entry, as ``readdir(3)`` gives them; [] if unreadable."""
    handle = _libc.opendir(path.encode())
    if not handle:
        return []
    entries = []
    try:
        while True:
            entry = _libc.readdir(handle)
            if not entry:
                return entries
            name = entry.contents.d_name.decode(errors="surrogateescape")
            if name not in (".", ".."):
                entries.append((name, entry.contents.d_type))
    finally:
        _libc.closedir(handle)


def parse_size(value: str) -> int:
    number, _, unit = value.partition(" ")
    return int(number) * UNITS.get(unit.strip(), 1)


def parse_fdinfo(text: str) -> dict | None:
    """The DRM keys of one fdinfo text; None unless it names a driver and a client id."""
    client: dict = {"engines": {}, "memory": {}}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("drm-"):
            continue
        value = value.strip()
        try:
            if key == "drm-driver":
                client["driver"] = value
            elif key == "drm-client-id":
                client["client_id"] = int(value)
            elif key in ("drm-client-name", "drm-pdev"):
                client[key[4:].replace("-", "_")] = value
            elif key.startswith("drm-engine-capacity-"):
                client["engines"].setdefault(key[20:], {})["capacity"] = int(value)
            elif key.startswith("drm-engine-"):
                if value.endswith(" ns"):  # nvtop drops an engine without the exact unit
                    client["engines"].setdefault(key[11:], {})["busy_ns"] = int(value[:-3])
            elif key.startswith("drm-cycles-"):
                client["engines"].setdefault(key[11:], {})["cycles"] = int(value)
            elif key.startswith("drm-total-cycles-"):
                client["engines"].setdefault(key[17:], {})["total_cycles"] = int(value)
            elif key.startswith(("drm-maxfreq-", "drm-curfreq-")) and value.endswith(" Hz"):
                client["engines"].setdefault(key[12:], {})[key[4:11] + "_hz"] = int(value[:-3])
            elif m := MEMORY_KEY.fullmatch(key):
                client["memory"].setdefault(m.group(2), {})[m.group(1)] = parse_size(value)
        except ValueError:
            continue  # a malformed value drops that key, not the file
    if "driver" not in client or "client_id" not in client:
        return None
    return client


def sample(proc: str = "/proc", sys_drm: str = "/sys/class/drm") -> dict[tuple[int, int], dict]:
    """Every DRM client reachable from ``proc``, keyed by (minor, client id)."""
    clients: dict[tuple[int, int], dict] = {}
    for name, d_type in readdir(proc):
        if d_type != DT_DIR or not name.isdigit():
            continue
        base = f"{proc}/{name}"
        try:
            with open(f"{base}/comm", "rb") as f:
                comm = f.read().decode(errors="replace").rstrip("\n")
            with open(f"{base}/cmdline", "rb") as f:
                f.read()
        except OSError:
            continue
        fdinfo_types = dict(readdir(f"{base}/fdinfo"))
        for fd, _ in readdir(f"{base}/fd"):
            try:
                st = os.stat(f"{base}/fd/{fd}")  # follows the link, as fstatat(.., 0)
            except OSError:
                continue
            if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != DRM_MAJOR:
                continue
            if fdinfo_types.get(fd) != DT_REG:
                continue
            try:
                fdinfo_fd = os.open(f"{base}/fdinfo/{fd}", os.O_RDONLY)
                try:
                    text = os.read(fdinfo_fd, FDINFO_READ).decode(errors="replace")
                finally:
                    os.close(fdinfo_fd)
            except OSError:
                continue
            parsed = parse_fdinfo(text)
            if parsed is None:
                continue
            minor = os.minor(st.st_rdev)
            key = (minor, parsed["client_id"])
            client = clients.setdefault(key, {**parsed, "minor": minor, "pids": [], "fds": [],
                                              "comm": comm, **device_of(minor, sys_drm)})
            if int(name) not in client["pids"]:
                client["pids"].append(int(name))
            client["fds"].append([int(name), int(fd)])
    return clients


def device_of(minor: int, sys_drm: str) -> dict:
    """qmassa's device name (basename of the ``device`` link) and the profiling knob."""
    node = "card0" if minor == 0 else f"renderD{minor}"
    out: dict = {"node": node}
    try:
        out["device"] = os.path.basename(os.readlink(f"{sys_drm}/{node}/device"))
        with open(f"{sys_drm}/{node}/device/profiling") as f:
            out["profiling"] = f.read().strip()
    except OSError:
        pass
    return out


def utilisation(before: dict, after: dict, interval_ns: int) -> dict:
    """``after`` with per-engine deltas and utilisation over ``interval_ns``."""
    result = {k: v for k, v in after.items() if k != "engines"}
    result["engines"] = {}
    for engine, now in after["engines"].items():
        row = dict(now)
        prev = before["engines"].get(engine, {}).get("busy_ns")
        if "busy_ns" in now and prev is not None:
            delta = max(0, now["busy_ns"] - prev)  # time going backwards: keep the larger value
            row["delta_ns"] = delta
            row["utilisation"] = delta / interval_ns / now.get("capacity", 1)
        elif "total_cycles" in now and "cycles" in now:  # xe: busy cycles over the GPU timestamp
            then = before["engines"].get(engine, {})
            total = now["total_cycles"] - then.get("total_cycles", now["total_cycles"])
            if total > 0:
                busy = max(0, now["cycles"] - then.get("cycles", now["cycles"]))
                row["utilisation"] = busy / total / now.get("capacity", 1)
        result["engines"][engine] = row
    return result


def parse_duration(text: str) -> int:
    m = DURATION.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 500ms")
    return int(m.group(1)) * NS_PER[m.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clock-step", type=parse_duration, metavar="DURATION",
                        help="between the samples, advance vdrm's virtual clock by this much")
    parser.add_argument("--clock-file", default="/sys/kernel/debug/dri/128/vdrm-clock")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (real time)")
    parser.add_argument("--proc", default="/proc")
    args = parser.parse_args(argv)
    first = sample(args.proc)
    if args.clock_step is not None:
        with open(args.clock_file, "w") as f:
            f.write(f"{args.clock_step}ns\n")
        interval_ns = args.clock_step
    else:
        start = time.monotonic_ns()
        time.sleep(args.interval)
        interval_ns = time.monotonic_ns() - start
    second = sample(args.proc)
    clients = [utilisation(first.get(key, second[key]), second[key], interval_ns) for key in sorted(second)]
    json.dump({"interval_ns": interval_ns, "clients": clients}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
