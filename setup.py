"""Build hook: the bundled scenarios and traces ride in the wheel.

They live at the top of the repository (``fixtures/scenarios``, ``fixtures/traces``),
where the tests and the README use them; ``build_py`` copies them into the built package
as ``vdrm/scenario/fixtures/`` and ``vdrm/scenario/traces/``, where
:mod:`vdrm.scenario.bundled` looks first. It also compiles the one C extension,
``vdrm.fs._caller``. Everything else is in pyproject.toml.
"""

import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

BUNDLED = {"fixtures/scenarios": ("vdrm/scenario/fixtures", "*.toml"),
           "fixtures/traces": ("vdrm/scenario/traces", "*.json")}


class BuildWithFixtures(build_py):
    def run(self) -> None:
        super().run()
        for source, (target, pattern) in BUNDLED.items():
            out = Path(self.build_lib) / target
            out.mkdir(parents=True, exist_ok=True)
            for path in sorted(Path(source).glob(pattern)):
                shutil.copy2(path, out / path.name)


def _fuse3(flag: str, prefix: str, default: list[str]) -> list[str]:
    """pkg-config's answer for libfuse3 (as pyfuse3's own build asks it), without the prefix."""
    try:
        out = subprocess.run(["pkg-config", flag, "fuse3"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return default
    return [word[len(prefix):] for word in out.split() if word.startswith(prefix)] or default


# vdrm.fs._caller: the sender of each FUSE request, which pyfuse3 does not pass to read
# and write, and the open flags (noflush, cache_readdir) its FileInfo cannot set (see
# vdrm/fs/caller.py). It needs what pyfuse3's own build needs: a compiler and libfuse3-dev.
CALLER = Extension("vdrm.fs._caller", ["vdrm/fs/_caller.c"],
                   include_dirs=_fuse3("--cflags-only-I", "-I", ["/usr/include/fuse3"]),
                   libraries=["dl"])  # libfuse3 itself is looked up at import, with dlopen

setup(cmdclass={"build_py": BuildWithFixtures}, ext_modules=[CALLER])
