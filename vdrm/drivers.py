"""The drivers vdrm emulates, by name, and the machines built from them.

The one place that knows every driver: the daemon, the scenario loader and runner and the
benchmarks name a driver here and then talk to the :class:`~vdrm.drm.gpu.GpuDevice` it
builds. A new driver is a package with a ``GpuDevice`` subclass and a line in
:data:`DRIVERS`; nothing in ``vdrm/fs`` changes.
"""

from __future__ import annotations

from typing import Sequence

from vdrm.drm.gpu import DeviceConfig, GpuDevice, Machine, Services
from vdrm.errors import InvalidArgument
from vdrm.panfrost.device import PanfrostDevice
from vdrm.panthor.device import PanthorDevice

DRIVERS: dict[str, type[GpuDevice]] = {"panfrost": PanfrostDevice, "panthor": PanthorDevice}


def driver(name: str) -> type[GpuDevice]:
    """The device class of driver ``name``; InvalidArgument names the known ones."""
    cls = DRIVERS.get(name)
    if cls is None:
        raise InvalidArgument(f"unknown driver {name!r} (known: {', '.join(DRIVERS)})")
    return cls


def build(config: DeviceConfig, gpus: Sequence[str] = ("panfrost",)) -> Machine:
    """A machine with one GPU per name in ``gpus``: card0/renderD128 first, then card1/renderD129 ..."""
    classes = [driver(name) for name in gpus]
    services = Services(config)
    return Machine(cls(config, services=services, index=i) for i, cls in enumerate(classes))
