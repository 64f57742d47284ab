"""db_manager: async SQLAlchemy for FastAPI and aiogram, with transactions done right.

The core (this package's top level) imports neither FastAPI nor aiogram; their adapters
live in :mod:`db_manager.fastapi` and :mod:`db_manager.aiogram`.
"""

from db_manager.base import NAMING_CONVENTION, Base, check_table_name
from db_manager.config import DatabaseSettings, SectionSettings, load_settings
from db_manager.database import Database, DatabaseInterface
from db_manager.engine import create_engine
from db_manager.errors import (
    CommitOutcomeUnknown,
    ConfigError,
    DatabaseManagerError,
    DatabaseNotStarted,
    DatabaseUnavailable,
    PoolExhausted,
    ReadOnlyError,
    SchemaError,
    TableNameError,
    UnitOfWorkStateError,
)
from db_manager.reader import Reader, create_read_engine
from db_manager.uow import UnitOfWork, UnitOfWorkFactory
from db_manager.updates import DuplicateUpdate, TelegramUpdate, prune_updates

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "CommitOutcomeUnknown",
    "ConfigError",
    "Database",
    "DatabaseInterface",
    "DatabaseManagerError",
    "DatabaseNotStarted",
    "DatabaseSettings",
    "DatabaseUnavailable",
    "DuplicateUpdate",
    "PoolExhausted",
    "ReadOnlyError",
    "Reader",
    "SchemaError",
    "SectionSettings",
    "TableNameError",
    "TelegramUpdate",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UnitOfWorkStateError",
    "check_table_name",
    "create_engine",
    "create_read_engine",
    "load_settings",
    "prune_updates",
]
