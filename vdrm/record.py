"""``vdrm record``: sample a machine's DRM clients and nodes into a trace file.

Read-only and safe as a normal user: it only reads ``/proc`` and ``/sys``, and records
what that user can see (other users' fds are skipped without a word: ``/proc/<pid>/fd``
is theirs). At each sample it takes, for every process holding a DRM node open
(an fd whose link names ``/dev/dri/card<N>`` or ``/dev/dri/renderD<N>``):

- each such fd's link target and its whole ``fdinfo`` text, byte for byte;
- the process's ``stat``, ``status``, ``comm`` and ``cmdline``;
- which fds share each client: fds grouped by (minor, ``drm-client-id``);

and once, the sysfs identity of every DRM node: ``/sys/class/drm/<node>`` (the link's
target, ``dev``, ``uevent``), its ``device`` link and the device's ``uevent``, PCI ids
(``vendor``, ``device``, ``subsystem_vendor``, ``subsystem_device``, ``class``,
``revision``) and ``profiling`` where it has them.

The one exception to read-only is asked for by name: ``--clock-step`` advances a vdrm
mount's virtual clock between samples (recording vdrm itself, for the round trip).

The trace (``TRACE_FORMAT``) is one JSON document; file contents are stored as text
decoded from UTF-8 with ``surrogateescape``, so every byte comes back (JSON escapes the
rest)::

    {"format": "vdrm-trace/1", "description": .., "recorded": {"by", "kernel", "uid", "interval_ns"},
     "devices": [{"name": "0000:03:00.0", "uevent": .., "attributes": {"vendor": "0x1002\\n", ..},
                  "nodes": [{"name": "card0", "minor": 0, "class_link": .., "dev": .., "uevent": ..}]}],
     "samples": [{"t_ns": 0,
                  "processes": {"<pid>": {"stat": .., "status": .., "comm": .., "cmdline": ..,
                                          "fds": {"<fd>": {"target": "/dev/dri/renderD128",
                                                           "fdinfo": "pos:\\t0\\n.."}}}},
                  "clients": [{"minor": 128, "drm-client-id": 7, "fds": [[pid, fd], ..]}]}]}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any, Sequence

TRACE_FORMAT = "vdrm-trace/1"
NODE = re.compile(r"(card|renderD)(\d+)")
PROCESS_FILES = ("stat", "status", "comm", "cmdline")
DEVICE_ATTRIBUTES = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision",
                     "profiling")
DRM_MAJOR = 226


class RecordError(Exception):
    """Nothing can be recorded (no /proc there, a bad option)."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return _text(f.read())
    except OSError:
        return None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _client_key(fdinfo: str) -> tuple[str, int] | None:
    """(drm-driver, drm-client-id) of an fdinfo text, or None if it is not a DRM client's."""
    driver = cid = None
    for line in fdinfo.splitlines():
        key, sep, value = line.partition(":")
        if key == "drm-driver":
            driver = value.strip()
        elif key == "drm-client-id":
            try:
                cid = int(value.strip())
            except ValueError:
                return None
    return (driver, cid) if driver is not None and cid is not None else None


def node_minor(target: str) -> int | None:
    """The DRM minor a ``/dev/dri/<node>`` path names (``renderD128`` -> 128)."""
    m = NODE.fullmatch(os.path.basename(target.removesuffix(" (deleted)")))
    return int(m.group(2)) if m else None


def sample_processes(proc: str = "/proc") -> dict[str, Any]:
    """One sample of every DRM client this user can see under ``proc``."""
    processes: dict[str, Any] = {}
    try:
        pids = sorted((name for name in os.listdir(proc) if name.isdigit()), key=int)
    except OSError as e:
        raise RecordError(f"cannot list {proc}: {e.strerror}") from None
    for pid in pids:
        base = f"{proc}/{pid}"
        try:
            fds = sorted(os.listdir(f"{base}/fd"), key=lambda n: int(n) if n.isdigit() else -1)
        except OSError:
            continue  # another user's process, or gone
        found: dict[str, Any] = {}
        for fd in fds:
            target = _readlink(f"{base}/fd/{fd}")
            if target is None or not target.startswith("/dev/dri/") or node_minor(target) is None:
                continue
            fdinfo = _read(f"{base}/fdinfo/{fd}")
            if fdinfo is None or _client_key(fdinfo) is None:
                continue
            found[fd] = {"target": target, "fdinfo": fdinfo}
        if not found:
            continue
        entry: dict[str, Any] = {name: _read(f"{base}/{name}") for name in PROCESS_FILES}
        if entry["stat"] is None:
            continue  # exited while we looked
        entry["fds"] = found
        processes[pid] = entry
    return processes


def clients_of(processes: dict[str, Any]) -> list[dict[str, Any]]:
    """Which fds share each client: grouped by (minor, drm-client-id), in pid/fd order."""
    groups: dict[tuple[int, int], list[list[int]]] = {}
    for pid, entry in processes.items():
        for fd, info in entry["fds"].items():
            key = _client_key(info["fdinfo"])
            minor = node_minor(info["target"])
            if key is None or minor is None:
                continue
            groups.setdefault((minor, key[1]), []).append([int(pid), int(fd)])
    return [{"minor": minor, "drm-client-id": cid, "fds": fds} for (minor, cid), fds in sorted(groups.items())]


def sysfs_identity(sys_root: str = "/sys") -> list[dict[str, Any]]:
    """Every DRM node's sysfs identity, grouped by the device its ``device`` link names."""
    class_dir = f"{sys_root}/class/drm"
    try:
        names = sorted(os.listdir(class_dir))
    except OSError:
        return []
    devices: dict[str, dict[str, Any]] = {}
    for name in names:
        m = NODE.fullmatch(name)
        if m is None:
            continue  # connectors (card0-HDMI-A-1), version
        base = f"{class_dir}/{name}"
        device_link = _readlink(f"{base}/device")
        if device_link is None:
            continue
        device = os.path.basename(device_link)
        entry = devices.setdefault(device, {
            "name": device, "link": device_link, "uevent": _read(f"{base}/device/uevent") or "",
            "attributes": {a: v for a in DEVICE_ATTRIBUTES if (v := _read(f"{base}/device/{a}")) is not None},
            "nodes": []})
        entry["nodes"].append({"name": name, "minor": int(m.group(2)), "class_link": _readlink(base),
                               "dev": _read(f"{base}/dev"), "uevent": _read(f"{base}/uevent")})
    return list(devices.values())


def record(*, samples: int, interval: float, proc: str = "/proc", sys_root: str = "/sys",
           clock_step: int | None = None, clock_file: str | None = None, description: str = "") -> dict[str, Any]:
    """A trace of ``samples`` samples, ``interval`` seconds apart (or one clock step apart)."""
    if samples < 1:
        raise RecordError("at least one sample")
    taken = []
    start = time.monotonic_ns()
    for i in range(samples):
        if i:
            if clock_step is not None:
                with open(clock_file or "/sys/kernel/debug/dri/128/vdrm-clock", "w") as f:
                    f.write(f"{clock_step}ns\n")
            else:
                time.sleep(interval)
        now = i * clock_step if clock_step is not None else time.monotonic_ns() - start
        processes = sample_processes(proc)
        taken.append({"t_ns": now, "processes": processes, "clients": clients_of(processes)})
    from vdrm import __version__

    return {"format": TRACE_FORMAT, "description": description,
            "recorded": {"by": f"vdrm record {__version__}", "kernel": os.uname().release, "uid": os.getuid(),
                         "interval_ns": clock_step if clock_step is not None else int(interval * 1e9)},
            "devices": sysfs_identity(sys_root), "samples": taken}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vdrm record", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Record every DRM client this user can see (fdinfo, stat, comm, cmdline, shared fds) "
                    "and the sysfs identity of each DRM node into one trace file. Read-only; safe as a "
                    "normal user (it records what that user can see).",
        epilog="""\
examples:
  vdrm record -o my-gpu.json --samples 5 --interval 1     # five samples, a second apart
  vdrm replay my-gpu.json -- nvtop -s                     # play it back to a tool

exit status: 0 written, 1 nothing recordable or the file cannot be written, 2 bad options.""")
    parser.add_argument("-o", "--output", required=True, metavar="TRACE", help="the trace file to write (- for stdout)")
    parser.add_argument("--samples", type=int, default=2, metavar="N", help="how many samples (default 2)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="real time between samples (default 1)")
    parser.add_argument("--description", default="", help="a line saying what was running")
    parser.add_argument("--proc", default="/proc", help=argparse.SUPPRESS)
    parser.add_argument("--sys", dest="sys_root", default="/sys", help=argparse.SUPPRESS)
    parser.add_argument("--clock-step", metavar="DURATION",
                        help="recording a vdrm mount: advance its virtual clock by this much between samples "
                             "instead of sleeping (the one write vdrm record ever makes)")
    parser.add_argument("--clock-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.samples < 1 or args.interval < 0:
        parser.error("--samples must be at least 1 and --interval not negative")
    step = None
    if args.clock_step is not None:
        from vdrm.drm import grammar
        from vdrm.errors import VdrmError

        try:
            step = grammar.parse_duration(args.clock_step, "--clock-step")
        except VdrmError as e:
            parser.error(str(e))
    try:
        trace = record(samples=args.samples, interval=args.interval, proc=args.proc, sys_root=args.sys_root,
                       clock_step=step, clock_file=args.clock_file, description=args.description)
    except (RecordError, OSError) as e:
        print(f"vdrm record: {e}", file=sys.stderr)
        return 1
    text = json.dumps(trace, indent=1) + "\n"
    try:
        if args.output == "-":
            sys.stdout.write(text)
        else:
            with open(args.output, "w") as f:
                f.write(text)
    except OSError as e:
        print(f"vdrm record: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 1
    clients = {(c["minor"], c["drm-client-id"]) for s in trace["samples"] for c in s["clients"]}
    nodes = sum(len(d["nodes"]) for d in trace["devices"])
    print(f"vdrm record: {len(trace['samples'])} samples, {len(clients)} clients, {nodes} DRM nodes"
          + ("" if args.output == "-" else f" -> {args.output}"), file=sys.stderr)
    return 0
