"""Engine set-up and the check that the schema is current."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import logging

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app, has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db, migrate

UPGRADE_HINT = "run `flask --app dps db upgrade`"
# Execution option of a connection whose transaction only reads (see read_only_transaction).
READ_ONLY = "dps_read_only"
# Execution option of a connection whose transaction writes, whatever the request (see writing).
WRITING = "dps_writing"
# Connection info key: this transaction began as a reader (plain BEGIN) on SQLite.
_READER = "dps_reader"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
log = logging.getLogger(__name__)


def writes_on_safe_request(view):
    """Mark a view that writes although it answers GET (e.g. recording that a supplier first
    opened an invitation). On SQLite its transactions take the write lock from their start, as
    every unsafe request's do; every other GET or HEAD reads a snapshot and takes no lock."""
    view.dps_writes_on_safe_request = True
    return view


def _reading_request() -> bool:
    """True inside a GET/HEAD/OPTIONS request whose view is not marked as writing."""
    if not has_request_context() or request.method not in SAFE_METHODS:
        return False
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return not getattr(view, "dps_writes_on_safe_request", False)


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
        options = connection.get_execution_options()
        reader = bool(options.get(READ_ONLY)) or (_reading_request() and not options.get(WRITING))
        connection.info[_READER] = reader
        if reader:
            # A transaction that only reads (a page, a long export): a snapshot that leaves
            # writers free (WAL), so pages never queue behind each other or behind writes.
            connection.exec_driver_sql("BEGIN")
            return
        # Take the write lock at the start of every writing transaction. A read-check-write then
        # cannot interleave with another writer (DESIGN 5), and the audit chain is appended in order.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection):
        connection.info.pop(_READER, None)

    @event.listens_for(engine, "before_cursor_execute")
    def _on_execute(connection, _cursor, statement, _parameters, _context, _executemany):
        if not connection.info.get(_READER) or not statement.lstrip().upper().startswith(WRITE_STATEMENTS):
            return
        # A reader that writes must upgrade its snapshot to the write lock, which SQLite refuses
        # at once (SQLITE_BUSY_SNAPSHOT, no waiting) if anyone wrote since it began. Such a view
        # must be marked with writes_on_safe_request; tests fail here so none is missed.
        endpoint = request.endpoint if has_request_context() else None
        message = f"a read-only transaction wrote ({endpoint or 'no request'}): {statement.split(None, 3)[:3]}"
        if has_request_context() and current_app.testing:
            raise RuntimeError(message + "; mark the view with dps.database.writes_on_safe_request")
        log.warning(message)


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


@contextmanager
def writing() -> Iterator[None]:
    """A transaction of its own that writes, even inside a GET (e.g. the simulated clock
    starting on the first request): on SQLite it takes the write lock from its start. The
    session must have nothing unsaved; the transaction commits at the end, or rolls back."""
    session = db.session
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("writing needs a session with no unsaved changes")
    session.commit()
    session.connection(execution_options={WRITING: True})
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


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
