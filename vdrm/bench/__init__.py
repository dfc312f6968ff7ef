"""Benchmarks that print figures (speed is measured here, never asserted by tests)."""
