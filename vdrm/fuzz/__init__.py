"""Fuzzers for hostile input: ``python -m vdrm.fuzz`` soaks the real mount and fuzzes scenarios.

``vdrm.fuzz.requests``
    request lines: grammar-aware ones from the ioctl table, and hostile bytes.
``vdrm.fuzz.soak``
    the real mount under many clients, several users, SIGKILLs, fork and dup sharing.
``vdrm.fuzz.scenario``
    mutated scenario files, loaded and built as the daemon would.

Nothing here imports ``pyfuse3`` or ``trio``: the soak drives ``mount.py`` as a user would.
"""
