"""Panthor's binary uAPI (``include/uapi/drm/panthor_drm.h``): structs, numbers, object arrays.

Every Panthor ioctl is ``DRM_IOWR(DRM_COMMAND_BASE + id, struct drm_panthor_<type>)``,
ids in ``enum drm_panthor_ioctl_id`` order. Structs are declared field by field with the
header's names; a ``struct drm_panthor_obj_array`` member ``ops`` is flattened into
``ops_stride``, ``ops_count`` and the pointer ``ops`` (the header's ``ops.stride``,
``ops.count``, ``ops.array``).

What the generic :mod:`vdrm.drm.uapi` pointers do not cover, Panthor adds here:

:class:`ObjArray`
    ``PANTHOR_UOBJ_GET_ARRAY``: ``count`` objects of ``stride`` bytes each, each read as
    the kernel's struct: a stride shorter than the struct's mandatory part is EINVAL, a
    longer one must have zeros past the struct (else E2BIG, ``copy_struct_from_user``),
    missing tail fields read as zero.
:class:`QueryBuffer`
    DEV_QUERY's ``pointer``: NULL asks for the size (written to ``size``); otherwise
    ``PANTHOR_UOBJ_SET`` copies ``min(size, sizeof)`` bytes and zeroes the rest of the
    user's buffer, EINVAL when ``size`` is below the struct's mandatory part.

A handler hands a struct to :class:`QueryBuffer` through :class:`Results`: a dict of the
text reply's results that also holds values only the binary door writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vdrm.drm.uaccess import UserMemory, copy_from_user, copy_to_user
from vdrm.drm.uapi import (DRM_COMMAND_BASE, DRM_IOWR, USER_ARRAY_MAX_BYTES, Field, IoctlNumber, Struct,
                           UserArray, UserBuffer, UserString)
from vdrm.errors import InvalidArgument, OutOfMemory, TooBig


class Results(dict):
    """A handler's results (what the text reply lists) plus ``binary``: values for keys only
    the binary door writes (a struct's bytes for a user pointer); ``text_only`` keys are in
    the text reply but never written back to a struct."""

    def __init__(self, items: Mapping[str, Any], binary: Mapping[str, Any], text_only: frozenset[str] = frozenset()):
        super().__init__(items)
        self.binary = dict(binary)
        self.text_only = text_only

    def __contains__(self, key: object) -> bool:
        if key in self.text_only:
            return False
        return dict.__contains__(self, key) or key in self.binary

    def __getitem__(self, key: str) -> Any:
        if not dict.__contains__(self, key) and key in self.binary:
            return self.binary[key]
        return dict.__getitem__(self, key)


@dataclass(frozen=True)
class ObjArray(UserArray):
    """A ``drm_panthor_obj_array``: ``count`` elements of ``stride`` bytes, read as ``elem_struct``.

    ``min_size``: the struct's mandatory part (``PANTHOR_UOBJ_MIN_SIZE``), the shortest
    stride accepted. Each element is a dict of its fields.
    """

    stride: str = ""
    elem_struct: Struct | None = None
    min_size: int = 0

    def read(self, mem: UserMemory, addr: int, values: Mapping[str, int]) -> list[dict[str, int]]:
        n, stride = values[self.count], values[self.stride]
        struct = self.elem_struct
        if n == 0:
            return []
        if stride < self.min_size:
            raise InvalidArgument(f"{self.stride} = {stride}, below {struct.name}'s {self.min_size} bytes")
        if n * stride > USER_ARRAY_MAX_BYTES:
            raise OutOfMemory(f"{self.count} = {n} of {stride} bytes: more than {USER_ARRAY_MAX_BYTES}")
        data = copy_from_user(mem, addr, n * stride)
        out = []
        for i in range(n):
            raw = data[i * stride:(i + 1) * stride]
            if any(raw[struct.size:]):
                raise TooBig(f"element {i} of {self.stride} {stride} has non-zero bytes past {struct.name}")
            out.append(struct.unpack(raw[:struct.size].ljust(struct.size, b"\0")))
        return out


@dataclass(frozen=True)
class QueryBuffer(UserBuffer):
    """DEV_QUERY's output pointer (``count`` is the in/out ``size``); see the module doc."""

    min_size: int = 0

    def write(self, mem: UserMemory, addr: int, values: dict[str, int], result: Any) -> None:
        data: bytes = result
        if addr == 0:
            values[self.count] = len(data)
            return
        size = values[self.count]
        if size < self.min_size:
            raise InvalidArgument(f"size {size} is below the {self.min_size}-byte minimum of the queried struct")
        copy_to_user(mem, addr, data[:size] + bytes(max(0, size - len(data))))


def _array(name: str, elem: Struct, min_size: int | None = None) -> tuple[Field, ...]:
    pointer = ObjArray(count=f"{name}_count", stride=f"{name}_stride", elem_struct=elem,
                       min_size=elem.size if min_size is None else min_size)
    return (Field(f"{name}_stride", "u32"), Field(f"{name}_count", "u32"), Field(name, "u64", pointer=pointer))


def _nr(ioctl_id: int) -> int:
    return DRM_COMMAND_BASE + ioctl_id


# enum drm_panthor_ioctl_id
(DEV_QUERY, VM_CREATE, VM_DESTROY, VM_BIND, VM_GET_STATE, BO_CREATE, BO_MMAP_OFFSET, GROUP_CREATE,
 GROUP_DESTROY, GROUP_SUBMIT, GROUP_GET_STATE, TILER_HEAP_CREATE, TILER_HEAP_DESTROY, BO_SET_LABEL,
 SET_USER_MMIO_OFFSET, BO_SYNC, BO_QUERY_INFO) = range(17)
# vdrm's own, at the end of the driver range (not in any kernel header)
VDRM_TILER_OOM, VDRM_ADVANCE = 0x5E - DRM_COMMAND_BASE, 0x5F - DRM_COMMAND_BASE

LABEL_MAXLEN = 4096  # PANTHOR_BO_LABEL_MAXLEN, NUL included
NULL_LABEL = "\0"  # a NULL label pointer: clear the label

# -- the structs the kernel reads and writes ----------------------------------------------

GPU_INFO = Struct("drm_panthor_gpu_info", (
    Field("gpu_id", "u32"), Field("gpu_rev", "u32"), Field("csf_id", "u32"), Field("l2_features", "u32"),
    Field("tiler_features", "u32"), Field("mem_features", "u32"), Field("mmu_features", "u32"),
    Field("thread_features", "u32"), Field("max_threads", "u32"), Field("thread_max_workgroup_size", "u32"),
    Field("thread_max_barrier_size", "u32"), Field("coherency_features", "u32"),
    *(Field(f"texture_features{i}", "u32") for i in range(4)),
    Field("as_present", "u32"), Field("selected_coherency", "u32"),  # 1.6; padding before
    Field("shader_present", "u64"), Field("l2_present", "u64"), Field("tiler_present", "u64"),
    Field("core_features", "u32"), Field("pad", "u32"),
))
CSIF_INFO = Struct("drm_panthor_csif_info", (
    Field("csg_slot_count", "u32"), Field("cs_slot_count", "u32"), Field("cs_reg_count", "u32"),
    Field("scoreboard_slot_count", "u32"), Field("unpreserved_cs_reg_count", "u32"), Field("pad", "u32"),
))
TIMESTAMP_INFO = Struct("drm_panthor_timestamp_info", (
    Field("timestamp_frequency", "u64"), Field("current_timestamp", "u64"), Field("timestamp_offset", "u64"),
))
GROUP_PRIORITIES_INFO = Struct("drm_panthor_group_priorities_info", (
    Field("allowed_mask", "u8"), Field("pad0", "u8"), Field("pad1", "u8"), Field("pad2", "u8"),
))
QUERY_STRUCTS = (GPU_INFO, CSIF_INFO, TIMESTAMP_INFO, GROUP_PRIORITIES_INFO)

SYNC_OP = Struct("drm_panthor_sync_op", (Field("flags", "u32"), Field("handle", "u32"),
                                         Field("timeline_value", "u64")))
VM_BIND_OP = Struct("drm_panthor_vm_bind_op", (
    Field("flags", "u32"), Field("bo_handle", "u32"), Field("bo_offset", "u64"), Field("va", "u64"),
    Field("size", "u64"), Field("syncs_stride", "u32"), Field("syncs_count", "u32"), Field("syncs", "u64"),
))
QUEUE_CREATE = Struct("drm_panthor_queue_create", (
    Field("priority", "u8"), Field("pad0", "u8"), Field("pad1", "u8"), Field("pad2", "u8"),
    Field("ringbuf_size", "u32"),
))
QUEUE_SUBMIT = Struct("drm_panthor_queue_submit", (
    Field("queue_index", "u32"), Field("stream_size", "u32"), Field("stream_addr", "u64"),
    Field("latest_flush", "u32"), Field("pad", "u32"),
    Field("syncs_stride", "u32"), Field("syncs_count", "u32"), Field("syncs", "u64"),
))
BO_SYNC_OP = Struct("drm_panthor_bo_sync_op", (Field("handle", "u32"), Field("type", "u32"),
                                               Field("offset", "u64"), Field("size", "u64")))

DRM_PANTHOR_DEV_QUERY = Struct("drm_panthor_dev_query", (
    Field("type", "u32"), Field("size", "u32", "inout"),
    Field("pointer", "u64", pointer=QueryBuffer("size", min_size=4), result="info"),
))
DRM_PANTHOR_VM_CREATE = Struct("drm_panthor_vm_create", (
    Field("flags", "u32"), Field("id", "u32", "out"), Field("user_va_range", "u64", "inout"),
))
DRM_PANTHOR_VM_DESTROY = Struct("drm_panthor_vm_destroy", (Field("id", "u32"), Field("pad", "u32")))
DRM_PANTHOR_VM_BIND = Struct("drm_panthor_vm_bind", (
    Field("vm_id", "u32"), Field("flags", "u32"), *_array("ops", VM_BIND_OP),
))
DRM_PANTHOR_VM_GET_STATE = Struct("drm_panthor_vm_get_state", (Field("vm_id", "u32"), Field("state", "u32", "out")))
DRM_PANTHOR_BO_CREATE = Struct("drm_panthor_bo_create", (
    Field("size", "u64", "inout"), Field("flags", "u32"), Field("exclusive_vm_id", "u32"),
    Field("handle", "u32", "out"), Field("pad", "u32"),
))
DRM_PANTHOR_BO_MMAP_OFFSET = Struct("drm_panthor_bo_mmap_offset", (
    Field("handle", "u32"), Field("pad", "u32"), Field("offset", "u64", "out"),
))
DRM_PANTHOR_GROUP_CREATE = Struct("drm_panthor_group_create", (
    *_array("queues", QUEUE_CREATE),
    Field("max_compute_cores", "u8"), Field("max_fragment_cores", "u8"), Field("max_tiler_cores", "u8"),
    Field("priority", "u8"), Field("pad", "u32"),
    Field("compute_core_mask", "u64"), Field("fragment_core_mask", "u64"), Field("tiler_core_mask", "u64"),
    Field("vm_id", "u32"), Field("group_handle", "u32", "out"),
))
DRM_PANTHOR_GROUP_DESTROY = Struct("drm_panthor_group_destroy", (Field("group_handle", "u32"), Field("pad", "u32")))
DRM_PANTHOR_GROUP_SUBMIT = Struct("drm_panthor_group_submit", (
    Field("group_handle", "u32"), Field("pad", "u32"), *_array("queue_submits", QUEUE_SUBMIT),
))
DRM_PANTHOR_GROUP_GET_STATE = Struct("drm_panthor_group_get_state", (
    Field("group_handle", "u32"), Field("state", "u32", "out"), Field("fatal_queues", "u32", "out"),
    Field("pad", "u32"),
))
DRM_PANTHOR_TILER_HEAP_CREATE = Struct("drm_panthor_tiler_heap_create", (
    Field("vm_id", "u32"), Field("initial_chunk_count", "u32"), Field("chunk_size", "u32"),
    Field("max_chunks", "u32"), Field("target_in_flight", "u32"), Field("handle", "u32", "out"),
    Field("tiler_heap_ctx_gpu_va", "u64", "out"), Field("first_heap_chunk_gpu_va", "u64", "out"),
))
DRM_PANTHOR_TILER_HEAP_DESTROY = Struct("drm_panthor_tiler_heap_destroy", (Field("handle", "u32"),
                                                                         Field("pad", "u32")))
DRM_PANTHOR_BO_SET_LABEL = Struct("drm_panthor_bo_set_label", (
    Field("handle", "u32"), Field("pad", "u32"),
    Field("label", "u64", pointer=UserString(LABEL_MAXLEN, null=NULL_LABEL)),
))
DRM_PANTHOR_SET_USER_MMIO_OFFSET = Struct("drm_panthor_set_user_mmio_offset", (Field("offset", "u64"),))
DRM_PANTHOR_BO_SYNC = Struct("drm_panthor_bo_sync", _array("ops", BO_SYNC_OP))
DRM_PANTHOR_BO_QUERY_INFO = Struct("drm_panthor_bo_query_info", (
    Field("handle", "u32"), Field("extra_flags", "u32", "out"), Field("create_flags", "u32", "out"),
    Field("pad", "u32", "out"),  # zero on return
))
VDRM_TILER_OOM_STRUCT = Struct("drm_vdrm_tiler_oom", (
    Field("heap", "u32"), Field("renderpasses_in_flight", "u32"), Field("pending_frag_count", "u32"),
    Field("chunk_count", "u32", "out"), Field("new_chunk_gpu_va", "u64", "out"),
), doc="vdrm: a tiler out-of-memory event on a heap")
VDRM_ADVANCE_STRUCT = Struct("drm_vdrm_advance", (Field("by", "s64"), Field("now_ns", "u64", "out")),
                             doc="vdrm: one step of the virtual clock")


def number(ioctl_id: int, struct: Struct) -> IoctlNumber:
    """``DRM_IOCTL_PANTHOR(WR, id, type)``."""
    return DRM_IOWR(_nr(ioctl_id), struct)

