"""Benchmarks of db_manager against a hand-written baseline, a peer and the asyncpg floor.

``python -m bench`` (or ``make bench``) runs both measurements and writes
``docs/benchmarks.md``; ``--quick`` is a short run, ``--rss`` the memory soak. See
:mod:`bench.__main__` for the options and ``docs/benchmarks.md`` for the method.
"""
