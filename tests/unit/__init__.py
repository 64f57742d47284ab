"""Unit tests: no server, no network."""
