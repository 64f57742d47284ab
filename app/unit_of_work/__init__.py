"""The app's unit of work: db_manager's UnitOfWork exposing the app's repositories."""

from app.unit_of_work.uow import AppUnitOfWork

__all__ = ["AppUnitOfWork"]
