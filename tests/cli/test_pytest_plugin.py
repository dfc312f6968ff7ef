"""The pytest plugin, tested as a parser author uses it: pytest run on the sample suite in
tests/parser_suite/ (data: its check_*.py files are not collected by the main run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import ROOT, needs_fuse

SUITE = ROOT / "tests" / "parser_suite"


def run_suite(suite: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest on ``suite`` in a subprocess, with only the vdrm plugin (``-p``), as CI would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "vdrm.pytest_plugin", "-c", str(suite / "pytest.ini"),
                           "--rootdir", str(suite), "-q", "-p", "no:cacheprovider", str(suite), *args],
                          cwd=suite, env=env, text=True, capture_output=True, timeout=300)


def test_the_fixture_is_registered() -> None:
    """``pytest --fixtures`` with the plugin lists the vdrm fixture and its one-line help."""
    result = run_suite(SUITE, "--fixtures")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vdrm -- " in result.stdout or "vdrm [function scope]" in result.stdout
    assert "Mount emulated GPUs for this test" in result.stdout


@needs_fuse
def test_the_sample_parser_suite_passes() -> None:
    """Every sample test passes: a named and an inline scenario, a trace, a program and a library call, steps, truth."""
    result = run_suite(SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


@needs_fuse
def test_a_wrong_parser_fails_the_suite(tmp_path: Path) -> None:
    """A parser that misreads utilisation fails its test: the truth the plugin gives is not a rubber stamp."""
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite, ignore=shutil.ignore_patterns("__pycache__"))
    (suite / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT / 'tests' / 'tools')!r})\n")
    (suite / "check_wrong.py").write_text('''
import fdinfo_top

def test_halved_utilisation_is_caught(vdrm):
    dev = vdrm.mount("busy-game")
    before = dev.call(fdinfo_top.sample)
    dev.step("1s")
    after = dev.call(fdinfo_top.sample)
    [key] = after
    wrong = fdinfo_top.utilisation(before[key], after[key], 2_000_000_000)  # a parser using twice the interval
    [truth] = dev.truth()["clients"]
    assert wrong["engines"]["fragment"]["utilisation"] == truth["engines"]["fragment"]["utilisation"]
''')
    result = run_suite(suite, "-k", "halved")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout and "0.3245 == 0.649" in result.stdout


@needs_fuse
def test_the_readme_example_test_file_passes(tmp_path: Path) -> None:
    """The complete test file in the README's "The pytest plugin" section runs green as it stands."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The pytest plugin", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (suite / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT / 'tests' / 'tools')!r})\n")
    (suite / "test_readme_example.py").write_text(example)
    result = run_suite(suite)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
