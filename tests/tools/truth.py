#!/usr/bin/env python3
"""Print vdrm's ground truth for every DRM client as one JSON list, sorted by client id.

Reads ``<debugfs>/dri/<minor>/vdrm-clients/<id>/truth.json`` (what a correct parser
arrives at over the last clock step); under ``mount.py --run`` debugfs is at
``/sys/kernel/debug``.
"""

from __future__ import annotations

import glob
import json
import sys


def ground_truth(debugfs: str = "/sys/kernel/debug") -> list[dict]:
    found: dict[int, dict] = {}
    for path in glob.glob(f"{debugfs}/dri/*/vdrm-clients/*/truth.json"):
        with open(path) as f:
            truth = json.load(f)
        found[truth["drm-client-id"]] = truth
    return [found[cid] for cid in sorted(found)]


if __name__ == "__main__":
    json.dump(ground_truth(*sys.argv[1:]), sys.stdout)
    sys.stdout.write("\n")
