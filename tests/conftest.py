"""Suite-wide settings: a leaked shmem reference at free is a failure, not a warning."""

from __future__ import annotations

import pytest

from vdrm.drm.gem_shmem import ShmemObject


@pytest.fixture(autouse=True)
def strict_shmem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn drm_gem_shmem_free's leak WARNINGs into KernelBug for every test."""
    monkeypatch.setattr(ShmemObject, "strict", True)
