"""Scenario trees, byte for byte: what a user sees on the mount, against fixtures/golden/.

For every scenario the test mounts it, dumps what a reader of the mount sees (every
entry under ``proc/`` and ``sys/kernel/debug/dri/128/`` with its type, mode, owner and
content or link text, and ``dmesg``), advances the virtual clock one second through
``vdrm-clock``, and dumps again. The two dumps must equal ``fixtures/golden/<name>.tree``.
After a deliberate change of output, regenerate with ``VDRM_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .conftest import ROOT

SCENARIOS = sorted((ROOT / "fixtures" / "scenarios").glob("*.toml"))
GOLDEN = ROOT / "fixtures" / "golden"
SUBTREES = ("proc", "sys/kernel/debug/dri/128", "dmesg")


def dump(mnt: Path) -> str:
    """Every entry of SUBTREES as ``mode uid:gid path`` plus its content (NUL as ``\\0``)
    or its link target."""
    out: list[str] = []

    def visit(path: Path) -> None:
        st = os.lstat(path)
        rel = path.relative_to(mnt)
        head = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {rel}"
        if stat.S_ISLNK(st.st_mode):
            out.append(f"{head} -> {os.readlink(path)}\n")
        elif stat.S_ISDIR(st.st_mode):
            out.append(head + "/\n")
            for name in sorted(os.listdir(path)):
                visit(path / name)
        else:
            data = path.read_bytes().decode().replace("\0", "\\0")  # cmdline's NULs, visibly
            out.append(f"{head}\n{data}" + ("" if data.endswith("\n") or not data else "\n<no newline>\n"))

    for sub in SUBTREES:
        visit(mnt / sub)
    return "".join(out)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_tree_matches_its_golden_file(own_mount, scenario: Path) -> None:
    """The mounted scenario reads exactly as its golden file, before and after one clock step."""
    daemon = own_mount("--scenario", str(scenario))
    before = dump(daemon.path)
    (daemon.path / "sys/kernel/debug/dri/128/vdrm-clock").write_text("1s\n")
    text = f"# {scenario.name} at its start\n{before}# after one 1 s clock step\n{dump(daemon.path)}"
    golden = GOLDEN / f"{scenario.stem}.tree"
    if os.environ.get("VDRM_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}: run with VDRM_UPDATE_GOLDEN=1 once and review it"
    assert text == golden.read_text()
