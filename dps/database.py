"""Engine set-up and the check that the schema is current."""
from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db, migrate

UPGRADE_HINT = "run `flask --app dps db upgrade`"


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, say when transactions begin (so BEGIN IMMEDIATE works).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Take the write lock at the start of every transaction. A read-check-write then cannot
        # interleave with another writer (DESIGN 5), and the audit chain is appended in order.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def schema_problem(app: Flask) -> str | None:
    """None when the database is at the migrations' head; otherwise what to do about it."""
    script = ScriptDirectory.from_config(migrate.get_config())
    heads = set(script.get_heads())
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return None
    if not current:
        return f"The database has not been set up yet: {UPGRADE_HINT}."
    return f"The database is behind the code (at {', '.join(sorted(current))}, needs {', '.join(sorted(heads))}): {UPGRADE_HINT}."
