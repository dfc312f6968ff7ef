"""Tests for vdrm.drm.uapi: request numbers, C struct layouts and pack/unpack."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdrm.drm.ioctl import CORE_IOCTLS
from vdrm.drm.uapi import (CTYPES, DRM_IO, DRM_IOR, DRM_IOW, DRM_IOWR, Field, Struct, ioc_dir, ioc_nr,
                           ioc_size, ioc_type)
from vdrm.panfrost.ioctl import PANFROST_IOCTLS

ALL = {i.name: i for i in (*CORE_IOCTLS, *PANFROST_IOCTLS)}

# Request codes as the kernel headers compute them (include/uapi/drm/drm.h and
# panfrost_drm.h; the Panfrost column is the kernel reference's table, section 3.1).
KERNEL_CMDS = {
    "VERSION": 0xC0406400, "GET_UNIQUE": 0xC0106401, "GET_MAGIC": 0x80046402,
    "SET_VERSION": 0xC0106407, "GEM_CLOSE": 0x40086409, "GEM_FLINK": 0xC008640A,
    "GEM_OPEN": 0xC010640B, "GET_CAP": 0xC010640C, "SET_CLIENT_CAP": 0x4010640D,
    "AUTH_MAGIC": 0x40046411, "SET_MASTER": 0x0000641E, "DROP_MASTER": 0x0000641F,
    "PRIME_HANDLE_TO_FD": 0xC00C642D, "PRIME_FD_TO_HANDLE": 0xC00C642E,
    "SET_CLIENT_NAME": 0xC01064D1,
    "SUBMIT": 0x40306440, "WAIT_BO": 0x40106441, "CREATE_BO": 0xC0186442, "MMAP_BO": 0xC0106443,
    "GET_PARAM": 0xC0106444, "GET_BO_OFFSET": 0xC0106445, "PERFCNT_ENABLE": 0x40086446,
    "PERFCNT_DUMP": 0x40086447, "MADVISE": 0xC00C6448, "SET_LABEL_BO": 0xC0106449,
    "JM_CTX_CREATE": 0xC008644A, "JM_CTX_DESTROY": 0xC008644B,
}


@pytest.mark.parametrize("name", sorted(KERNEL_CMDS))
def test_request_codes_are_the_kernels(name):
    """Each declared ioctl's request code is the one the kernel header computes."""
    assert ALL[name].cmd == KERNEL_CMDS[name], hex(ALL[name].cmd)


def test_vdrm_private_numbers_sit_above_panfrost_in_the_driver_range():
    """FAULT and ADVANCE are driver numbers 0x5e/0x5f: inside 0x40..0xa0, above Panfrost's 0x0d."""
    for name, nr in (("FAULT", 0x9E), ("ADVANCE", 0x9F)):
        assert ioc_nr(ALL[name].cmd) == nr and ALL[name].number.is_driver


@pytest.mark.parametrize(("struct_name", "offsets", "size"), [
    ("drm_version", {"version_major": 0, "name_len": 16, "name": 24, "date_len": 32, "desc": 56}, 64),
    ("drm_panfrost_submit", {"jc": 0, "in_syncs": 8, "in_sync_count": 16, "out_sync": 20,
                             "bo_handles": 24, "bo_handle_count": 32, "requirements": 36,
                             "jm_ctx_handle": 40, "pad": 44}, 48),
    ("drm_panfrost_create_bo", {"size": 0, "flags": 4, "handle": 8, "pad": 12, "offset": 16}, 24),
    ("drm_panfrost_madvise", {"handle": 0, "madv": 4, "retained": 8}, 12),
    ("drm_panfrost_wait_bo", {"handle": 0, "pad": 4, "timeout_ns": 8}, 16),
    ("drm_gem_open", {"name": 0, "handle": 4, "size": 8}, 16),
    ("drm_vdrm_fault", {"addr": 0, "exception": 8, "as": 20, "pad": 28}, 32),
])
def test_layouts_match_the_headers(struct_name, offsets, size):
    """Field offsets and struct sizes are those of the kernel's LP64 layout."""
    struct = next(i.struct for i in ALL.values() if i.struct is not None and i.struct.name == struct_name)
    assert struct.size == size
    assert {name: struct.offset(name) for name in offsets} == offsets


_C = {"u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64,
      "s8": ctypes.c_int8, "s16": ctypes.c_int16, "s32": ctypes.c_int32, "s64": ctypes.c_int64}


@given(st.lists(st.sampled_from(sorted(CTYPES)), min_size=1, max_size=10))
def test_layout_equals_the_c_compilers(ctypes_list):
    """Any list of members gets the offsets and size ctypes (the platform's C ABI) gives it."""
    fields = tuple(Field(f"f{i}", t) for i, t in enumerate(ctypes_list))
    struct = Struct("s", fields)
    c = type("C", (ctypes.Structure,), {"_fields_": [(f.name, _C[f.ctype]) for f in fields]})
    assert struct.size == ctypes.sizeof(c)
    assert [struct.offset(f.name) for f in fields] == [getattr(c, f.name).offset for f in fields]


def _value(ctype: str):
    bits = 8 * ctypes.sizeof(_C[ctype])
    if ctype.startswith("s"):
        return st.integers(min_value=-(1 << (bits - 1)), max_value=(1 << (bits - 1)) - 1)
    return st.integers(min_value=0, max_value=(1 << bits) - 1)


_STRUCTS = sorted({i.struct.name: i.struct for i in ALL.values() if i.struct is not None}.items())


@pytest.mark.parametrize(("name", "struct"), _STRUCTS, ids=[n for n, _ in _STRUCTS])
@given(data=st.data())
def test_pack_unpack_round_trips(name, struct, data):
    """Packing any in-range field values and unpacking them gives the same values, in size bytes."""
    values = {f.name: data.draw(_value(f.ctype)) for f in struct}
    packed = struct.pack(values)
    assert len(packed) == struct.size
    assert struct.unpack(packed) == values


def test_direction_and_size_decode():
    """ioc_dir/type/nr/size take a request code apart the way _IOC put it together."""
    s = Struct("s", (Field("a", "u64"),))
    for make, direction in ((DRM_IOR, 2), (DRM_IOW, 1), (DRM_IOWR, 3)):
        cmd = make(0x42, s).cmd
        assert (ioc_dir(cmd), ioc_type(cmd), ioc_nr(cmd), ioc_size(cmd)) == (direction, 0x64, 0x42, 8)
    assert DRM_IO(0x1E).cmd == 0x641E


def test_a_struct_refuses_bad_declarations():
    """Duplicate fields, unknown C types and non-u64 pointers are refused when declared."""
    from vdrm.drm.uapi import UserArray
    with pytest.raises(ValueError, match="duplicate"):
        Struct("s", (Field("a", "u32"), Field("a", "u32")))
    with pytest.raises(ValueError, match="C type"):
        Field("a", "int")
    with pytest.raises(ValueError, match="u64"):
        Field("p", "u32", pointer=UserArray("n"))
    with pytest.raises(ValueError, match="unknown field"):
        Struct("s", (Field("p", "u64", pointer=UserArray("n")),))
