"""Alembic migrations of the app (``python -m app db ...``)."""
