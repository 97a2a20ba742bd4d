"""Email through an outbox.

``queue`` writes the message in the caller's transaction, so an email goes out only if the change
it reports was committed. ``deliver_pending`` sends what is waiting over SMTP when DPS_SMTP_URL
is set; without it, messages stay in the outbox table and are written to the log.
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

from . import clock
from .extensions import db
from .models import OutboxMessage

MAX_ATTEMPTS = 5


def queue(to_address: str, subject: str, body: str) -> OutboxMessage:
    message = OutboxMessage(to_address=to_address, subject=header_safe(subject), body=body, created_at=clock.now(),
                            attempts=0)
    db.session.add(message)
    db.session.flush()
    if current_app.config.get("DPS_SMTP_URL"):
        # Real mail goes out: the log must not hold the one-time links the bodies carry.
        current_app.logger.info("Email queued to %s: %s", to_address, message.subject)
    else:
        # Embedded mode (no mail server): the log is how a developer follows a link.
        current_app.logger.info("Email queued to %s (not sent: DPS_SMTP_URL is not set): %s\n%s",
                                to_address, message.subject, body)
    return message


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
    what was already sent; a failed message waits for the next pass (up to MAX_ATTEMPTS)."""
    url = current_app.config.get("DPS_SMTP_URL")
    if not url:
        return (0, 0)
    sent = failed = 0
    last_id = 0
    server: smtplib.SMTP | None = None
    try:
        while True:
            batch = db.session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.sent_at.is_(None), OutboxMessage.attempts < MAX_ATTEMPTS,
                       OutboxMessage.id > last_id)
                .order_by(OutboxMessage.id)
                .limit(batch_size)
            ).all()
            if not batch:
                break
            last_id = batch[-1].id
            if server is None:
                try:
                    server = _connect(url)
                except (OSError, smtplib.SMTPException) as exc:
                    current_app.logger.warning("SMTP server unreachable: %s", exc)
                    return (sent, failed + _mark_unreachable(batch, exc, batch_size))
            for message in batch:
                if _send_one(server, message):
                    sent += 1
                else:
                    failed += 1
                db.session.commit()
    finally:
        if server is not None:
            try:
                server.quit()
            except (OSError, smtplib.SMTPException):
                pass
    return (sent, failed)


def _mark_unreachable(first_batch: list[OutboxMessage], exc: Exception, batch_size: int) -> int:
    """Count a failed attempt on every waiting message; they stay in the outbox."""
    count = 0
    batch = first_batch
    while batch:
        for message in batch:
            message.attempts += 1
            message.last_error = f"could not connect: {exc}"
        count += len(batch)
        last_id = batch[-1].id
        db.session.commit()
        batch = db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.attempts < MAX_ATTEMPTS, OutboxMessage.id > last_id)
            .order_by(OutboxMessage.id).limit(batch_size)
        ).all()
    return count


def header_safe(text: str) -> str:
    """One line: a line break in a header would be an injected header (and is refused)."""
    return " ".join(text.split())


# The one-time links in emails: redacted once sent, so the outbox never holds a live link.
_ONE_TIME_LINK = re.compile(r"(/(?:reset-password|invitation|confirm-email)/)[A-Za-z0-9_\-]+")


def redact_links(body: str) -> str:
    return _ONE_TIME_LINK.sub(r"\1[link removed after sending]", body)


def _send_one(server: smtplib.SMTP, message: OutboxMessage) -> bool:
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
    except (smtplib.SMTPException, ValueError) as exc:
        message.last_error = str(exc)
        return False
    message.sent_at = clock.now()
    message.last_error = None
    message.body = redact_links(message.body)
    return True
