"""A DRM file (``struct drm_file``): one open of a card or render node, i.e. one client.

Each open is its own client: a ``drm-client-id`` from the device's counter, its own GEM
handle table, an optional client name (``DRM_IOCTL_SET_CLIENT_NAME``, 6.13+), the pid and
comm of the process that opened it, and the driver's per-file state (``driver_priv``;
Panfrost keeps the GPU address space there). dup'd and inherited fds share the file; it
is released when the last of them closes (``DrmDevice.release``).

Owner (6.4+, "drm: Update file owner during use"): ``drm_ioctl_kernel()`` first calls
``drm_file_update_pid()``, so the process (thread group) that makes an ioctl on the file
becomes its owner, the pid and command that debugfs ``clients`` and ``sched_ctxs`` (and
vdrm's truth) show, unless the file ever was DRM master (``was_master``: master files keep
their opener for ``drm_master_check_perm``). Only ioctls move it: an ioctl number the
kernel does not know is refused in ``drm_ioctl()`` before that call, and read, mmap or
close never move it. :meth:`DrmFile.update_pid` is that step; whoever dispatches an ioctl
for a known caller calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdrm.drm.gem import HandleTable, handle_delete
from vdrm.errors import InvalidArgument

if TYPE_CHECKING:
    from vdrm.drm.auth import DrmMaster
    from vdrm.drm.device import DrmDevice

# DRM_CLIENT_NAME_MAX_LEN (drm_file.h, 6.13+)
CLIENT_NAME_MAX_LEN = 64


class DrmFile:
    """``struct drm_file``: one DRM client with its handles and driver state."""

    def __init__(self, dev: "DrmDevice", minor: int, client_id: int, *, pid: int, comm: str, uid: int = 0):
        self.dev = dev
        self.minor = minor
        self.client_id = client_id
        self.pid = pid
        self.comm = comm
        self.uid = uid
        self.master: "DrmMaster | None" = None  # card0 clients: the master they belong to
        self.is_master = False  # owns its master object (stays set after DROP_MASTER)
        self.was_master = False  # has been master: may SET_MASTER again without CAP_SYS_ADMIN
        self.magic = 0  # GET_MAGIC token, 0 = none yet
        self.authenticated = uid == 0  # capable(CAP_SYS_ADMIN) at open, or master, or AUTH_MAGIC
        self.client_name: str | None = None
        self.handles = HandleTable()
        self.driver_priv: Any = None
        self.closed = False

    def update_pid(self, pid: int, comm: str) -> bool:
        """``drm_file_update_pid``: the ioctl caller's thread group becomes the owner (no
        change for a file that was master). True when the owner changed."""
        if self.was_master or pid == self.pid:
            return False
        self.pid, self.comm = pid, comm
        return True

    def set_client_name(self, name: str) -> None:
        """DRM_IOCTL_SET_CLIENT_NAME: printable ASCII without spaces, at most 64 bytes.

        An empty name clears it, as a zero-length name does in the kernel.
        """
        if len(name) > CLIENT_NAME_MAX_LEN:
            raise InvalidArgument(f"client name is {len(name)} bytes, at most {CLIENT_NAME_MAX_LEN}")
        if any(not (0x21 <= ord(c) <= 0x7E) for c in name):
            raise InvalidArgument("client name must be printable ASCII without spaces")
        self.client_name = name or None

    def release_handles(self) -> None:
        """Delete every handle, lowest first (``drm_gem_release``)."""
        for handle, _ in list(self.handles.items()):
            handle_delete(self, handle)
