"""The sample suite's conftest: the parser under test is the project's own fdinfo_top."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
