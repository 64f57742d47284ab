"""Fixtures of the replica suite: one throwaway primary + two replicas per module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.helpers import PostgresServer
from tests.support.postgres import pg_connect

from .cluster import Cluster

DELAY_MS = 500


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Primary, a replica without delay and one whose replay is delayed by 500 ms, with a
    ``rep_rows`` table; stopped and removed afterwards, also when a test failed."""
    problem = PostgresServer.available()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; the replica suite is required in CI", pytrace=False)
        pytest.skip(problem)
    built = Cluster(delay_ms=DELAY_MS)
    try:
        built.create()
        yield built
    finally:
        built.destroy()
        leftovers = [path for path in built.base_dirs() if path.exists()]
        assert not leftovers, f"cluster directories left behind: {leftovers}"


@pytest.fixture
async def rows_table(cluster: Cluster) -> str:
    conn = await pg_connect(port=cluster.primary.port, database="postgres")
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS rep_rows (id serial PRIMARY KEY, value text NOT NULL)"
        )
    finally:
        await conn.close()
    return "rep_rows"
