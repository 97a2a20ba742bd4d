"""Engine set-up and the check that the schema is current."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db, migrate

UPGRADE_HINT = "run `flask --app dps db upgrade`"
# Execution option of a connection whose transaction only reads (see read_only_transaction).
READ_ONLY = "dps_read_only"


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
        if connection.get_execution_options().get(READ_ONLY):
            # A read-only transaction (a long export): a snapshot that leaves writers free (WAL).
            connection.exec_driver_sql("BEGIN")
            return
        # Take the write lock at the start of every transaction. A read-check-write then cannot
        # interleave with another writer (DESIGN 5), and the audit chain is appended in order.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def read_only_transaction() -> Iterator[None]:
    """Run long reads (exports) in a transaction of their own that never blocks writers.

    On SQLite every transaction otherwise begins with BEGIN IMMEDIATE and holds the write lock to
    its end, so a minute-long export would stop the site's writes for a minute; here it begins
    with a plain BEGIN, which in WAL mode reads a snapshot without locking anyone out. On
    PostgreSQL reads never block writers anyway. The session must have nothing unsaved: the
    transaction open before (reads only) is ended, and so is this one after."""
    session = db.session
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("read_only_transaction needs a session with no unsaved changes")
    session.commit()
    session.connection(execution_options={READ_ONLY: True})
    try:
        yield
    finally:
        session.rollback()


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
