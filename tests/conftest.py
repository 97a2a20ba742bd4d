"""Test fixtures.

The schema is built once per run by the migrations (``flask db upgrade``, never create_all) and
each test gets a fresh copy of that empty, migrated database:
- SQLite (default): the migrated file is copied for each test.
- PostgreSQL (``DPS_TEST_DATABASE_URL=postgresql://...``): the named database is dropped and
  migrated at the start; between tests every table is emptied with triggers bypassed (the audit
  log refuses TRUNCATE otherwise).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import BytecodeCache
from sqlalchemy import event
from sqlalchemy.engine import make_url

from dps import create_app
from dps.extensions import db

TEST_PASSWORD = "correct horse battery staple"
# Mondays at 9am, UK time, inside the DPS period: a sensible default "now" for most tests.
DEFAULT_NOW = "2024-06-03T09:00"

PG_URL = os.environ.get("DPS_TEST_DATABASE_URL")
# Documents the tests store go to a throw-away folder, never the project's instance folder.
STORAGE_ROOT = tempfile.mkdtemp(prefix="dps-test-documents-")


def _pg_admin_dsn(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    name = parsed.database
    admin = parsed.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), name


def _base_config(database_url: str, **extra) -> dict:
    config = {
        "DPS_DATABASE_URL": database_url,
        "DPS_SECRET_KEY": "test-secret-key-not-for-production",
        "DPS_CLOCK": DEFAULT_NOW,
        "DPS_BASE_URL": "http://dps.test",
        "DPS_STORAGE_URL": f"file://{STORAGE_ROOT}",
        "TESTING": True,
        "DPS_SMTP_URL": None,
        # Cheap hashing keeps the suite fast; test_passwords_use_owasp_parameters checks the real ones.
        "ARGON2_PARAMETERS": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
    }
    config.update(extra)
    return config


def _upgrade(database_url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(_base_config(database_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory) -> dict:
    """Migrate a database once per run; return what each test needs to get a fresh copy."""
    if PG_URL:
        admin_dsn, name = _pg_admin_dsn(PG_URL)
        try:
            with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            # Never a skip: a run asked to use PostgreSQL that cannot reach it has failed.
            pytest.exit(f"DPS_TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {exc}", returncode=3)
        _upgrade(PG_URL)
        yield {"kind": "postgresql", "url": PG_URL}
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        path = tmp_path_factory.mktemp("template") / "template.sqlite3"
        _upgrade(f"sqlite:///{path}")
        yield {"kind": "sqlite", "path": path}


def _empty_postgres(url: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]
        if tables:
            conn.execute("SET session_replication_role = replica")  # bypass the append-only triggers
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture
def database_url(database_template, tmp_path) -> str:
    if database_template["kind"] == "postgresql":
        _empty_postgres(database_template["url"])
        return database_template["url"]
    path = tmp_path / "dps.sqlite3"
    shutil.copyfile(database_template["path"], path)
    return f"sqlite:///{path}"


@pytest.fixture
def is_postgres(database_template) -> bool:
    return database_template["kind"] == "postgresql"


class Client(FlaskClient):
    """A test client that fills in the CSRF token from the page, as a browser would."""

    def csrf_token(self, page: str = "/sign-in") -> str:
        html = self.get(page).get_data(as_text=True)
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def submit(self, url: str, data: dict | None = None, page: str | None = None, **kwargs):
        """POST ``data`` to ``url`` with the CSRF token taken from ``page`` (default: ``url``)."""
        payload = dict(data or {})
        payload["csrf_token"] = self.csrf_token(page or url)
        return self.post(url, data=payload, **kwargs)


class _SharedBytecodeCache(BytecodeCache):
    """Each test makes a new app; sharing compiled templates between them saves most of the time."""

    def __init__(self) -> None:
        self._store: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self._store:
            bucket.bytecode_from_string(self._store[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self._store[bucket.key] = bucket.bytecode_to_string()


_TEMPLATE_CACHE = _SharedBytecodeCache()


def make_app(database_url: str, **extra) -> Flask:
    app = create_app(_base_config(database_url, **extra))
    app.test_client_class = Client
    app.jinja_env.bytecode_cache = _TEMPLATE_CACHE
    return app


@pytest.fixture
def app(database_url) -> Iterator[Flask]:
    """The app on a fresh database, with the simulated clock frozen at DEFAULT_NOW.

    No app context stays pushed: each request gets its own, as in production. Use
    ``with app.app_context():`` to look at the database."""
    from dps import clock

    application = make_app(database_url)
    with application.app_context():
        clock.set_simulated(clock.parse_london(DEFAULT_NOW), frozen=True)
        db.session.commit()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app) -> Client:
    return app.test_client()


def set_clock(app: Flask, moment: str | datetime, frozen: bool = True) -> None:
    """Put the simulated clock at ``moment`` (UK wall time as a string, or an aware datetime)."""
    from dps import clock

    with app.app_context():
        when = clock.parse_london(moment) if isinstance(moment, str) else moment
        clock.set_simulated(when, frozen=frozen)
        db.session.commit()


@pytest.fixture
def factory(app):
    """Makes organisations and accounts for tests, through the same services the app uses."""
    return Factory(app)


class Factory:
    def __init__(self, app: Flask):
        self.app = app
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def organisation(self, kind: str = "council", membership: str | None = "full", name: str | None = None,
                     nation: str | None = "England") -> int:
        from dps import clock
        from dps.models import Organisation

        with self.app.app_context():
            from dps.models.organisations import CONTRACTING_AUTHORITY_KINDS

            org = Organisation(name=name or f"Test {kind} {self._next()}", kind=kind, membership=membership,
                               nation=nation, created_at=clock.now(),
                               contracting_authority=None if kind == "supplier" else kind in CONTRACTING_AUTHORITY_KINDS)
            db.session.add(org)
            db.session.commit()
            return org.id

    def user(self, role: str, *, email: str | None = None, organisation_id: int | None = None,
             password: str = TEST_PASSWORD, name: str | None = None, confirmed: bool = True) -> dict:
        from dps.models import Organisation
        from dps.services import accounts

        if organisation_id is None:
            organisation_id = self.organisation(**({"kind": "supplier", "membership": None} if role == "supplier" else {}))
        n = self._next()
        with self.app.app_context():
            org = db.session.get(Organisation, organisation_id)
            user = accounts.create_user(email=email or f"{role}{n}@example.org", name=name or f"Test {role.title()} {n}",
                                        role=role, organisation=org, password=password, confirmed=confirmed,
                                        actor_label="test")
            db.session.commit()
            return {"id": user.id, "email": user.email, "password": password, "organisation_id": org.id}


def sign_in(client: Client, email: str, password: str = TEST_PASSWORD):
    return client.submit("/sign-in", {"email": email, "password": password})


@pytest.fixture
def signed_in(app, factory):
    """signed_in("buyer") -> (client, user): a client signed in as a new user of that role."""

    def _signed_in(role: str, **kwargs) -> tuple[Client, dict]:
        user = factory.user(role, **kwargs)
        browser = app.test_client()
        response = sign_in(browser, user["email"], user["password"])
        assert response.status_code == 302, response.get_data(as_text=True)
        return browser, user

    return _signed_in


@contextmanager
def count_queries(app: Flask):
    """Counts the SQL statements run inside the block: `with count_queries(app) as n: ...; n()`."""
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def _record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", _record)
    try:
        yield lambda: len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", _record)


def outbox(app: Flask) -> list:
    from dps.models import OutboxMessage

    with app.app_context():
        messages = db.session.scalars(db.select(OutboxMessage).order_by(OutboxMessage.id)).all()
        db.session.expunge_all()
        return messages


def link_in(body: str) -> str:
    """The path of the first link to this service in an email body."""
    match = re.search(r"http://dps\.test(/\S+)", body)
    assert match, body
    return match.group(1)


DEMO_PASSWORD = "copper kettle harbour lantern"


@contextmanager
def demo_application(database_template, tmp_path_factory, at: str = DEFAULT_NOW,
                     password: str = DEMO_PASSWORD) -> Iterator[Flask]:
    """An app over a fresh database holding the demo data, loaded at ``at`` (frozen clock).

    For module-scoped fixtures: loading the demo takes seconds, so a module loads it once and its
    tests only read it (or put back what they change). The sign-ins the loader printed are in
    ``app.config["DEMO_SIGN_INS"]``.

    On PostgreSQL it shares the test database with the function-scoped ``app`` fixture, which
    empties it: in a module, put the tests that use ``app`` after those that use the demo."""
    from dps import clock
    from dps.demo import database_is_empty, load_demo

    if database_template["kind"] == "postgresql":
        _empty_postgres(database_template["url"])
        url = database_template["url"]
    else:
        path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
        shutil.copyfile(database_template["path"], path)
        url = f"sqlite:///{path}"
    application = make_app(url)
    with application.app_context():
        clock.set_simulated(clock.parse_london(at), frozen=True)
        db.session.commit()
        assert database_is_empty()
        application.config["DEMO_SIGN_INS"] = load_demo(password)
        db.session.commit()
    try:
        yield application
    finally:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


# S3: moto's server on 127.0.0.1, spoken to over real HTTP by an unpatched boto3 (DESIGN 8).

AWS_TEST_SECRET = "testing-secret-never-shown"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path) -> None:
    """Dummy credentials and nothing from this machine's own AWS set-up."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_TEST_SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # an unreachable endpoint fails at once, not after backoff
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


# ClamAV: a real clamd with a signature database of the tests' own (see tests/clamd.py).

@pytest.fixture(scope="session")
def clamd():
    from tests.clamd import start_clamd

    yield from start_clamd()
