"""Fixtures for driver tests: a small emulated device on the virtual clock."""

from __future__ import annotations

from typing import Any

import pytest

from vdrm.drm.file import DrmFile
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice

MiB = 1 << 20


def make_device(**overrides: Any) -> PanfrostDevice:
    settings = dict(clock="virtual", ram_size=256 * MiB, fragmentation=0.3, seed=1)
    settings.update(overrides)
    return PanfrostDevice(DeviceConfig(**settings))


def ioctl(file: DrmFile, verb: str, /, **kwargs: Any) -> dict[str, Any]:
    """Call ioctl ``name`` the way the request protocol does: declared defaults filled in,
    refused (EINVAL) where the emulated release lacks it (``since``); the node
    permission flags are not checked, so engine tests may use any node."""
    from vdrm.drm.ioctl import CORE_IOCTLS, available
    from vdrm.errors import InvalidArgument
    from vdrm.panfrost.ioctl import PANFROST_IOCTLS

    table = {i.name: i for i in (*CORE_IOCTLS, *PANFROST_IOCTLS)}
    desc = table[verb]
    args = {}
    for arg in desc.args:
        if arg.name in kwargs:
            args[arg.name] = kwargs.pop(arg.name)
        elif arg.required:
            raise TypeError(f"{verb} needs {arg.name}")
        else:
            args[arg.name] = arg.default
    if kwargs:
        raise TypeError(f"{verb} takes no {sorted(kwargs)}")
    if not available(file, desc):
        raise InvalidArgument(f"{verb} does not exist in this kernel release (it arrives with {desc.since})")
    return desc.handler(file, **args)


@pytest.fixture
def dev() -> PanfrostDevice:
    return make_device()


@pytest.fixture
def render(dev: PanfrostDevice) -> DrmFile:
    return dev.open(128, pid=4242, comm="glmark2")
