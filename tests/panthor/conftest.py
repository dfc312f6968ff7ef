"""Fixtures for Panthor tests: a small RK3588 on the virtual clock, and requests by name."""

from __future__ import annotations

from typing import Any

from vdrm.drm.file import DrmFile
from vdrm.drm.gpu import DeviceConfig
from vdrm.fs import protocol
from vdrm.panthor.device import PanthorDevice

MiB = 1 << 20


def make_device(**overrides: Any) -> PanthorDevice:
    settings = dict(clock="virtual", ram_size=256 * MiB, fragmentation=0.3, seed=1, kernel=(6, 18))
    settings.update(overrides)
    return PanthorDevice(DeviceConfig(**settings))


def request(dev: PanthorDevice, file: DrmFile, line: str) -> str:
    """One text-protocol request, as a client on the node sends it; the reply line."""
    return protocol.handle(dev.ioctls, file, line.encode()).line.decode()


def ok(dev: PanthorDevice, file: DrmFile, line: str) -> dict[str, int]:
    reply = request(dev, file, line)
    assert reply.startswith("ok"), f"{line!r} -> {reply!r}"
    return {k: int(v, 0) for k, v in (w.split("=", 1) for w in reply.split()[1:])}


def errno_of(dev: PanthorDevice, file: DrmFile, line: str) -> str:
    reply = request(dev, file, line)
    assert reply.startswith("error "), f"{line!r} -> {reply!r}"
    return reply.split()[1]
