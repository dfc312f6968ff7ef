"""Helpers for the ``vdrm`` command's tests: run it as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tests" / "tools"


def vdrm(*args: str, timeout: float = 90, **kw) -> subprocess.CompletedProcess:
    """``python -m vdrm ARGS`` from the project root, text output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "vdrm", *args], cwd=kw.pop("cwd", ROOT), env=env,
                          text=True, capture_output=True, timeout=timeout, **kw)


needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse on this machine")
