"""Kernel releases and the features each one brought: the machinery of a per-driver table.

vdrm speaks the dialect of one kernel release (``--kernel 6.18``). Which ioctls,
parameters, flags, fdinfo lines and debugfs files exist in that release is not written
as ``version >= (6, N)`` where the behaviour is implemented; it is looked up in a
:class:`ReleaseTable`: one :class:`Feature` row per change, naming the release that
introduced it (and, for what a later release took away, the release that removed it) and
the source the dating was checked against (the commit title, the dri-devel pull request
that carried it into that release, the file).

The rows themselves belong to the code that implements them: the DRM core's in
:mod:`vdrm.drm.releases`, each driver's in its package (Panfrost:
:mod:`vdrm.panfrost.releases`), and a driver's table is the core rows plus its own. A
driver's ``has(feature)`` answers from its table for the release it emulates; the README's
dialect table is rendered from the same rows (:meth:`ReleaseTable.changes`), and a test
checks that the two agree.

A release is ``(major, minor)``; ``"7.0"`` and ``(7, 0)`` name the same one. Nothing here
knows about DRM: the module is plain data and lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

Release = tuple[int, int]


def parse_release(text: str) -> Release:
    """``"6.18"`` -> ``(6, 18)``; ValueError for anything else."""
    major, dot, minor = text.strip().partition(".")
    if not dot or not major.isdigit() or not minor.isdigit():
        raise ValueError(f"{text!r} is not a kernel release like 6.18")
    return int(major), int(minor)


def release_name(release: Release) -> str:
    return f"{release[0]}.{release[1]}"


@dataclass(frozen=True)
class Feature:
    """One change in one release: what it is called, what it does, where that is written.

    ``since`` is the first release that has it; ``removed`` (if any) the first that no
    longer has it. ``source`` names what the dating was checked against (commit title,
    pull request, file). ``driver_version`` is the ``DRM_IOCTL_VERSION`` (major, minor)
    the release with this feature reports, for the rows that bumped it.
    """

    name: str
    since: Release
    summary: str
    source: str
    removed: Release | None = None
    driver_version: tuple[int, int] | None = None

    def present_in(self, release: Release) -> bool:
        return self.since <= release and (self.removed is None or release < self.removed)


class ReleaseTable:
    """The releases a driver is emulated in and the features that tell them apart."""

    def __init__(self, releases: Iterable[Release], features: Iterable[Feature], *,
                 base_driver_version: tuple[int, int] = (0, 0)):
        self.releases: tuple[Release, ...] = tuple(sorted(releases))
        if not self.releases:
            raise ValueError("a release table needs at least one release")
        self._features: dict[str, Feature] = {}
        for feature in features:
            if feature.name in self._features:
                raise ValueError(f"feature {feature.name!r} is listed twice")
            if feature.removed is not None and feature.removed <= feature.since:
                raise ValueError(f"feature {feature.name!r} is removed before it arrives")
            self._features[feature.name] = feature
        self.base_driver_version = base_driver_version

    def __iter__(self) -> Iterator[Feature]:
        return iter(self._features.values())

    def __contains__(self, name: str) -> bool:
        return name in self._features

    def feature(self, name: str) -> Feature:
        """The row called ``name``; KeyError (a vdrm bug: the name is spelt wrong) otherwise."""
        try:
            return self._features[name]
        except KeyError:
            raise KeyError(f"no feature {name!r} in the release table") from None

    def has(self, name: str, release: Release) -> bool:
        """Whether kernel ``release`` has feature ``name``."""
        return self.feature(name).present_in(release)

    @property
    def newest(self) -> Release:
        return self.releases[-1]

    @property
    def oldest(self) -> Release:
        return self.releases[0]

    def is_emulated(self, release: Release) -> bool:
        return release in self.releases

    def names(self) -> str:
        """``"6.6, 6.7, ..."``: for messages and ``--help``."""
        return ", ".join(release_name(r) for r in self.releases)

    def driver_version(self, release: Release) -> tuple[int, int]:
        """The driver's (major, minor) in ``release``: the newest bump it has."""
        version = self.base_driver_version
        for feature in self._features.values():
            if feature.driver_version and feature.present_in(release):
                version = max(version, feature.driver_version)
        return version

    def changes(self, release: Release) -> list[tuple[str, Feature]]:
        """What ``release`` changes: ``("+", row)`` for what it adds, ``("-", row)`` for
        what it removes, in table order."""
        out: list[tuple[str, Feature]] = []
        for feature in self._features.values():
            if feature.since == release:
                out.append(("+", feature))
            if feature.removed == release:
                out.append(("-", feature))
        return out

    def markdown(self) -> str:
        """The README's dialect table: one row per emulated release and what it changes."""
        lines = ["| release | driver version | what changes |", "|---|---|---|"]
        for release in self.releases:
            major, minor = self.driver_version(release)
            changes = self.changes(release)
            if release == self.oldest:
                baseline = [f.summary for f in self if f.since <= release and f.present_in(release)]
                text = "; ".join(["oldest emulated", *baseline])
            elif changes:
                text = "; ".join(("" if sign == "+" else "no more: ") + f.summary for sign, f in changes)
            else:
                text = "no change vdrm emulates"
            lines.append(f"| {release_name(release)} | {major}.{minor} | {text} |")
        return "\n".join(lines) + "\n"

    def merged(self, *others: "ReleaseTable") -> "ReleaseTable":
        """This table's releases with its features and those of ``others`` (core + driver)."""
        features = [*self, *(f for other in others for f in other)]
        base = max([self.base_driver_version, *(o.base_driver_version for o in others)])
        return ReleaseTable(self.releases, features, base_driver_version=base)
