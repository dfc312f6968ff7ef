"""The import direction of the package (style.md: "One direction of imports"), checked with ``ast``.

Every ``import`` and ``from ... import`` in ``vdrm/`` is read, including those inside
functions and ``if TYPE_CHECKING:`` blocks (a type-only import is still a dependency in
the wrong direction), and relative imports are resolved against their package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vdrm"

# package -> top-level modules and vdrm sub-packages it must not import
_ABOVE_ENGINE = ("vdrm.drivers", "vdrm.scenario", "vdrm.fs", "vdrm.bench", "pyfuse3", "trio")
# The drivers: each builds on vdrm.drm alone; above them only vdrm.drivers names one, so
# the FUSE side and the scenarios reach a GPU through the vdrm.drm.gpu interface only.
DRIVER_PACKAGES = ("vdrm.panfrost", "vdrm.panthor")
FORBIDDEN = {
    "vdrm.kernel": ("vdrm.mm", "vdrm.drm", *DRIVER_PACKAGES, *_ABOVE_ENGINE),
    "vdrm.mm": ("vdrm.drm", *DRIVER_PACKAGES, *_ABOVE_ENGINE),
    "vdrm.drm": (*DRIVER_PACKAGES, *_ABOVE_ENGINE),
    "vdrm.panfrost": ("vdrm.panthor", *_ABOVE_ENGINE),
    "vdrm.panthor": ("vdrm.panfrost", *_ABOVE_ENGINE),
    "vdrm.drivers": ("vdrm.scenario", "vdrm.fs", "vdrm.bench", "pyfuse3", "trio"),
    "vdrm.scenario": (*DRIVER_PACKAGES, "vdrm.fs", "vdrm.bench", "pyfuse3", "trio"),
    "vdrm.fs": (*DRIVER_PACKAGES, "vdrm.bench"),
    # the process side: system calls and the caller's memory; the engine only through a host
    "vdrm.bridge": (*DRIVER_PACKAGES, *_ABOVE_ENGINE),
}
FUSE_ONLY = ("pyfuse3", "trio")  # only the FUSE side, and the benchmark above it, import these
FUSE_USERS = ("vdrm.fs", "vdrm.bench")  # vdrm.bench runs mounts and its own ceiling filesystem


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (a file under ``package_dir``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module_name(path, package_dir)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from vdrm import fs` imports the sub-package vdrm.fs
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_sources() -> None:
    """The checks below look at real files (the walk finds the engine and the FUSE side)."""
    names = {module_name(p) for p in sources()}
    assert {"vdrm.errors", "vdrm.fs.tree", "vdrm.fs.operations", "vdrm.bridge.supervisor"} <= names


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_go_one_way(path: Path) -> None:
    """No module imports from a layer above its own; only vdrm.fs (and vdrm.bench) import pyfuse3 or trio."""
    module = module_name(path)
    bad = []
    for line, name in imports(path):
        if not any(_within(module, u) for u in FUSE_USERS) and any(_within(name, f) for f in FUSE_ONLY):
            bad.append(f"line {line}: {name} (only vdrm.fs and vdrm.bench may import pyfuse3 and trio)")
        for layer, forbidden in FORBIDDEN.items():
            if _within(module, layer):
                bad.extend(f"line {line}: {name} ({layer} must not import {f})"
                           for f in forbidden if _within(name, f))
    assert not bad, f"{module}:\n" + "\n".join(bad)


def test_the_checker_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    """The import reader resolves relative imports and finds imports inside functions."""
    probe = tmp_path / "vdrm" / "drm" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..panfrost import gem\n    import trio\n")
    names = [n for _, n in imports(probe, tmp_path / "vdrm")]
    assert "vdrm.panfrost" in names and "vdrm.panfrost.gem" in names and "trio" in names
