"""The fault suite (issue 7): the app under restarts, kills, cut connections and overload.

A package on purpose: its ``conftest.py`` imports as ``faults.conftest`` and never replaces
``tests/conftest.py`` in ``sys.modules`` (plain ``conftest`` modules shadow each other).
"""
