"""The DRM core's debugfs files (``drm_debugfs.c``), which every driver's minor directory has.

``clients`` (``drm_clients_info``)
    one row per open file, oldest first: command, tgid, minor, master, authenticated,
    uid, magic; 6.13+ adds the client name column (64 wide), 6.17+ the client id. Which
    columns print is asked of the driver's release table (``Driver.has``).
``gem_names`` (``drm_gem_name_info``)
    flink names: name, size, handle count, refcount.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vdrm.drm import releases as core
from vdrm.drm.auth import is_current_master

if TYPE_CHECKING:
    from vdrm.drm.device import DrmDevice
    from vdrm.drm.file import DrmFile

CLIENT_NAME_MAX_LEN = 64
TASK_COMM_LEN = 16  # include/linux/sched.h: comm holds 15 characters and a NUL


def clients(drm: "DrmDevice") -> str:
    """``drm_clients_info``."""
    has = drm.driver.has
    names, ids = has(core.CLIENT_NAME), has(core.DEBUGFS_CLIENTS_ID)
    head = f"{'command':>20} {'tgid':>5} {'dev':>3} master a {'uid':>5} {'magic':>10}"
    if names:
        head += f" {'name':>{CLIENT_NAME_MAX_LEN}}"
    if ids:
        head += f" {'id':>20}"
    out = [head + "\n"]
    for file in drm.files.values():
        row = (f"{comm(file):>20} {file.pid:5d} {file.minor:3d}   "
               f"{'y' if is_current_master(file) else 'n'}    {'y' if file.authenticated else 'n'} "
               f"{file.uid:5d} {file.magic:10d}")
        if names:
            row += f" {file.client_name or '<unset>':>{CLIENT_NAME_MAX_LEN}}"
        if ids:
            row += f" {file.client_id:20d}"
        out.append(row + "\n")
    return "".join(out)


def comm(file: "DrmFile") -> str:
    """The owning task's ``comm`` as the kernel holds it (``<unknown>`` without a task)."""
    return file.comm[:TASK_COMM_LEN - 1] if file.comm else "<unknown>"


def gem_names(drm: "DrmDevice") -> str:
    """``drm_gem_name_info``: objects that have a flink name, by name."""
    out = ["  name     size handles refcount\n"]
    for name in sorted(drm.flink_names):
        obj = drm.flink_names[name]
        out.append(f"{name:6d} {obj.size:8d} {obj.handle_count:7d} {obj.refcount:8d}\n")
    return "".join(out)
