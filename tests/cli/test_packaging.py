"""Packaging: ``python -m build`` makes an sdist and a wheel (the wheel built from the sdist);
each installs into a fresh virtual environment with pip and runs there, away from this
checkout: the ``vdrm`` command, ``python -m vdrm``, the bundled scenarios and traces by
name, a real mount, the single-sourced version, and the pytest plugin's entry point.

Installing fetches the dependencies (pyfuse3, trio, psutil) the ordinary way, from the
package index or pip's cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, needs_fuse
from vdrm import __version__


def run(*args: str, cwd: str = "/", timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(list(args), cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--outdir", str(out), str(ROOT))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def fresh_venv(where: Path, package: Path) -> Path:
    venv = where / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    installed = run(str(venv / "bin" / "pip"), "install", "-q", str(package))
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_the_sdist_and_wheel_carry_the_bundled_fixtures(dist: Path) -> None:
    """The sdist has fixtures/ and the tests; the wheel has the scenarios and traces inside the package, and its entry points."""
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    # a platform wheel: it carries the compiled request-header shim (vdrm/fs/_caller.c)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert sdist.name == f"vdrm-{__version__}.tar.gz" and wheel.name.startswith(f"vdrm-{__version__}-{tag}-{tag}-linux_")
    names = tarfile.open(sdist).getnames()
    base = f"vdrm-{__version__}"
    for path in ("fixtures/scenarios/busy-game.toml", "fixtures/traces/i915.json", "setup.py", "mount.py",
                 "vdrm/fs/_caller.c",
                 "tests/parser_suite/check_parser.py"):
        assert f"{base}/{path}" in names, path
    files = zipfile.ZipFile(wheel).namelist()
    scenarios = sorted(p.name for p in (ROOT / "fixtures" / "scenarios").glob("*.toml"))
    assert sorted(f.rsplit("/", 1)[1] for f in files if f.startswith("vdrm/scenario/fixtures/")) == scenarios
    assert "vdrm/scenario/traces/xe.json" in files and "vdrm/__main__.py" in files
    assert any(f.startswith("vdrm/fs/_caller.") and f.endswith(".so") for f in files), "the shim is not built"
    entry_points = zipfile.ZipFile(wheel).read(f"vdrm-{__version__}.dist-info/entry_points.txt").decode()
    assert "vdrm = vdrm.cli:main" in entry_points and "[pytest11]" in entry_points


@needs_fuse
@pytest.mark.parametrize("kind", ["whl", "tar.gz"])
def test_installed_in_a_fresh_venv_it_runs(kind: str, dist: Path, tmp_path: Path) -> None:
    """Installed from the wheel or from the sdist, vdrm runs a bundled scenario and a bundled trace by name, from /."""
    [package] = dist.glob(f"*.{kind}")
    venv = fresh_venv(tmp_path, package)
    vdrm, python = str(venv / "bin" / "vdrm"), str(venv / "bin" / "python")
    assert run(vdrm, "--version").stdout == f"vdrm {__version__}\n"
    where = run(python, "-c", "import vdrm; print(vdrm.__file__)").stdout
    assert where.startswith(str(venv)), where
    scenarios = run(python, "-m", "vdrm", "scenarios").stdout
    assert "busy-game " in scenarios and "bug-client-id-past-u32 " in scenarios
    result = run(vdrm, "run", "--scenario", "busy-game", "--", "cat", "/proc/4196305/comm")
    assert (result.returncode, result.stdout) == (0, "supertuxkart\n"), result.stderr
    replayed = run(vdrm, "replay", "xe", "--", "sh", "-c", "grep -c drm-cycles /proc/*/fdinfo/7")
    assert (replayed.returncode, replayed.stdout) == (0, "5\n"), replayed.stderr
    truth = run(python, "-m", "vdrm", "truth", "--scenario", "kernel-doc-example")
    assert truth.returncode == 0 and '"drm-client-id": 14' in truth.stdout
    plugin = run(python, "-c", "import importlib.metadata as m; "
                               "print([e.value for e in m.entry_points(group='pytest11') if e.name == 'vdrm.pytest_plugin'])")
    assert plugin.stdout.strip() == "['vdrm.pytest_plugin']"
    if kind == "whl":  # the entry point at work: pytest finds the fixture, with or without -p
        assert run(str(venv / "bin" / "pip"), "install", "-q", "pytest").returncode == 0
        (tmp_path / "test_installed.py").write_text(
            "def test_device(vdrm):\n"
            "    dev = vdrm.mount('busy-game')\n"
            "    dev.step('1s')\n"
            "    assert dev.truth()['clients'][0]['engines']['fragment']['utilisation'] == 0.649\n")
        for extra in ([], ["-p", "vdrm.pytest_plugin"]):
            tested = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "test_installed.py",
                         cwd=str(tmp_path))
            assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
