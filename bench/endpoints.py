"""The endpoints, which variant serves which, and how one request to each is made."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import SECRET_HEADER, WEBHOOK_PATH, WEBHOOK_SECRET, update_body


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    method: str
    path: str  # with "{id}" where an item id goes
    webhook: bool = False

    def request(self, n: int, update_base: int = 0) -> tuple[str, bytes, list[tuple[bytes, bytes]]]:
        """The path, body and headers of the ``n``-th request (ids cycle over the 1000 rows)."""
        if self.webhook:
            headers = [
                (b"content-type", b"application/json"),
                (SECRET_HEADER.lower().encode(), WEBHOOK_SECRET.encode()),
            ]
            return self.path, update_body(update_base + n), headers
        path = self.path.replace("{id}", str(n % 1000 + 1)) if "{id}" in self.path else self.path
        return path, b"", []

    def wrk_args(self, update_base: int) -> list[str]:
        """The arguments of ``bench/wrk.lua`` for this endpoint."""
        if self.webhook:
            return ["webhook", self.path, str(update_base), WEBHOOK_SECRET]
        if "{id}" in self.path:
            return ["get" if self.method == "GET" else "post", self.path.replace("{id}", "%d")]
        return ["static", self.path]


NOOP = Endpoint("noop", "GET /noop", "GET", "/noop")
ITEM = Endpoint("item", "GET /items/{id}", "GET", "/items/{id}")
BUMP = Endpoint("bump", "POST /items/{id}/bump", "POST", "/items/{id}/bump")
READY = Endpoint("ready", "GET /health/ready", "GET", "/health/ready")
READ_ORM = Endpoint("read_orm", "GET /items/{id} via reader.get (ORM)", "GET", "/read/items/{id}")
READ_CORE = Endpoint(
    "read_core", "GET /items/{id} via reader.execute (Core)", "GET", "/read/core/items/{id}"
)
WEBHOOK = Endpoint("webhook", "POST webhook (message update, 1 row)", "POST", WEBHOOK_PATH, True)

ALL = (NOOP, ITEM, BUMP, READY, READ_ORM, READ_CORE, WEBHOOK)
BY_KEY = {endpoint.key: endpoint for endpoint in ALL}

SERVES: dict[str, tuple[Endpoint, ...]] = {
    "project": (NOOP, ITEM, BUMP, READY, READ_ORM, READ_CORE),
    "project_bot": (WEBHOOK,),
    "baseline": (NOOP, ITEM, BUMP, READY),
    "peer": (NOOP, ITEM, BUMP, READY),
    "floor": (NOOP, ITEM, BUMP, READY),
    "aiohttp": (WEBHOOK,),
}
