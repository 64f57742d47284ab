"""Unit tests of the reference app (app/)."""
