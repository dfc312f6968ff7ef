#!/usr/bin/env python3
"""Glue: fdinfo_top's JSON (stdin) as a ``vdrm check`` report (stdout). The few lines a
parser author writes for their own tool's output."""

import json
import sys

report = json.load(sys.stdin)
json.dump({"clients": [{"drm-client-id": c["client_id"], "minor": c["minor"], "pids": c["pids"],
                        "engines": {e: row.get("utilisation") for e, row in c["engines"].items()},
                        "memory": c["memory"]}
                       for c in report["clients"]]}, sys.stdout)
sys.stdout.write("\n")
