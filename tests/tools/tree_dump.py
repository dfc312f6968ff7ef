#!/usr/bin/env python3
"""Print, as one JSON object, every file of the tree a trace records: for each process
holding a DRM node, its stat/status/comm/cmdline, fd links and fdinfo texts; for each
DRM node, /dev/dri's device numbers and /sys/class/drm's links, dev, uevent and its
device's link, uevent and attributes. Run inside a namespace (``vdrm run`` / ``vdrm
replay``) to compare two trees byte for byte."""

from __future__ import annotations

import json
import os
import sys

ATTRS = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "profiling")


def read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None


def dump(proc: str = "/proc", sys_drm: str = "/sys/class/drm", dev_dri: str = "/dev/dri") -> dict[str, object]:
    out: dict[str, object] = {}
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        try:
            fds = os.listdir(f"{proc}/{pid}/fd")
        except OSError:
            continue
        drm = {}
        for fd in fds:
            try:
                target = os.readlink(f"{proc}/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/dev/dri/"):
                drm[fd] = target
        if not drm:
            continue
        for name in ("stat", "status", "comm", "cmdline"):
            out[f"proc/{pid}/{name}"] = read(f"{proc}/{pid}/{name}")
        for fd, target in sorted(drm.items()):
            out[f"proc/{pid}/fd/{fd}"] = target
            out[f"proc/{pid}/fdinfo/{fd}"] = read(f"{proc}/{pid}/fdinfo/{fd}")
    for node in sorted(os.listdir(sys_drm)):
        base = f"{sys_drm}/{node}"
        out[f"sys/class/drm/{node}"] = os.readlink(base)
        out[f"sys/class/drm/{node}/dev"] = read(f"{base}/dev")
        out[f"sys/class/drm/{node}/uevent"] = read(f"{base}/uevent")
        out[f"sys/class/drm/{node}/device"] = os.path.basename(os.readlink(f"{base}/device"))
        out[f"sys/class/drm/{node}/device/uevent"] = read(f"{base}/device/uevent")
        for attr in ATTRS:
            if (text := read(f"{base}/device/{attr}")) is not None:
                out[f"sys/class/drm/{node}/device/{attr}"] = text
    for node in sorted(os.listdir(dev_dri)):
        st = os.lstat(f"{dev_dri}/{node}")
        out[f"dev/dri/{node}"] = f"{oct(st.st_mode)} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return out


if __name__ == "__main__":
    json.dump(dump(*sys.argv[1:]), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
