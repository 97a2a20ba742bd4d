"""Command-line interface: `flask --app dps <group> <command>` (see the README's CLI reference)."""
from __future__ import annotations

import secrets
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from . import audit, clock, mail
from .extensions import db
from .models import Agreement, Organisation, OutboxMessage, User
from .models.users import ROLES
from .services import ServiceError, accounts


def _require_current_schema() -> None:
    from .database import schema_problem

    problem = schema_problem(current_app)
    if problem:
        raise click.ClickException(problem)
    clock.sync()


users_cli = AppGroup("users", help="Create and manage accounts.")
demo_cli = AppGroup("demo", help="Demonstration data.")
clock_cli = AppGroup("clock", help="The simulated clock (only when DPS_CLOCK is set).")
outbox_cli = AppGroup("outbox", help="Emails waiting in the outbox.")
audit_cli = AppGroup("audit", help="The hash-chained audit log.")
applications_cli = AppGroup("applications", help="Applications to join the DPS.")


@users_cli.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="supplier, buyer, dps_admin or auditor.")
@click.option("--email", required=True)
@click.option("--name", required=True, help="The person's full name.")
@click.option("--organisation", "organisation_name", default=None,
              help="Exact organisation name. Default for dps_admin and auditor: the DPS's accountable body.")
@click.option("--password", default=None, help="Leave out to be asked for it (not echoed).")
def users_create(role: str, email: str, name: str, organisation_name: str | None, password: str | None) -> None:
    """Create an account (DPS team and auditor accounts are made only here)."""
    _require_current_schema()
    if organisation_name:
        org = db.session.scalar(select(Organisation).where(Organisation.name == organisation_name))
        if org is None:
            raise click.ClickException(f"No organisation is called {organisation_name!r}")
    elif role in ("dps_admin", "auditor"):
        agreement = db.session.scalar(select(Agreement).order_by(Agreement.id))
        if agreement is None:
            raise click.ClickException("There is no DPS yet to take the accountable body from: pass --organisation")
        org = agreement.accountable_body
    else:
        raise click.ClickException(f"--organisation is needed for a {role} account")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email=email, name=name, role=role, organisation=org, password=password,
                                    confirmed=True, actor_label="command line")
    except ServiceError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    click.echo(f"Created {user.role_label} account {user.email} ({org.name}).")


@users_cli.command("list")
@click.option("--role", type=click.Choice(ROLES), default=None)
def users_list(role: str | None) -> None:
    """List accounts."""
    _require_current_schema()
    stmt = select(User).order_by(User.role, User.email)
    if role:
        stmt = stmt.where(User.role == role)
    for user in db.session.scalars(stmt):
        state = "active" if user.active else "deactivated"
        click.echo(f"{user.email}\t{user.role}\t{state}\t{user.organisation.name}")


@users_cli.command("deactivate")
@click.argument("email")
def users_deactivate(email: str) -> None:
    """Deactivate an account and end all its sessions at once."""
    _require_current_schema()
    user = db.session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
    if user is None:
        raise click.ClickException(f"No account has the email address {email}")
    if not user.active:
        raise click.ClickException(f"{user.email} is already deactivated")
    user.active = False
    user.session_version += 1
    audit.record("user.deactivated", "user", user.id, {"before": {"active": True}, "after": {"active": False}},
                 actor_label="command line", organisation_id=user.organisation_id)
    db.session.commit()
    click.echo(f"Deactivated {user.email}; every session of theirs has ended.")


@demo_cli.command("load")
@click.option("--password", default=None, help="Password for every demo sign-in (default: generated and printed).")
@click.option("--if-empty", is_flag=True, help="Do nothing, successfully, if the database already has data.")
def demo_load(password: str | None, if_empty: bool) -> None:
    """Load the CCIN DPS 2020–2025 demonstration data into an empty database."""
    from .demo import DemoError, database_is_empty, load_demo

    _require_current_schema()
    if not database_is_empty():
        if if_empty:
            click.echo("The database already has data: demo data not loaded.")
            return
        raise click.ClickException("The database already has data. Demo data goes only into an empty database.")
    if password is None:
        password = "-".join(secrets.choice(_WORDS) for _ in range(4))
    elif (problem := accounts.password_problem(password)):
        raise click.ClickException(f"--password: {problem}")
    try:
        sign_ins = load_demo(password)
    except DemoError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo("Demo data loaded. Sign in at http://127.0.0.1:5000/sign-in with:")
    for entry in sign_ins:
        click.echo(f"  {entry['email']:<45} {entry['role']:<10} {entry['organisation']}")
    click.echo(f"Password for every demo sign-in: {password}")


# Short, common words: a generated demo password people can read off a terminal and type.
_WORDS = (
    "copper", "kettle", "harbour", "meadow", "lantern", "orchard", "pebble", "thistle", "canal", "beacon",
    "willow", "granite", "saffron", "ferry", "bramble", "quarry", "heron", "cobble", "marble", "tundra",
)


@clock_cli.command("show")
def clock_show() -> None:
    """Print the time the service is running at."""
    _require_current_schema()
    db.session.commit()
    label = "simulated" if clock.is_simulated() else "real"
    click.echo(f"{clock.fmt(clock.now())} (Europe/London, {label} clock)")


@clock_cli.command("move-to")
@click.argument("moment")
def clock_move_to(moment: str) -> None:
    """Move the simulated clock on to MOMENT (e.g. 2024-04-15T09:00, UK time)."""
    _require_current_schema()
    if not clock.is_simulated():
        raise click.ClickException("The clock is real time: set DPS_CLOCK to use a simulated clock")
    try:
        target = clock.parse_london(moment)
        moved_from = clock.move_forward_to(target)
    except clock.ClockError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("clock.moved", "clock", 1, {"before": moved_from.isoformat(), "after": target.isoformat()},
                 actor_label="command line")
    db.session.commit()
    click.echo(f"The simulated clock now reads {clock.fmt(target)}.")


@outbox_cli.command("list")
@click.option("--pending", is_flag=True, help="Only messages not yet sent.")
def outbox_list(pending: bool) -> None:
    """List emails in the outbox, newest first."""
    _require_current_schema()
    stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(50)
    if pending:
        stmt = stmt.where(OutboxMessage.sent_at.is_(None))
    for message in db.session.scalars(stmt):
        state = f"sent {clock.fmt(message.sent_at)}" if message.sent_at else "waiting"
        click.echo(f"#{message.id} {clock.fmt(message.created_at)} to {message.to_address}: {message.subject} [{state}]")


@outbox_cli.command("send")
def outbox_send() -> None:
    """Send waiting emails through DPS_SMTP_URL (run it from cron or a timer)."""
    _require_current_schema()
    if not current_app.config.get("DPS_SMTP_URL"):
        raise click.ClickException("DPS_SMTP_URL is not set: emails stay in the outbox")
    sent, failed = mail.deliver_pending()
    click.echo(f"Sent {sent}, failed {failed}.")
    if failed:
        sys.exit(1)


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken row."""
    _require_current_schema()
    result = audit.verify_chain()
    if result.ok:
        click.echo(f"Audit log intact: {result.count} events, chain verified.")
        return
    click.echo(f"Audit log BROKEN at event {result.broken_id}: {result.reason}. "
               f"{result.count} events before it verified.", err=True)
    sys.exit(1)


@applications_cli.command("notify-overdue")
def applications_notify_overdue() -> None:
    """Email the DPS team the applications past their decision date (run daily, e.g. from cron)."""
    from .services.applications import notify_overdue

    _require_current_schema()
    count = notify_overdue()
    db.session.commit()
    click.echo(f"{count} overdue application decision(s)" + (": the DPS team has been emailed." if count else "."))


def register(app: Flask) -> None:
    for group in (users_cli, demo_cli, clock_cli, outbox_cli, audit_cli, applications_cli):
        app.cli.add_command(group)
