"""Email through the outbox, delivered to a real SMTP server on 127.0.0.1 (DESIGN 8)."""
from __future__ import annotations

import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from dps import clock, mail
from dps.extensions import db
from dps.models import OutboxMessage
from tests.conftest import DEFAULT_NOW, link_in, make_app, outbox

DEFAULT_FROM = "CCIN DPS <no-reply@dps.example.org>"
REJECTED = "nobody@rejected.example.org"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Collector:
    """An SMTP handler that keeps every message it accepts and refuses one recipient."""

    def __init__(self):
        self.envelopes = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REJECTED:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self):
        return [message_from_bytes(envelope.content, policy=policy.default) for envelope in self.envelopes]


@pytest.fixture
def smtp_server():
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def _dispose(application) -> None:
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def smtp_app(app, database_url, smtp_server):
    """The app, configured to send through the test SMTP server (same database and clock as ``app``)."""
    controller, _ = smtp_server
    application = make_app(database_url, DPS_SMTP_URL=f"smtp://127.0.0.1:{controller.port}")
    yield application
    _dispose(application)


@pytest.fixture
def unreachable_app(app, database_url):
    """The app, configured with an SMTP server that is not there (a closed port)."""
    application = make_app(database_url, DPS_SMTP_URL=f"smtp://127.0.0.1:{free_port()}?timeout=3")
    yield application
    _dispose(application)


def queue(app, *messages: tuple[str, str, str]) -> None:
    with app.app_context():
        for to, subject, body in messages:
            mail.queue(to, subject, body)
        db.session.commit()


def deliver(app) -> tuple[int, int]:
    with app.app_context():
        return mail.deliver_pending()


def test_a_queued_message_is_delivered_once(smtp_app, smtp_server):
    _, handler = smtp_server
    queue(smtp_app, ("pat@example.org", "Your call-off was awarded", "Dear Pat,\n\nThe value is £1,234.56.\n"))

    assert deliver(smtp_app) == (1, 0)
    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "no-reply@dps.example.org"
    assert envelope.rcpt_tos == ["pat@example.org"]
    message = handler.messages()[0]
    assert message["From"] == DEFAULT_FROM
    assert message["To"] == "pat@example.org"
    assert message["Subject"] == "Your call-off was awarded"
    assert message["Message-ID"]
    # SMTP carries lines ending in CRLF.
    assert message.get_body().get_content().replace("\r\n", "\n") == "Dear Pat,\n\nThe value is £1,234.56.\n"

    [row] = outbox(smtp_app)
    assert row.sent_at == clock.parse_london(DEFAULT_NOW), "sent_at should be the service's clock time"
    assert row.attempts == 1 and row.last_error is None

    assert deliver(smtp_app) == (0, 0), "a second delivery sent something again"
    assert len(handler.envelopes) == 1


def test_dps_mail_from_is_used_as_the_sender(app, database_url, smtp_server):
    controller, handler = smtp_server
    custom = make_app(database_url, DPS_SMTP_URL=f"smtp://127.0.0.1:{controller.port}",
                      DPS_MAIL_FROM="Oldham DPS <dps@oldham.example.org>")
    try:
        queue(custom, ("pat@example.org", "Hello", "Body\n"))
        assert deliver(custom) == (1, 0)
    finally:
        _dispose(custom)
    assert handler.messages()[0]["From"] == "Oldham DPS <dps@oldham.example.org>"
    assert handler.envelopes[0].mail_from == "dps@oldham.example.org"


def test_unreachable_server_loses_nothing(app, unreachable_app, smtp_app, smtp_server):
    _, handler = smtp_server
    queue(unreachable_app, ("a@example.org", "First", "One\n"), ("b@example.org", "Second", "Two\n"))

    assert deliver(unreachable_app) == (0, 2)
    rows = outbox(app)
    assert [row.sent_at for row in rows] == [None, None]
    assert [row.attempts for row in rows] == [1, 1]
    assert all(row.last_error for row in rows), [row.last_error for row in rows]

    assert deliver(unreachable_app) == (0, 2)
    assert [row.attempts for row in outbox(app)] == [2, 2]

    # The server is back: everything waiting goes out.
    assert deliver(smtp_app) == (2, 0)
    assert sorted(e.rcpt_tos[0] for e in handler.envelopes) == ["a@example.org", "b@example.org"]
    rows = outbox(app)
    assert all(row.sent_at is not None and row.last_error is None for row in rows)


def test_a_refused_recipient_does_not_stop_the_others(smtp_app, smtp_server):
    _, handler = smtp_server
    queue(smtp_app, ("a@example.org", "First", "One\n"), (REJECTED, "Second", "Two\n"), ("c@example.org", "Third", "Three\n"))
    assert deliver(smtp_app) == (2, 1)
    assert sorted(e.rcpt_tos[0] for e in handler.envelopes) == ["a@example.org", "c@example.org"]
    rows = {row.to_address: row for row in outbox(smtp_app)}
    assert rows[REJECTED].sent_at is None and rows[REJECTED].last_error, rows[REJECTED].last_error
    assert rows["a@example.org"].sent_at is not None and rows["c@example.org"].sent_at is not None


def test_forgotten_password_email_reaches_the_smtp_server(smtp_app, smtp_server, factory):
    _, handler = smtp_server
    user = factory.user("buyer", email="pat.buyer@example.org")
    browser = smtp_app.test_client()
    response = browser.submit("/forgotten-password", {"email": "Pat.Buyer@Example.org"})
    assert response.status_code == 200

    assert deliver(smtp_app) == (1, 0)
    assert len(handler.envelopes) == 1
    assert handler.envelopes[0].rcpt_tos == [user["email"]]
    message = handler.messages()[0]
    body = message.get_body().get_content()
    path = link_in(body)
    assert path.startswith("/reset-password/"), body
    assert browser.get(path).status_code == 200, "the emailed reset link does not open"


def test_no_email_for_an_unknown_address(smtp_app, smtp_server):
    _, handler = smtp_server
    response = smtp_app.test_client().submit("/forgotten-password", {"email": "nobody@example.org"})
    assert response.status_code == 200
    assert deliver(smtp_app) == (0, 0)
    assert handler.envelopes == []


def test_outbox_send_command_sends_what_is_waiting(smtp_app, smtp_server):
    _, handler = smtp_server
    queue(smtp_app, ("pat@example.org", "Hello", "Body\n"))
    result = smtp_app.test_cli_runner().invoke(args=["outbox", "send"])
    assert result.exit_code == 0, result.output
    assert "Sent 1, failed 0" in result.output
    assert len(handler.envelopes) == 1


def test_outbox_send_command_counts_each_failed_message_once(smtp_app, smtp_server):
    queue(smtp_app, ("a@example.org", "First", "One\n"), (REJECTED, "Second", "Two\n"))
    result = smtp_app.test_cli_runner().invoke(args=["outbox", "send"])
    assert result.exit_code == 1, result.output
    assert "Sent 1, failed 1." in result.output, (
        f"one message was sent and one refused, but the command reported: {result.output.strip()!r}")


def test_outbox_send_command_with_an_unreachable_server_fails(unreachable_app):
    queue(unreachable_app, ("a@example.org", "First", "One\n"))
    result = unreachable_app.test_cli_runner().invoke(args=["outbox", "send"])
    assert result.exit_code == 1, result.output
    assert "Sent 0, failed 1" in result.output
    assert outbox(unreachable_app)[0].sent_at is None


def test_outbox_send_command_without_smtp_names_the_setting(app):
    queue(app, ("pat@example.org", "Hello", "Body\n"))
    result = app.test_cli_runner().invoke(args=["outbox", "send"])
    assert result.exit_code != 0
    assert "DPS_SMTP_URL" in result.output
    [row] = outbox(app)
    assert row.sent_at is None and row.attempts == 0


def test_deliver_without_smtp_keeps_messages_in_the_outbox(app):
    queue(app, ("pat@example.org", "Hello", "Body\n"))
    assert deliver(app) == (0, 0)
    with app.app_context():
        row = db.session.scalar(select(OutboxMessage))
        assert row.sent_at is None and row.attempts == 0


def test_a_line_break_in_a_subject_cannot_inject_headers_or_block_the_outbox(smtp_app, smtp_server):
    """A supplier's name ends up in subjects; a name with a line break once stopped all mail."""
    _, handler = smtp_server
    queue(smtp_app, ("team@example.org", "New application: Evil Ltd\r\nBcc: victim@example.org", "Body\n"),
          ("pat@example.org", "Reset your password", "Body\n"))
    assert deliver(smtp_app) == (2, 0)
    subjects = [m["Subject"] for m in handler.messages()]
    assert subjects == ["New application: Evil Ltd Bcc: victim@example.org", "Reset your password"]
    assert all(m["Bcc"] is None for m in handler.messages())
    assert [len(e.rcpt_tos) for e in handler.envelopes] == [1, 1]


def test_one_time_links_are_removed_from_the_outbox_once_sent(smtp_app, smtp_server, factory):
    _, handler = smtp_server
    user = factory.user("buyer")
    smtp_app.test_client().submit("/forgotten-password", {"email": user["email"]})
    assert deliver(smtp_app) == (1, 0)
    delivered = handler.messages()[0].get_content()
    assert "/reset-password/" in delivered and "[link removed" not in delivered  # the person got the link
    stored = outbox(smtp_app)[-1].body
    assert "/reset-password/[link removed after sending]" in stored  # the database keeps no live link


def test_names_must_be_on_one_line(signed_in):
    browser, _ = signed_in("supplier")
    response = browser.submit("/supplier/colleagues", {"name": "Kit\r\nBcc: x@example.org", "email": "kit@example.org"})
    assert response.status_code == 400 and "must be on one line" in response.get_data(as_text=True)
