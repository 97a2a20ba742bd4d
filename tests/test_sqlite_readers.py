"""On SQLite, requests that only read never take the write lock (issue 10, point 6).

Every writing transaction begins with BEGIN IMMEDIATE (DESIGN 5: a read-check-write cannot
interleave with another writer). A GET or HEAD begins with a plain BEGIN instead, a WAL snapshot,
so pages keep being served while a long write holds the lock. A GET view that must write (a
download is audited) is marked, and a GET that writes without the mark fails in tests, so none is
missed. These run on SQLite in both suites: the behaviour is SQLite's own."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from flask import Flask
from sqlalchemy import insert

from dps import clock
from dps.database import writes_on_safe_request
from dps.extensions import csrf, db
from dps.models import Organisation
from dps.services import installation
from tests.conftest import DEFAULT_NOW, TEST_PASSWORD, _upgrade, make_app, sign_in

TEAM_EMAIL = "team@readers.example.org"


@pytest.fixture
def sqlite_app(tmp_path) -> Flask:
    path = tmp_path / "readers.sqlite3"
    url = f"sqlite:///{path}"
    _upgrade(url)
    app = make_app(url)
    with app.app_context():
        clock.set_simulated(clock.parse_london(DEFAULT_NOW), frozen=True)
        installation.set_up(accountable_body_name="Oldham Council", nation="England", admin_email=TEAM_EMAIL,
                            admin_name="Team Member", password=TEST_PASSWORD)
        db.session.commit()
    app.config["TEST_DATABASE_PATH"] = path
    yield app
    with app.app_context():
        db.engine.dispose()


class WriteLock:
    """Another process's writer: holds SQLite's write lock until released."""

    def __init__(self, path):
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.execute("UPDATE organisations SET name = name")

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


def _get_in_thread(browser, path: str) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(browser.get(path)), daemon=True)
    thread.start()
    return thread, result


def test_pages_are_served_while_another_writer_holds_the_lock(sqlite_app):
    browser = sqlite_app.test_client()
    sign_in(browser, TEAM_EMAIL)
    lock = WriteLock(sqlite_app.config["TEST_DATABASE_PATH"])
    try:
        # The lock is real: another writer cannot begin.
        other = sqlite3.connect(sqlite_app.config["TEST_DATABASE_PATH"], timeout=0.1, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        for path in ("/", "/agreements", "/team/", "/team/audit", "/team/members"):
            thread, result = _get_in_thread(browser, path)
            thread.join(timeout=10)  # a GET taking the lock would wait for the busy timeout (30 s)
            assert not thread.is_alive(), f"GET {path} waited for the write lock"
            assert result[0].status_code == 200, path
    finally:
        lock.release()


def test_a_post_still_takes_the_write_lock_from_its_start(sqlite_app):
    browser = sqlite_app.test_client()
    sign_in(browser, TEAM_EMAIL)
    lock = WriteLock(sqlite_app.config["TEST_DATABASE_PATH"])
    posted: list = []
    thread = threading.Thread(target=lambda: posted.append(browser.submit(
        "/team/members/new", {"name": "Rochdale Borough Council", "membership": "full", "kind": "council",
                              "nation": "England", "identifier_scheme": "", "identifier_id": "",
                              "joined_on": ["1", "4", "2020"], "left_on": ["", "", ""]},
        page="/team/members/new")), daemon=True)
    try:
        thread.start()
        thread.join(timeout=1.5)
        assert thread.is_alive(), "the POST did not wait for the writer holding the lock"
    finally:
        lock.release()
    thread.join(timeout=30)
    assert posted and posted[0].status_code in (302, 303)


def test_a_get_view_that_writes_must_say_so(sqlite_app):
    def unmarked():
        db.session.execute(insert(Organisation).values(name="Written on a GET", kind="supplier",
                                                       created_at=clock.now()))
        db.session.commit()
        return "written"

    @writes_on_safe_request
    def marked():
        return unmarked()

    def posted():
        return unmarked()

    sqlite_app.add_url_rule("/test/unmarked", "unmarked", unmarked)
    sqlite_app.add_url_rule("/test/marked", "marked", marked)
    sqlite_app.add_url_rule("/test/posted", "posted", posted, methods=["POST"])
    csrf.exempt(posted)
    browser = sqlite_app.test_client()
    with pytest.raises(RuntimeError, match="writes_on_safe_request"):
        browser.get("/test/unmarked")
    assert browser.get("/test/marked").get_data(as_text=True) == "written"
    # POST is a writer anyway.
    assert browser.post("/test/posted").status_code == 200
