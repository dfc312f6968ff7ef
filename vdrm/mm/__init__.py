"""Emulated physical memory: page frames, the xarray, scatterlists (``mm/``, ``lib/``)."""
