"""The service registry of the plugin design: services of one application by ``plugin:name``.

Framework-free: the FastAPI lifespan keeps one on ``app.state.services`` and registers the
database's services under the names below; a bot or a worker process can keep its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DATABASE_SERVICE", "ENGINE_SERVICE", "UOW_FACTORY_SERVICE", "ServiceRegistry"]

ENGINE_SERVICE = "db_manager:engine"
DATABASE_SERVICE = "db_manager:database"
UOW_FACTORY_SERVICE = "db_manager:uow_factory"


class ServiceRegistry:
    """Services of an application by ``plugin:name``."""

    __slots__ = ("_services",)

    def __init__(self) -> None:
        self._services: dict[str, object] = {}

    def __repr__(self) -> str:
        return f"<ServiceRegistry {', '.join(self.names()) or 'empty'}>"

    def register(self, name: str, service: object) -> None:
        plugin, sep, local = name.partition(":")
        if not (plugin and sep and local):
            raise ValueError(f"service name {name!r} must look like 'plugin:name'")
        self._services[name] = service

    def unregister(self, name: str) -> None:
        self._services.pop(name, None)

    def get(self, name: str) -> Any:
        try:
            return self._services[name]
        except KeyError:
            known = ", ".join(sorted(self._services)) or "none"
            raise LookupError(f"no service {name!r} is registered (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def names(self) -> list[str]:
        return sorted(self._services)
