"""Command-line interface: `flask --app dps <group> <command>` (see the README's CLI reference)."""
from __future__ import annotations

import os
import re
import secrets
import sys
import time
from datetime import date

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from . import audit, clock, jobs, mail
from .extensions import db
from .filters import plural
from .models import Organisation, OutboxMessage, User
from .models.users import ROLES
from .services import ServiceError, accounts, installation


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
        org = installation.accountable_body()
        if org is None:
            raise click.ClickException("The service is not set up yet: run `flask --app dps setup` first")
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


@click.command("setup")
@with_appcontext
@click.option("--accountable-body", "accountable_body", required=True,
              help="The organisation that runs the service, e.g. \"Oldham Council\".")
@click.option("--nation", type=click.Choice(sorted(installation.NATION_CHOICES)), required=True,
              help="The accountable body's nation (whose bank holidays its agreements count by default).")
@click.option("--admin-email", required=True, help="Email address of the first DPS team account.")
@click.option("--admin-name", required=True, help="Full name of the first DPS team member.")
@click.option("--password", default=None, help="Leave out to be asked for it (not echoed).")
def setup_command(accountable_body: str, nation: str, admin_email: str, admin_name: str, password: str | None) -> None:
    """Set the service up on an empty database: the accountable body and the first DPS team account."""
    _require_current_schema()
    if installation.installation() is not None:
        raise click.ClickException(f"The service is already set up for {installation.accountable_body().name}. "
                                   "Sign in as the DPS team to manage it; `users create` adds more accounts.")
    if password is None:
        password = click.prompt("Password for the DPS team account", hide_input=True, confirmation_prompt=True)
    try:
        user = installation.set_up(accountable_body_name=accountable_body, nation=installation.NATION_CHOICES[nation],
                                   admin_email=admin_email, admin_name=admin_name, password=password)
    except ServiceError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    base = current_app.config["DPS_BASE_URL"].rstrip("/")
    click.echo(f"Set up {user.organisation.name} as the accountable body, with the DPS team account {user.email}.")
    click.echo("Next:")
    click.echo(f"  1. Sign in at {base}/sign-in as {user.email}.")
    click.echo(f"  2. Add the network's member organisations: {base}/team/members (one at a time, or import a CSV).")
    click.echo(f"  3. Create the agreement, its lots and its selection questionnaire, then publish it: {base}/team/agreements")
    click.echo("  4. Create more DPS team and auditor accounts: flask --app dps users create --role dps_admin|auditor ...")
    click.echo("  5. Schedule `flask --app dps outbox send` every minute and "
               "`flask --app dps applications notify-overdue` daily.")


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
    sign_in = f"{current_app.config['DPS_BASE_URL'].rstrip('/')}/sign-in"
    if not database_is_empty():
        if if_empty:
            click.echo("Demo data: not loaded, the database already has data (`make reset-demo` starts again).")
            click.echo(f"Sign in at {sign_in}")
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
    click.echo(f"Demo data loaded. Sign in at {sign_in} with:")
    for entry in sign_ins:
        click.echo(f"  {entry['email']:<45} {entry['role']:<10} {entry['organisation']}")
    click.echo(f"Password for every demo sign-in: {password}")


@demo_cli.command("scale")
@click.option("--factor", type=click.FloatRange(min=0, min_open=True, max=100), default=1.0, show_default=True,
              help="Multiplies 1,000 suppliers, 50 buyer organisations, 2,000 competitions, 20,000 bids and "
                   "100,000 audit events: 10 is national scale; fractions such as 0.01 are for tests.")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed (and DPS_CLOCK) gives the same data.")
@click.option("--password", default=None, help="Password for every account (default: generated and printed).")
def demo_scale(factor: float, seed: int, password: str | None) -> None:
    """Fill an empty database with benchmark data at K times a unit size (see dps/scale.py)."""
    from .demo import database_is_empty
    from .scale import ScaleError, load_scale

    _require_current_schema()
    if not database_is_empty():
        raise click.ClickException("The database already has data. Benchmark data goes only into an empty database.")
    if password is None:
        password = "-".join(secrets.choice(_WORDS) for _ in range(4))
    elif (problem := accounts.password_problem(password)):
        raise click.ClickException(f"--password: {problem}")
    click.echo(f"Loading benchmark data at --factor {factor:g} (seed {seed}):")
    try:
        summary = load_scale(factor, password, seed=seed, echo=click.echo)
    except ScaleError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo("Rows now in each table:")
    for table, count in summary.rows.items():
        click.echo(f"  {table:<18} {count:>10,}")
    for note in summary.notes:
        click.echo(f"Note: {note}.")
    click.echo(f"Done in {summary.seconds:.1f}s. Sign in at {current_app.config['DPS_BASE_URL'].rstrip('/')}/sign-in as:")
    for email, role, organisation in summary.sign_ins:
        click.echo(f"  {email:<50} {role:<9} {organisation}")
    click.echo(f"Password for every account: {password}")


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
    messages = db.session.scalars(stmt).all()
    for message in messages:
        state = f"sent {clock.fmt(message.sent_at)}" if message.sent_at else "waiting"
        click.echo(f"#{message.id} {clock.fmt(message.created_at)} to {message.to_address}: {message.subject} [{state}]")
    if messages:
        click.echo("To see one in full, with its links: flask --app dps outbox show ID (e.g. "
                   f"flask --app dps outbox show {messages[0].id})")
    else:
        click.echo("No emails are waiting." if pending else "The outbox is empty.")


@outbox_cli.command("show")
@click.argument("message_id", metavar="ID", type=int)
def outbox_show(message_id: int) -> None:
    """Print one email in full: to, subject, when, whether sent, and its body with the links."""
    _require_current_schema()
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        raise click.ClickException(f"No email in the outbox has the id {message_id} "
                                   "(`flask --app dps outbox list` shows the ids)")
    click.echo(f"Email #{message.id}")
    click.echo(f"To:      {message.to_address}")
    click.echo(f"Subject: {message.subject}")
    click.echo(f"Created: {clock.fmt(message.created_at)}")
    if message.sent_at:
        click.echo(f"Sent:    {clock.fmt(message.sent_at)} (one-time links are removed once sent)")
    elif message.attempts >= mail.MAX_ATTEMPTS:
        click.echo(f"Sent:    no, given up after {message.attempts} tries")
    elif message.attempts:
        click.echo(f"Sent:    not yet, {message.attempts} tr{'y' if message.attempts == 1 else 'ies'} so far")
    else:
        click.echo("Sent:    not yet" + ("" if current_app.config.get("DPS_SMTP_URL")
                                        else " (DPS_SMTP_URL is not set: it stays in the outbox)"))
    if message.last_error and not message.sent_at:
        click.echo(f"Error:   {message.last_error}")
    click.echo("")
    click.echo(message.body.rstrip("\n"))


@outbox_cli.command("send")
def outbox_send() -> None:
    """Send waiting emails through DPS_SMTP_URL now: a catch-up by hand (workers send each email
    as it is queued, trying again with backoff; no cron job is needed)."""
    _require_current_schema()
    if not current_app.config.get("DPS_SMTP_URL"):
        raise click.ClickException("DPS_SMTP_URL is not set: emails stay in the outbox")
    sent, failed = mail.deliver_pending()
    click.echo(f"Sent {sent}, failed {failed}.")
    if failed:
        sys.exit(1)


@audit_cli.command("verify")
@click.option("--head", "recorded_head", metavar="ID:HASH", default=None,
              help="A head printed by an earlier run: check that row is still in the chain unchanged "
                   "(rows cut off the end of a chain leave no broken link).")
def audit_verify(recorded_head: str | None) -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken row.

    Prints the head (the last row's id and hash): keep it outside this database (a ticket, the
    monthly audit file) and pass it back with --head next time."""
    _require_current_schema()
    if recorded_head is not None:
        head_id, _, head_hash = recorded_head.partition(":")
        if not head_id.isdigit() or len(head_hash) != 64:
            raise click.BadParameter("give the head as ID:HASH, as printed by an earlier run", param_hint="--head")
    result = audit.verify_chain()
    if not result.ok:
        click.echo(f"Audit log BROKEN at event {result.broken_id}: {result.reason}. "
                   f"{result.count} events before it verified.", err=True)
        sys.exit(1)
    if recorded_head is not None:
        from .models import AuditEvent

        stored = db.session.get(AuditEvent, int(head_id))
        if stored is None or stored.hash != head_hash:
            click.echo(f"Audit log BROKEN: the recorded head, event {head_id}, is "
                       f"{'missing' if stored is None else 'changed'} (rows were removed from the end, "
                       f"or the log was rebuilt). {result.count} events verified.", err=True)
            sys.exit(1)
    click.echo(f"Audit log intact: {result.count} events, chain verified.")
    if result.head_id is not None:
        click.echo(f"Head: {result.head_id}:{result.head_hash}")


@applications_cli.command("notify-overdue")
def applications_notify_overdue() -> None:
    """Email the DPS team the applications past their decision date (run daily, e.g. from cron)."""
    from .services.applications import notify_overdue

    _require_current_schema()
    count = notify_overdue()
    db.session.commit()
    click.echo(plural(count, "overdue application decision") + (": the DPS team has been emailed." if count else "."))


# The names for the exports, and the registry's name behind each. "transparency" is two
# reports, chosen with --report.
EXPORT_KINDS = {
    "ocds": "ocds",
    "records": "records",
    "transparency": None,
    "contracts": "contracts",
    "contracts-finder": "contracts-finder",
    "award-notices": "award-notices",
    "audit": "audit",
    "xlsx": "xlsx",
}
TRANSPARENCY_REPORTS = {"tenders": "transparency-tenders", "contracts": "transparency-contracts"}
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.IGNORECASE)


def _parse_day(value: str | None, param: str) -> date | None:
    if value is None:
        return None
    from .exports.deliver import EARLIEST_DAY, LATEST_DAY

    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            if not EARLIEST_DAY <= day <= LATEST_DAY:
                raise click.BadParameter(f"{value} is outside {EARLIEST_DAY.year} to {LATEST_DAY.year}",
                                         param_hint=param)
            return day
    raise click.BadParameter(f"{value!r} is not a real date: use YYYY-MM-DD, like 2024-06-30", param_hint=param)


def _parse_quarter(value: str) -> tuple[date, date]:
    match = _QUARTER.match(value.strip())
    if not match or not 2000 <= int(match.group(1)) <= 2099:
        raise click.BadParameter(f"{value!r} is not a quarter: use YYYY-Qn, like 2024-Q2", param_hint="--quarter")
    from .exports.deliver import calendar_quarter

    return calendar_quarter(int(match.group(1)), int(match.group(2)))


def export_filters(date_from: str | None, date_to: str | None, quarter: str | None):
    """The period of an export from the command line's options (London days, both ends included)."""
    from .exports import Filters

    if quarter is not None:
        if date_from is not None or date_to is not None:
            raise click.UsageError("Give --quarter or --from/--to, not both")
        start, end = _parse_quarter(quarter)
    else:
        start, end = _parse_day(date_from, "--from"), _parse_day(date_to, "--to")
    if start and end and end < start:
        raise click.BadParameter(f"{end.isoformat()} is before --from {start.isoformat()}: "
                                 "the period must end on or after the day it starts", param_hint="--to")
    return Filters(start, end)


def export_agreement(reference: str) -> str:
    """The reference of the published agreement ``reference`` names (any case), or a usage error."""
    from .services import agreements as agreements_service

    text = reference.strip()
    found = agreements_service.by_reference(text) if text else None
    if found is None or found.published_at is None:
        published = [a.reference for a in agreements_service.published_agreements()]
        offered = ", ".join(published) if published else "none yet"
        state = "is a draft, and drafts are never exported" if found is not None else "is not an agreement's reference"
        raise click.BadParameter(f"{reference!r} {state}. Published agreements: {offered}",
                                 param_hint="--agreement")
    return found.reference


class _CountingBar:
    """A progress display on a terminal: a bar when the export knows its row count, a running
    count (redrawn at most five times a second) when it does not."""

    def __init__(self, title: str, length: int | None):
        self.done = 0
        self.title = title
        self.drawn_at = 0.0
        self.bar = click.progressbar(length=length, label=title, file=sys.stderr) if length else None

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif time.monotonic() - self.drawn_at >= 0.2:
            self._draw()

    def _draw(self) -> None:
        self.drawn_at = time.monotonic()
        click.echo(f"\r{self.title}: {self.done:,} written", nl=False, err=True)

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.__exit__(*exc_info)
        else:
            self._draw()
            click.echo("", err=True)


@click.command("export")
@click.argument("kind", type=click.Choice(list(EXPORT_KINDS)))
@click.option("--report", type=click.Choice(list(TRANSPARENCY_REPORTS)), default=None,
              help="For transparency: the Transparency Code's tenders or contracts report.")
@click.option("--from", "date_from", metavar="YYYY-MM-DD", default=None,
              help="First day of the period (UK time, included).")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", default=None,
              help="Last day of the period (UK time, included).")
@click.option("--quarter", metavar="YYYY-Qn", default=None,
              help="A calendar quarter instead of --from/--to: Q1 is January to March, Q4 October to December. "
                   "April to June is Q1 of the financial year but calendar Q2, so 2024-Q2.")
@click.option("--agreement", "agreement_reference", metavar="REFERENCE", default=None,
              help="Only this published agreement's rows (its reference, e.g. CCIN-DPS-2020). Default: every "
                   "published agreement. Not for audit: the audit log is one chain and is always exported whole.")
@click.option("--out", "destination", required=True, metavar="PATH|s3://bucket/key",
              help="A file to write (replaced only once the export is complete) or an S3 object.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: only when the output is a terminal).")
@with_appcontext
def export_command(kind: str, report: str | None, date_from: str | None, date_to: str | None,
                   quarter: str | None, agreement_reference: str | None, destination: str,
                   progress: bool | None) -> None:
    """Take an export: ocds, records, transparency (--report tenders|contracts), contracts,
    contracts-finder, award-notices, audit or xlsx.

    The whole export is written and checked before anything is handed out: a failure (the
    export's own checks, the database, the disk or S3) leaves no file or object behind and exits
    with status 1 saying why. Taking an export is recorded in the audit log.

    With --agreement, only that published agreement's rows (every export but audit); without it,
    every published agreement's. Drafts are never exported."""
    from sqlalchemy.exc import SQLAlchemyError

    from .exports import ExportInvalid, Filters, deliver, get

    _require_current_schema()
    if kind == "transparency":
        if report is None:
            raise click.UsageError("transparency needs --report tenders or --report contracts")
        name = TRANSPARENCY_REPORTS[report]
    else:
        if report is not None:
            raise click.UsageError("--report is only for the transparency export")
        name = EXPORT_KINDS[kind]
    filters = export_filters(date_from, date_to, quarter)
    try:
        export = get(name)
    except KeyError:
        raise click.ClickException(f"The {name} export is not available in this version") from None
    if agreement_reference is not None:
        if not export.by_agreement:
            raise click.BadParameter(f"the {kind} export cannot be taken for one agreement: the audit log is one "
                                     "hash chain for the whole service and is always exported whole; "
                                     "leave --agreement out", param_hint="--agreement")
        filters = Filters(filters.start, filters.end, export_agreement(agreement_reference))

    to_s3 = destination.startswith("s3://")
    if to_s3:
        try:
            deliver.parse_s3_url(destination)
        except deliver.DeliveryError as exc:
            raise click.BadParameter(str(exc), param_hint="--out") from exc
    else:
        folder = os.path.dirname(os.path.abspath(destination))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"the folder {folder} does not exist", param_hint="--out")
        if os.path.isdir(destination):
            raise click.BadParameter(f"{destination} is a folder: give a file name", param_hint="--out")

    show = sys.stderr.isatty() if progress is None else progress
    try:
        if show:
            length = export.count(filters) if export.count else None  # a query: inside the try
            with _CountingBar(export.title, length) as bar:
                tmp = deliver.produce(export, filters, bar)
        else:
            tmp = deliver.produce(export, filters)
    except ExportInvalid as exc:
        db.session.rollback()
        raise click.ClickException(f"The {name} export failed its checks; nothing was written. {exc.message}") from exc
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise click.ClickException(f"The {name} export failed reading the database; nothing was written. "
                                   f"{type(exc).__name__}: {exc.orig if getattr(exc, 'orig', None) else exc}") from exc
    # End the read transaction before the upload: on SQLite every transaction holds the write
    # lock, and an upload can take minutes.
    db.session.rollback()
    with tmp:
        try:
            if to_s3:
                size = deliver.to_s3(tmp, destination, content_type=export.media_type)
            else:
                size = deliver.to_path(tmp, destination)
        except deliver.DeliveryError as exc:
            # A failed write or upload is not an export taken: no audit event.
            raise click.ClickException(str(exc)) from exc
    where = destination if to_s3 else os.path.abspath(destination)
    # Recorded only now that the file or object is complete: what the log says was taken, was.
    deliver.record_taken(export, filters, destination if to_s3 else "file", size,
                         path=None if to_s3 else where)
    db.session.commit()
    click.echo(f"Wrote {export.title} ({size:,} bytes) to {where}")


@click.command("worker")
@click.option("--queue", "queues", multiple=True, type=click.Choice(jobs.QUEUES),
              help="Run only this queue's jobs (repeat for several). Default: all of them, mail first.")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64),
              help="How many jobs run at once.")
@click.option("--burst", is_flag=True,
              help="Run the jobs that are due, then exit (a one-off catch-up), instead of waiting for more.")
@with_appcontext
def worker_command(queues: tuple[str, ...], concurrency: int, burst: bool) -> None:
    """Run background jobs: exports prepared for the Exports page, and emails.

    Runs on any host with the service's configuration (DPS_DATABASE_URL and the rest), as many
    at once as you like. Stop it with Ctrl-C or SIGTERM: the jobs running finish first."""
    _require_current_schema()
    # End the command's own transaction: on SQLite it would hold the write lock the jobs need.
    db.session.remove()
    queue = jobs.queue_of(current_app)
    chosen = [name for name in jobs.QUEUES if name in queues] if queues else list(jobs.QUEUES)
    click.echo(f"Job worker ({queue.kind}) on {', '.join(chosen)}, {concurrency} at a time"
               + (", until no job is due." if burst else ". Stop with Ctrl-C."), err=True)
    queue.run_worker(queues=chosen, concurrency=concurrency, burst=burst)


@click.command("backup")
@click.option("--out", "destination", required=True, metavar="PATH|s3://bucket/key",
              help="The archive to write: a file (a .tar, or .tar.gz to compress it) or an S3 object.")
@with_appcontext
def backup_command(destination: str) -> None:
    """Back up the database and every document into one archive, with a manifest of SHA-256s.

    Safe while the site runs: SQLite is copied with its online backup API, PostgreSQL dumped by
    pg_dump (on PATH, of the server's major version). Prints the audit head to keep elsewhere."""
    from .backup import BackupError, backup

    _require_current_schema()
    try:
        summary = backup(destination, echo=lambda message: click.echo(message, err=True))
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    manifest = summary.manifest
    counts = manifest["counts"]
    click.echo(f"Wrote the backup ({summary.size:,} bytes, SHA-256 {summary.sha256}) to {summary.destination}: "
               f"the {manifest['database']['kind']} database at revision {manifest['schema_revision']}, "
               f"{counts['documents']:,} documents ({counts['document_bytes']:,} bytes).")
    for key in manifest["documents_missing"]:
        click.echo(f"Warning: document {key} is named by the database but missing from the storage.", err=True)
    for key in manifest["documents_changed"]:
        click.echo(f"Warning: document {key} no longer matches the SHA-256 recorded at upload.", err=True)
    head = manifest["audit_head"]
    if head:
        click.echo(f"Audit head to keep: {head['id']}:{head['hash']} "
                   f"(check it later with `flask --app dps audit verify --head {head['id']}:{head['hash']}`)")
    if manifest["documents_missing"] or manifest["documents_changed"]:
        sys.exit(1)


@click.command("restore")
@click.option("--from", "source", required=True, metavar="PATH|s3://bucket/key", help="A backup archive.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def restore_command(source: str, yes: bool) -> None:
    """Restore a backup into an empty database (DPS_DATABASE_URL) and an empty storage.

    Every part is checked against the manifest's SHA-256 before anything is written; then the
    audit chain is verified against the head recorded at backup time. Exit 1 on any mismatch."""
    from .backup import BackupError, restore

    def confirm(question: str) -> None:
        if not yes:
            click.confirm(question, abort=True)

    try:
        result = restore(source, echo=lambda message: click.echo(message, err=True), confirm=confirm)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Restored the backup of {result.manifest['created_at']}: the {result.manifest['database']['kind']} "
               f"database and {result.documents:,} documents.")
    for note in result.notes:
        click.echo(f"Note: {note}")
    if not result.audit_ok:
        click.echo(result.audit_message, err=True)
        sys.exit(1)
    click.echo(result.audit_message)


def register(app: Flask) -> None:
    for group in (users_cli, demo_cli, clock_cli, outbox_cli, audit_cli, applications_cli):
        app.cli.add_command(group)
    app.cli.add_command(export_command)
    app.cli.add_command(setup_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
