"""Build hook: the bundled scenarios and traces ride in the wheel.

They live at the top of the repository (``fixtures/scenarios``, ``fixtures/traces``),
where the tests and the README use them; ``build_py`` copies them into the built package
as ``vdrm/scenario/fixtures/`` and ``vdrm/scenario/traces/``, where
:mod:`vdrm.scenario.bundled` looks first. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
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


setup(cmdclass={"build_py": BuildWithFixtures})
