"""db_manager: async SQLAlchemy for FastAPI and aiogram, with transactions done right.

The core (this package's top level) imports no framework. The adapters are modules of their
own, each behind an extra: :mod:`db_manager.fastapi` (``fastapi``), :mod:`db_manager.telegram`
(``aiogram``), :mod:`db_manager.migrations` (``migrations``), :mod:`db_manager.testing`
(``testing``); PostgreSQL needs the ``postgres`` extra (asyncpg).
"""

from db_manager.base import NAMING_CONVENTION, Base, check_table_name
from db_manager.config import (
    ConfigFile,
    DatabaseSettings,
    SectionSettings,
    load_sections,
    load_settings,
    read_config,
)
from db_manager.database import Database, DatabaseInterface
from db_manager.engine import ConnectionBudget, create_engine, create_read_engine
from db_manager.errors import (
    CommitOutcomeUnknown,
    ConfigError,
    DatabaseManagerError,
    DatabaseNotStarted,
    DatabaseUnavailable,
    MissingExtra,
    PoolExhausted,
    ReadOnlyError,
    SchemaError,
    TableNameError,
    TransactionConflict,
    UnitOfWorkStateError,
)
from db_manager.reader import Reader
from db_manager.services import (
    DATABASE_SERVICE,
    ENGINE_SERVICE,
    UOW_FACTORY_SERVICE,
    ServiceRegistry,
)
from db_manager.uow import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "DATABASE_SERVICE",
    "ENGINE_SERVICE",
    "NAMING_CONVENTION",
    "UOW_FACTORY_SERVICE",
    "Base",
    "CommitOutcomeUnknown",
    "ConfigError",
    "ConfigFile",
    "ConnectionBudget",
    "Database",
    "DatabaseInterface",
    "DatabaseManagerError",
    "DatabaseNotStarted",
    "DatabaseSettings",
    "DatabaseUnavailable",
    "MissingExtra",
    "PoolExhausted",
    "ReadOnlyError",
    "Reader",
    "SchemaError",
    "SectionSettings",
    "ServiceRegistry",
    "TableNameError",
    "TransactionConflict",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UnitOfWorkStateError",
    "check_table_name",
    "create_engine",
    "create_read_engine",
    "load_sections",
    "load_settings",
    "read_config",
]
