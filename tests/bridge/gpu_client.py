"""A Python GPU client: ``fcntl.ioctl`` with ctypes structs, as a user's own tool would do.

``gpu_client.py`` does the same steps as ``gpu_client.c basic``, printing the same
``key=value`` lines; ``gpu_client.py bad`` sends bad input and prints each errno. Struct
layouts and numbers are declared here from the kernel's uAPI headers (``drm.h``,
``panfrost_drm.h``), plus vdrm's FAULT.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import stat
import sys
import time


def _ioc(direction: int, nr: int, struct: type) -> int:
    return (direction << 30) | (ctypes.sizeof(struct) << 16) | (ord("d") << 8) | nr


class Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int32), ("minor", ctypes.c_int32), ("patchlevel", ctypes.c_int32),
                ("name_len", ctypes.c_uint64), ("name", ctypes.c_uint64),
                ("date_len", ctypes.c_uint64), ("date", ctypes.c_uint64),
                ("desc_len", ctypes.c_uint64), ("desc", ctypes.c_uint64)]


class GetParam(ctypes.Structure):
    _fields_ = [("param", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("value", ctypes.c_uint64)]


class CreateBo(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("handle", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("offset", ctypes.c_uint64)]


class Submit(ctypes.Structure):
    _fields_ = [("jc", ctypes.c_uint64), ("in_syncs", ctypes.c_uint64), ("in_sync_count", ctypes.c_uint32),
                ("out_sync", ctypes.c_uint32), ("bo_handles", ctypes.c_uint64),
                ("bo_handle_count", ctypes.c_uint32), ("requirements", ctypes.c_uint32),
                ("jm_ctx_handle", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class WaitBo(ctypes.Structure):
    _fields_ = [("handle", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("timeout_ns", ctypes.c_int64)]


class VdrmFault(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint64), ("exception", ctypes.c_uint32), ("access", ctypes.c_uint32),
                ("source_id", ctypes.c_uint32), ("as_", ctypes.c_uint32), ("populated", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class SetLabelBo(ctypes.Structure):
    _fields_ = [("handle", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("label", ctypes.c_uint64)]


BASE = 0x40
VERSION = _ioc(3, 0x00, Version)
SUBMIT = _ioc(1, BASE + 0x00, Submit)
WAIT_BO = _ioc(1, BASE + 0x01, WaitBo)
CREATE_BO = _ioc(3, BASE + 0x02, CreateBo)
GET_PARAM = _ioc(3, BASE + 0x04, GetParam)
VDRM_FAULT = _ioc(3, BASE + 0x5E, VdrmFault)
SET_LABEL_BO = _ioc(3, BASE + 0x09, SetLabelBo)
UNMAPPED = 0x10  # the first page is never mapped


def errno_of(fd: int, cmd: int, arg: object) -> int:
    try:
        fcntl.ioctl(fd, cmd, arg)
    except OSError as e:
        return e.errno
    return 0


def bad() -> int:
    """Bad input, each answered with the kernel's errno; then the client still works."""
    fd = os.open("/dev/dri/renderD128", os.O_RDWR)
    bo = CreateBo(size=4096)
    fcntl.ioctl(fd, CREATE_BO, bo)
    print(f"unknown_driver_nr={errno_of(fd, _ioc(3, BASE + 0x30, GetParam), bytearray(16))}")
    print(f"unknown_core_nr={errno_of(fd, _ioc(3, 0x3F, GetParam), bytearray(16))}")
    short = bytearray(8)  # GET_PARAM with half its struct: param 0, no room for the value
    print(f"short_get_param={errno_of(fd, (3 << 30) | (8 << 16) | (ord('d') << 8) | (BASE + 0x04), short)}")
    print(f"bad_struct_pointer={errno_of(fd, GET_PARAM, UNMAPPED)}")
    job = Submit(jc=0x1000, bo_handles=UNMAPPED, bo_handle_count=1)
    print(f"submit_bad_bo_handles={errno_of(fd, SUBMIT, job)}")
    page = ctypes.CDLL(None).getpagesize()
    label = SetLabelBo(handle=bo.handle, label=(1 << 47) - page)  # past the end of user space
    print(f"label_past_end={errno_of(fd, SET_LABEL_BO, label)}")
    print(f"unknown_handle_wait={errno_of(fd, WAIT_BO, WaitBo(handle=99))}")
    p = GetParam(param=0)
    fcntl.ioctl(fd, GET_PARAM, p)
    print(f"still_serving={p.value:#x}")
    os.close(fd)
    return 0


def main() -> int:
    fd = os.open("/dev/dri/renderD128", os.O_RDWR | os.O_CLOEXEC)
    st = os.fstat(fd)
    print(f"chr={int(stat.S_ISCHR(st.st_mode))}\nrdev={os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    v = Version()
    fcntl.ioctl(fd, VERSION, v)
    name = ctypes.create_string_buffer(v.name_len + 1)
    v.name = ctypes.addressof(name)
    v.date_len = v.desc_len = 0
    fcntl.ioctl(fd, VERSION, v)
    print(f"driver={name.value.decode()}\nversion={v.major}.{v.minor}.{v.patchlevel}")
    p = GetParam(param=0)
    fcntl.ioctl(fd, GET_PARAM, p)
    print(f"prod_id={p.value:#x}")
    heap = CreateBo(size=8 << 20, flags=3)
    fcntl.ioctl(fd, CREATE_BO, heap)
    print(f"heap_offset={heap.offset:#x}")
    bo = CreateBo(size=1 << 20)
    fcntl.ioctl(fd, CREATE_BO, bo)
    fault = VdrmFault(addr=heap.offset, exception=0xC3, access=3)
    fcntl.ioctl(fd, VDRM_FAULT, fault)
    print(f"fault_populated={fault.populated}")
    handles = (ctypes.c_uint32 * 1)(bo.handle)
    fcntl.ioctl(fd, SUBMIT, Submit(jc=0x1000, bo_handles=ctypes.addressof(handles), bo_handle_count=1,
                                   requirements=1))
    fcntl.ioctl(fd, WAIT_BO, WaitBo(handle=bo.handle, timeout_ns=time.monotonic_ns() + 5_000_000_000))
    try:
        fcntl.ioctl(fd, CREATE_BO, CreateBo(size=0))
        print("zero_size=0")
    except OSError as e:
        print(f"zero_size=-1 errno={e.errno}")
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("drm-driver", "drm-client-id", "drm-total-memory", "drm-resident-memory"):
                print(f"{key}={value.strip()}")
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(bad() if sys.argv[1:] == ["bad"] else main())
