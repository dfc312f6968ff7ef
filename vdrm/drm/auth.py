"""DRM master and authentication (``drivers/gpu/drm/drm_auth.c``, 5.10+ rules).

A :class:`DrmMaster` is the kernel's ``struct drm_master``: the first primary-node
(``card0``) open while no master exists creates one and becomes it (authenticated); later
card0 opens share the current master (``file.master``) until they make their own with
SET_MASTER. Render-node clients have no master at all: the ioctls here are not
``DRM_RENDER_ALLOW`` and refuse them with EACCES before they get here.

* GET_MAGIC gives the file a token from its master's ``magic_map`` (lowest free id >= 1,
  the same token on every call); AUTH_MAGIC (``DRM_MASTER``) authenticates the file that
  holds a token and retires it (the id stays taken, its slot NULL), else EINVAL.
* SET_MASTER / DROP_MASTER first pass ``drm_master_check_perm``: a file that was master
  before (called from the same process) or CAP_SYS_ADMIN (vdrm: uid 0), else EACCES. Then
  SET_MASTER is 0 for the current master, EBUSY while another file is master, and makes
  the file master (a new ``drm_master`` if it never was one); DROP_MASTER is EINVAL unless
  the file is the current master.
* A file stays ``is_master`` after DROP_MASTER (the kernel's field means "owns a master
  object"); :func:`is_current_master` is what ``DRM_MASTER`` checks and debugfs prints.
* ``unique`` (GET_UNIQUE) belongs to the master and is empty until SET_VERSION asks for
  interface 1.1 or later (``drm_set_busid``): then it is the platform device's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vdrm.errors import AccessDenied, Busy, InvalidArgument

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile


class DrmMaster:
    """``struct drm_master``: the authentication tokens it handed out and its unique name."""

    def __init__(self) -> None:
        self.magic_map: dict[int, "DrmFile | None"] = {}
        self.unique = ""

    def alloc_magic(self, file: "DrmFile") -> int:
        """idr_alloc(&master->magic_map, file, 1, 0): the lowest free id >= 1."""
        magic = 1
        while magic in self.magic_map:
            magic += 1
        self.magic_map[magic] = file
        return magic


def is_current_master(file: "DrmFile") -> bool:
    """``drm_is_current_master``: the file owns the master the device currently has."""
    return file.is_master and file.master is not None and file.dev.master is file.master


def master_open(file: "DrmFile") -> None:
    """``drm_master_open`` (card0 only): become master if there is none, else share it."""
    dev = file.dev
    if dev.master is None:
        _new_set_master(file)
    else:
        file.master = dev.master


def master_release(file: "DrmFile") -> None:
    """``drm_master_release``: retire the file's token; a closing master leaves none."""
    if file.master is not None and file.magic:
        file.master.magic_map.pop(file.magic, None)
    if is_current_master(file):
        file.dev.master = None
    file.master = None


def _new_set_master(file: "DrmFile") -> None:
    file.master = DrmMaster()
    file.is_master = True
    file.authenticated = True
    file.dev.master = file.master
    file.was_master = True


def _check_perm(file: "DrmFile") -> None:
    if file.was_master:
        return  # the kernel also asks that the caller be the process that was master
    if file.uid != 0:
        raise AccessDenied("only a former master or CAP_SYS_ADMIN may change DRM master")


def set_master(file: "DrmFile") -> None:
    """DRM_IOCTL_SET_MASTER."""
    _check_perm(file)
    if is_current_master(file):
        return
    if file.dev.master is not None:
        raise Busy("another client is DRM master")
    if file.master is None:
        raise InvalidArgument("this file has no master (not a card0 client)")
    if not file.is_master:
        _new_set_master(file)
        return
    file.dev.master = file.master
    file.was_master = True


def drop_master(file: "DrmFile") -> None:
    """DRM_IOCTL_DROP_MASTER."""
    _check_perm(file)
    if not is_current_master(file):
        raise InvalidArgument("this client is not the current DRM master")
    file.dev.master = None


def get_magic(file: "DrmFile") -> int:
    """DRM_IOCTL_GET_MAGIC: this file's token, allocated on the first call."""
    if file.master is None:
        raise InvalidArgument("this file has no master (not a card0 client)")
    if not file.magic:
        file.magic = file.master.alloc_magic(file)
    return file.magic


def auth_magic(file: "DrmFile", magic: int) -> None:
    """DRM_IOCTL_AUTH_MAGIC: authenticate the holder of ``magic`` in this master's map."""
    holder = file.master.magic_map.get(magic) if file.master is not None else None
    if holder is None:
        raise InvalidArgument(f"no client holds magic {magic}")
    holder.authenticated = True
    file.master.magic_map[magic] = None


def set_busid(file: "DrmFile") -> None:
    """``drm_set_busid`` for a platform device: the master's unique is the device's name."""
    if file.master is not None:
        file.master.unique = file.dev.unique


def unique(file: "DrmFile") -> str:
    """What GET_UNIQUE answers: the file's master's unique name (empty before SET_VERSION)."""
    return file.master.unique if file.master is not None else ""
