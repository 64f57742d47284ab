"""Test helpers shared by the integration and end-to-end suites (importable as ``support``)."""
