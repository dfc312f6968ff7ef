"""A binary client for tests: pack a struct into fake user memory, call drm_ioctl, read it back."""

from __future__ import annotations

from typing import Any

from vdrm.drm.ioctl import drm_ioctl
from vdrm.drm.uaccess import FakeUserMemory


class BinaryClient:
    """One process's view: its user memory and the DRM files it holds."""

    def __init__(self, mem: FakeUserMemory | None = None):
        self.mem = mem or FakeUserMemory()

    def string(self, text: str | bytes) -> int:
        """A NUL-terminated string in user memory; its address."""
        data = text.encode() if isinstance(text, str) else text
        return self.mem.alloc(data + b"\0")

    def array(self, values: list[int], width: int = 4) -> int:
        """A packed little-endian array in user memory; its address."""
        return self.mem.alloc(b"".join(v.to_bytes(width, "little") for v in values) or b"\0")

    def call(self, file: Any, name: str, /, **fields: int) -> tuple[int, dict[str, int]]:
        """Run ioctl ``name`` with ``fields`` (others 0); returns (ret, fields after)."""
        ioctl = file.dev.ioctls[name]
        struct = ioctl.struct
        if struct is None:
            return drm_ioctl(file, ioctl.cmd, 0, self.mem), {}
        addr = self.mem.alloc(struct.pack(fields))
        ret = drm_ioctl(file, ioctl.cmd, addr, self.mem)
        return ret, struct.unpack(self.mem.peek(addr, struct.size))
