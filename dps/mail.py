"""Email through an outbox.

``queue`` writes the message in the caller's transaction, so an email goes out only if the change
it reports was committed. With DPS_SMTP_URL set, it also defers a job (``send``) in that same
transaction: a worker sends the message once it is committed, and tries again with backoff while
the mail server says "later" (a 4xx answer, or no answer). Without it, messages stay in the
outbox table and are written to the log. ``deliver_pending`` (``flask --app dps outbox send``)
sends whatever is still waiting, by hand: a catch-up, no longer a cron job.
"""
from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app
from sqlalchemy import select

from . import clock, jobs
from .extensions import db
from .models import OutboxMessage

# Tries in all, by workers and `outbox send` together. With the queue's doubling waits from
# DPS_JOB_RETRY_SECONDS (60 s), the last is about two hours after the first.
MAX_ATTEMPTS = 8


def queue(to_address: str, subject: str, body: str) -> OutboxMessage:
    message = OutboxMessage(to_address=to_address, subject=header_safe(subject), body=body, created_at=clock.now(),
                            attempts=0)
    db.session.add(message)
    db.session.flush()
    if current_app.config.get("DPS_SMTP_URL"):
        send.defer(message_id=message.id)
        # Real mail goes out: the log must not hold the one-time links the bodies carry.
        current_app.logger.info("Email queued to %s: %s", to_address, message.subject)
    else:
        # Embedded mode (no mail server): the log is how a developer follows a link.
        current_app.logger.info("Email queued to %s (not sent: DPS_SMTP_URL is not set): %s\n%s",
                                to_address, message.subject, body)
    return message


@jobs.task("mail.send", queue="mail", attempts=MAX_ATTEMPTS)
def send(message_id: int) -> None:
    """The job of sending one outbox message. Raises ``RetryLater`` while the failure may pass
    (the server unreachable, or a 4xx answer such as greylisting); a refusal for good (5xx: no
    such mailbox) stays on the message as its last error, for `outbox list`."""
    url = current_app.config.get("DPS_SMTP_URL")
    if not url:
        return  # the service was reconfigured without mail since: it stays in the outbox
    message = _claim(message_id)
    if message is None:
        db.session.rollback()
        return  # sent already (by `outbox send`, or an earlier try), or given up on
    try:
        server = _connect(url)
    except (OSError, smtplib.SMTPException) as exc:
        message.attempts += 1
        message.last_error = f"could not connect: {exc}"
        db.session.commit()
        current_app.logger.warning("SMTP server unreachable: %s", exc)
        if message.attempts < MAX_ATTEMPTS:
            raise jobs.RetryLater(message.last_error) from exc
        return
    try:
        failure = _send_one(server, message)
    finally:
        _quit(server)
    attempts, error = message.attempts, message.last_error
    db.session.commit()
    if failure is not None and _temporary(failure) and attempts < MAX_ATTEMPTS:
        raise jobs.RetryLater(error)


def _claim(message_id: int) -> OutboxMessage | None:
    """The message, locked for sending, if it still waits. On PostgreSQL a message another
    worker (or `outbox send`) is sending is skipped, not sent twice; on SQLite every writing
    transaction holds the database's write lock anyway."""
    return db.session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None),
               OutboxMessage.attempts < MAX_ATTEMPTS)
        .with_for_update(skip_locked=True))


def _temporary(exc: Exception) -> bool:
    """Whether trying again later may succeed (RFC 5321: 4xx is transient, 5xx permanent)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, (OSError, smtplib.SMTPServerDisconnected))


def _quit(server: smtplib.SMTP) -> None:
    try:
        server.quit()
    except (OSError, smtplib.SMTPException):
        pass


def _connect(url: str) -> smtplib.SMTP:
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = parts.hostname or "localhost"
    timeout = float(options.get("timeout", 10))
    if parts.scheme == "smtps":
        server: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout,
                                                context=ssl.create_default_context())
    elif parts.scheme == "smtp":
        server = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
        if options.get("starttls", "0").lower() in ("1", "true", "yes"):
            server.starttls(context=ssl.create_default_context())
    else:
        raise ValueError("DPS_SMTP_URL must start with smtp:// or smtps://")
    if parts.username:
        server.login(unquote(parts.username), unquote(parts.password or ""))
    return server


def deliver_pending(batch_size: int = 100) -> tuple[int, int]:
    """One pass over the waiting messages, oldest first: each is tried once. Returns
    (sent, failed). Commits after each message, so a crash mid-way neither loses nor repeats
    what was already sent; a failed message waits for the next pass (up to MAX_ATTEMPTS). A
    message a worker is sending at that moment is left to it."""
    url = current_app.config.get("DPS_SMTP_URL")
    if not url:
        return (0, 0)
    sent = failed = 0
    server: smtplib.SMTP | None = None
    try:
        for message_id in _waiting_ids(batch_size):
            message = _claim(message_id)
            if message is None:
                db.session.rollback()
                continue
            if server is None:
                try:
                    server = _connect(url)
                except (OSError, smtplib.SMTPException) as exc:
                    current_app.logger.warning("SMTP server unreachable: %s", exc)
                    db.session.rollback()
                    return (sent, failed + _mark_unreachable(message_id, exc, batch_size))
            if _send_one(server, message) is None:
                sent += 1
            else:
                failed += 1
            db.session.commit()
    finally:
        if server is not None:
            _quit(server)
    return (sent, failed)


def _waiting_ids(batch_size: int, after: int = 0):
    """The ids of the messages waiting, from ``after`` on, read a batch at a time (each batch's
    transaction ended before its messages are sent)."""
    while True:
        batch = db.session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.attempts < MAX_ATTEMPTS, OutboxMessage.id >= after)
            .order_by(OutboxMessage.id).limit(batch_size)).all()
        db.session.commit()
        if not batch:
            return
        yield from batch
        after = batch[-1] + 1


def _mark_unreachable(first_id: int, exc: Exception, batch_size: int) -> int:
    """Count a failed attempt on every waiting message from ``first_id`` on; they stay in the
    outbox."""
    count = 0
    for message_id in _waiting_ids(batch_size, after=first_id):
        message = _claim(message_id)
        if message is not None:
            message.attempts += 1
            message.last_error = f"could not connect: {exc}"
            count += 1
        db.session.commit()
    return count


def header_safe(text: str) -> str:
    """One line: a line break in a header would be an injected header (and is refused)."""
    return " ".join(text.split())


# The one-time links in emails: redacted once sent, so the outbox never holds a live link.
_ONE_TIME_LINK = re.compile(r"(/(?:reset-password|invitation|confirm-email)/)[A-Za-z0-9_\-]+")


def redact_links(body: str) -> str:
    return _ONE_TIME_LINK.sub(r"\1[link removed after sending]", body)


def _send_one(server: smtplib.SMTP, message: OutboxMessage) -> Exception | None:
    """Send one message on an open connection; None when sent, else what went wrong (also kept
    as the message's last error). The caller commits."""
    # Counted first: a message that fails in any way is tried again later, never forever,
    # and never stops the messages behind it.
    message.attempts += 1
    try:
        email = EmailMessage()
        email["From"] = current_app.config["DPS_MAIL_FROM"]
        email["To"] = header_safe(message.to_address)
        email["Subject"] = header_safe(message.subject)
        email["Message-ID"] = make_msgid(domain="dps.example.org")
        email.set_content(message.body)
        server.send_message(email)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        message.last_error = str(exc)
        return exc
    message.sent_at = clock.now()
    message.last_error = None
    message.body = redact_links(message.body)
    return None
