"""The whole device's ground truth as one JSON document (``vdrm truth``).

Each client's truth (``vdrm-clients/<id>/truth.json`` in debugfs, or
``device.truth(file)`` in the engine) says what a correct fdinfo parser arrives at over
the last clock step. This module gathers them into one document, from either side:

- :func:`from_device`: an engine device in this process (no mount);
- :func:`from_tree`: a mounted tree, by its debugfs (``<mount>/sys/kernel/debug``, or
  ``/sys/kernel/debug`` inside ``vdrm run``'s namespace).

The document (``SCHEMA``)::

    {"schema": "vdrm-truth/1",
     "clock": {"now_ns": .., "step_start_ns": .., "step_end_ns": .., "step_ns": ..},
     "clients": [<one client's truth.json>, ...]}     # sorted by (minor, drm-client-id)

A client's entry is exactly its ``truth.json``: ``drm-client-id``, ``drm-driver``,
``minor``, ``pid``, ``comm``, ``profiling``, ``engines`` (per engine ``busy_ns``,
``delta_ns``, ``utilisation`` = delta / step or null before the first step, ``cycles``,
``maxfreq_hz``, ``curfreq_hz``) and ``memory`` (bytes per category: ``total``, ``shared``,
``resident``, ``purgeable``, ``active``).
"""

from __future__ import annotations

import glob
import json
import os
from typing import TYPE_CHECKING, Any, Iterable

from vdrm.drm.gpu import as_machine

if TYPE_CHECKING:
    from vdrm.drm.gpu import GpuDevice, Machine

SCHEMA = "vdrm-truth/1"


class TruthError(Exception):
    """The truth could not be read (no vdrm debugfs there, an unreadable file)."""


def document(clients: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The one-document form of per-client truths (deduplicated by client id)."""
    by_id: dict[int, dict[str, Any]] = {}
    for truth in clients:
        by_id[truth["drm-client-id"]] = truth
    ordered = sorted(by_id.values(), key=lambda t: (t.get("minor", 0), t["drm-client-id"]))
    clock = dict(ordered[0]["clock"]) if ordered else {}
    return {"schema": SCHEMA, "clock": clock, "clients": ordered}


def from_device(device: "GpuDevice | Machine") -> dict[str, Any]:
    """The truth of every open client of an engine GPU or machine of GPUs."""
    machine = as_machine(device)
    doc = document(machine.truth(file) for file in list(machine.files.values()))
    if not doc["clock"]:
        step = machine.timeline.last_step
        doc["clock"] = {"now_ns": machine.clock.now_ns(), "step_start_ns": step.start_ns,
                        "step_end_ns": step.end_ns, "step_ns": step.step_ns}
    return doc


def live_root(explicit: str | None = None) -> str | None:
    """The tree to read: ``explicit``, else ``$VDRM_MOUNT``, else ``/`` inside a
    namespace where ``/sys/kernel/debug`` is vdrm's; None if none is known."""
    if explicit:
        return explicit
    if os.environ.get("VDRM_MOUNT"):
        return os.environ["VDRM_MOUNT"]
    return "/" if glob.glob("/sys/kernel/debug/dri/*/vdrm-clock") else None


def debugfs_of(root: str) -> str:
    """The debugfs directory of a tree mounted at ``root`` ("/" inside the namespace)."""
    return os.path.join(root, "sys/kernel/debug")


def from_tree(root: str) -> dict[str, Any]:
    """The truth of a mounted tree; TruthError if ``root`` holds no vdrm debugfs."""
    debugfs = debugfs_of(root)
    clocks = sorted(glob.glob(f"{debugfs}/dri/*/vdrm-clock"))
    if not clocks:
        raise TruthError(f"{debugfs} has no dri/*/vdrm-clock: {root} is not a vdrm tree "
                         "(give a vdrm mount point, or run inside 'vdrm run')")
    clients = []
    for path in sorted(glob.glob(f"{debugfs}/dri/*/vdrm-clients/*/truth.json")):
        try:
            with open(path) as f:
                clients.append(json.load(f))
        except FileNotFoundError:
            continue  # the client closed between the listing and the read
        except (OSError, ValueError) as e:
            raise TruthError(f"{path}: {e}") from None
    doc = document(clients)
    if not doc["clock"]:
        doc["clock"] = _clock_file(clocks[0])
    return doc


def _clock_file(path: str) -> dict[str, Any]:
    """``vdrm-clock``'s ``now_ns`` and ``last_step_ns`` lines as a clock entry."""
    with open(path) as f:
        fields = dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)
    now, step = int(fields.get("now_ns", 0)), int(fields.get("last_step_ns", 0))
    return {"now_ns": now, "step_start_ns": now - step, "step_end_ns": now, "step_ns": step}
