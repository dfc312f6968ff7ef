"""Kernel services the emulated drivers lean on: the clock and the kernel log."""
