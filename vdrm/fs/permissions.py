"""Who may reach what: the permission model of the mounted tree.

The mount uses ``default_permissions``, so the host kernel checks every path walk and
open against the modes and owners vdrm reports; vdrm itself refuses what the kernel
refuses beyond mode bits. The rows (each a test in ``tests/fs/test_permissions.py``,
run as two unprivileged users and root):

* ``dev/dri/card0``: mode and group as a distribution's udev sets them
  (``50-udev-default.rules``: ``SUBSYSTEM=="drm", KERNEL=="card*", GROUP="video"``, the
  default mode 0660): ``0660 root:video``; ``--card-mode`` and ``--card-group`` change it.
* ``dev/dri/renderD128``: ``KERNEL=="renderD*", GROUP="render", MODE="0666"``:
  ``0666 root:render`` (group root where the host has no ``render`` group).
* ``proc/<pid>/fdinfo/``: listed as ``0555`` like procfs, but since Linux 5.14 reading
  the directory or walking into it needs ptrace access to the process
  (``ptrace_may_access(PTRACE_MODE_READ_FSCREDS)``). vdrm grants it to the process's
  owner (same uid) and root, and answers everyone else ``EACCES``. (The kernel also
  requires a matching gid and a dumpable process, and honours CAP_SYS_PTRACE and Yama;
  vdrm does not model those.) ``fdinfo/<n>`` itself is opened only by the same users.
* ``ADVANCE`` (the virtual clock is device-wide): only the mount's owner (the uid the
  daemon runs as) and root; anyone else gets ``EACCES``, as a ``DRM_ROOT_ONLY`` ioctl.
  ``sys/kernel/debug`` (where ``vdrm-clock`` is) is root's only, as debugfs is.
* ``GEM_FLINK`` and ``GEM_OPEN`` are ``DRM_AUTH`` and not ``DRM_RENDER_ALLOW`` in the
  kernel: EACCES on render nodes and for unauthenticated card0 clients (the ioctl table's
  flags decide this, see :mod:`vdrm.drm.ioctl`).
"""

from __future__ import annotations

import grp
from dataclasses import dataclass


def group_id(name: str, fallback: int = 0) -> int:
    """The gid of group ``name`` on this host, or ``fallback`` where there is none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return fallback


@dataclass(frozen=True)
class NodeAccess:
    """Modes and groups of the DRM nodes (owner root, as udev leaves them)."""

    card_mode: int = 0o660
    card_gid: int = 0
    render_mode: int = 0o666
    render_gid: int = 0

    @classmethod
    def udev_default(cls) -> "NodeAccess":
        """udev's defaults on this host: card0 root:video 0660, renderD128 root:render 0666."""
        return cls(card_gid=group_id("video"), render_gid=group_id("render"))

    def of(self, node: str) -> tuple[int, int]:
        """``(mode, gid)`` of the node called ``node`` (``card0``, ``renderD128``)."""
        if node.startswith("card"):
            return self.card_mode, self.card_gid
        return self.render_mode, self.render_gid


def may_trace(caller_uid: int, owner_uid: int) -> bool:
    """vdrm's ``ptrace_may_access(PTRACE_MODE_READ_FSCREDS)``: same uid, or root."""
    return caller_uid == 0 or caller_uid == owner_uid
