"""Integration tests: db_manager against real SQLite and PostgreSQL."""
