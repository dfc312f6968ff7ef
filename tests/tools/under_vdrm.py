"""Run a shell script under ``mount.py --run --scenario FILE``: the helper parser tests use.

Inside, ``/proc``, ``/dev/dri``, ``/sys/class/drm`` and ``/sys/kernel/debug`` show the
scenario's device; ``$PYTHON`` is this interpreter and ``$TOOLS`` this directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parents[1]
MOUNT_PY = ROOT / "mount.py"
SCENARIOS = ROOT / "fixtures" / "scenarios"


def under_vdrm(scenario: str | None, script: str, *options: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``mount.py --run [--scenario SCENARIOS/scenario] OPTIONS -- bash -c SCRIPT``."""
    args = [sys.executable, str(MOUNT_PY), "--run", *options]
    if scenario is not None:
        args += ["--scenario", str(SCENARIOS / scenario)]
    env = {**os.environ, "PYTHON": sys.executable, "TOOLS": str(TOOLS)}
    return subprocess.run([*args, "--", "bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=timeout)


def sample_and_truth(scenario: str, *, warm_up: str | None = None, step: str = "1s") -> tuple[dict, list[dict]]:
    """Advance the clock by ``warm_up``, run fdinfo_top across a ``step``, read the truth.

    Returns fdinfo_top's report and the ground truth (one dict per client, by client id).
    """
    warm = f"echo {warm_up} > /sys/kernel/debug/dri/128/vdrm-clock" if warm_up else ""
    result = under_vdrm(scenario, f"""
        {warm}
        "$PYTHON" "$TOOLS/fdinfo_top.py" --clock-step {step}
        "$PYTHON" "$TOOLS/truth.py"
    """)
    assert result.returncode == 0, f"mount.py --run failed ({result.returncode}):\n{result.stderr}"
    report, truth = result.stdout.splitlines()
    return json.loads(report), json.loads(truth)
