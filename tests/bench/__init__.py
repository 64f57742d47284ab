"""The benchmark's code runs (no timing assertions)."""
