"""The command line: `flask --app dps <group> <command>`."""
from __future__ import annotations

import re

import pytest
from flask.cli import cli as flask_cli
from sqlalchemy import func, select

from dps import clock, mail
from dps.extensions import db
from dps.models import AuditEvent, OutboxMessage, User
from tests.conftest import DEFAULT_NOW, TEST_PASSWORD, make_app, set_clock, sign_in


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def users_with_email(app, email: str) -> list[User]:
    with app.app_context():
        users = db.session.scalars(select(User).where(func.lower(User.email) == email.lower())).all()
        db.session.expunge_all()
        return users


def create_args(*, role: str, email: str, organisation: str, password: str = TEST_PASSWORD, name: str = "Pat Team"):
    return ("users", "create", "--role", role, "--email", email, "--name", name,
            "--organisation", organisation, "--password", password)


@pytest.fixture
def oldham(factory) -> str:
    name = "Oldham Council"
    factory.organisation(name=name)
    return name


# users create ---------------------------------------------------------------------------------

def test_users_create_makes_an_account_stored_in_lower_case(app, client, oldham):
    result = run(app, *create_args(role="dps_admin", email="Team@X.example.org", organisation=oldham))
    assert result.exit_code == 0, result.output
    assert "team@x.example.org" in result.output

    [user] = users_with_email(app, "team@x.example.org")
    assert user.email == "team@x.example.org", f"email stored as {user.email!r}"
    assert user.role == "dps_admin" and user.name == "Pat Team" and user.active
    assert user.email_confirmed_at is not None

    # The account works: its holder can sign in with the address in any case.
    response = sign_in(client, "TEAM@x.Example.org", TEST_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"].endswith("/team/")

    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.created"))
        assert event is not None and event.object_id == str(user.id)
        assert event.actor_label == "command line"


def test_users_create_refuses_an_email_already_used_in_any_case(app, oldham):
    assert run(app, *create_args(role="dps_admin", email="Team@X.example.org", organisation=oldham)).exit_code == 0
    result = run(app, *create_args(role="auditor", email="TEAM@x.EXAMPLE.ORG", organisation=oldham, name="Other"))
    assert result.exit_code != 0
    assert "There is already an account with this email address" in result.output
    assert len(users_with_email(app, "team@x.example.org")) == 1


def test_users_create_refuses_a_weak_password(app, oldham):
    result = run(app, *create_args(role="dps_admin", email="team@x.example.org", organisation=oldham,
                                   password="password1234"))
    assert result.exit_code != 0
    assert "too easy to guess" in result.output, result.output
    assert users_with_email(app, "team@x.example.org") == []


def test_users_create_refuses_a_short_password(app, oldham):
    result = run(app, *create_args(role="dps_admin", email="team@x.example.org", organisation=oldham,
                                   password="k7#Qz!p2Wm9"))  # 11 characters
    assert result.exit_code != 0
    assert "12 characters or more" in result.output, result.output
    assert users_with_email(app, "team@x.example.org") == []


def test_users_create_refuses_a_buyer_of_an_affiliate(app, factory):
    factory.organisation(kind="organisation", membership="affiliate", name="Friendly Co-operative")
    result = run(app, *create_args(role="buyer", email="buyer@friendly.example.org", organisation="Friendly Co-operative"))
    assert result.exit_code != 0
    assert "Affiliate" in result.output and "only Full and Associate Members may buy" in result.output, result.output
    assert users_with_email(app, "buyer@friendly.example.org") == []


def test_users_create_accepts_a_buyer_of_a_full_member_council(app, oldham):
    result = run(app, *create_args(role="buyer", email="buyer@oldham.example.org", organisation=oldham))
    assert result.exit_code == 0, result.output
    assert [u.role for u in users_with_email(app, "buyer@oldham.example.org")] == ["buyer"]


def test_users_create_names_an_unknown_organisation(app):
    result = run(app, *create_args(role="dps_admin", email="team@x.example.org", organisation="Nowhere Council"))
    assert result.exit_code != 0
    assert "No organisation is called 'Nowhere Council'" in result.output


# users deactivate -----------------------------------------------------------------------------

def test_users_deactivate_ends_the_users_sessions(app, signed_in):
    browser, buyer = signed_in("buyer")
    assert browser.get("/buyer/").status_code == 200

    result = run(app, "users", "deactivate", buyer["email"].upper())
    assert result.exit_code == 0, result.output
    assert buyer["email"] in result.output

    response = browser.get("/buyer/")
    assert response.status_code == 302, "a deactivated user's session still works"
    assert response.headers["Location"].startswith("/sign-in")

    response = sign_in(app.test_client(), buyer["email"])
    assert response.status_code != 302, "a deactivated user could sign in again"
    assert "Enter a correct email address and password" in response.get_data(as_text=True)
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.deactivated"))
        assert event is not None and event.object_id == str(buyer["id"])
        assert event.data == {"before": {"active": True}, "after": {"active": False}}


def test_users_deactivate_refuses_an_unknown_or_already_deactivated_account(app, factory):
    buyer = factory.user("buyer")
    result = run(app, "users", "deactivate", "nobody@example.org")
    assert result.exit_code != 0 and "No account has the email address nobody@example.org" in result.output
    assert run(app, "users", "deactivate", buyer["email"]).exit_code == 0
    result = run(app, "users", "deactivate", buyer["email"])
    assert result.exit_code != 0 and "already deactivated" in result.output


# clock ----------------------------------------------------------------------------------------

def test_clock_show_prints_the_simulated_time(app):
    result = run(app, "clock", "show")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "3 June 2024 at 9:00am (Europe/London, simulated clock)"


def test_clock_show_on_real_time(database_url):
    real = make_app(database_url, DPS_CLOCK=None)
    try:
        result = run(real, "clock", "show")
    finally:
        with real.app_context():
            db.engine.dispose()
    assert result.exit_code == 0, result.output
    assert "(Europe/London, real clock)" in result.output


def test_clock_move_to_moves_the_clock_on(app, client):
    result = run(app, "clock", "move-to", "2024-07-01T09:00")
    assert result.exit_code == 0, result.output
    assert "The simulated clock now reads 1 July 2024 at 9:00am." in result.output
    assert run(app, "clock", "show").output.startswith("1 July 2024 at 9:00am")
    assert "It is 1 July 2024 at 9:00am here" in client.get("/").get_data(as_text=True)
    with app.app_context():
        assert clock.now() == clock.parse_london("2024-07-01T09:00")
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "clock.moved"))
        assert event is not None and event.actor_label == "command line"


@pytest.mark.parametrize("moment", ["2024-06-01T09:00", DEFAULT_NOW])
def test_clock_move_to_refuses_to_go_back(app, moment):
    result = run(app, "clock", "move-to", moment)
    assert result.exit_code != 0
    assert "must be later than the simulated time now" in result.output, result.output
    with app.app_context():
        assert clock.now() == clock.parse_london(DEFAULT_NOW)
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "clock.moved")) is None


def test_clock_move_to_refuses_garbage(app):
    result = run(app, "clock", "move-to", "next-week")
    assert result.exit_code != 0
    assert "Enter a date and time like 2024-04-15 09:00" in result.output


def test_clock_move_to_refuses_on_real_time(database_url):
    real = make_app(database_url, DPS_CLOCK=None)
    try:
        result = run(real, "clock", "move-to", "2030-01-01T09:00")
    finally:
        with real.app_context():
            db.engine.dispose()
    assert result.exit_code != 0
    assert "real time" in result.output


# outbox ---------------------------------------------------------------------------------------

def test_outbox_list_lists_queued_messages(app):
    with app.app_context():
        mail.queue("first@example.org", "First subject", "One\n")
        mail.queue("second@example.org", "Second subject", "Two\n")
        db.session.commit()
    result = run(app, "outbox", "list")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 3, result.output
    assert "to second@example.org: Second subject [waiting]" in lines[0], "newest first"
    assert "to first@example.org: First subject [waiting]" in lines[1]
    assert "3 June 2024 at 9:00am" in lines[0]
    second_id = re.match(r"#(\d+) ", lines[0]).group(1)
    assert lines[2] == ("To see one in full, with its links: flask --app dps outbox show ID "
                        f"(e.g. flask --app dps outbox show {second_id})")


def test_outbox_list_of_an_empty_outbox_says_so(app):
    result = run(app, "outbox", "list")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "The outbox is empty."


def test_outbox_list_pending_leaves_out_sent_messages(app):
    set_clock(app, DEFAULT_NOW)
    with app.app_context():
        sent = mail.queue("sent@example.org", "Already sent", "One\n")
        mail.queue("waiting@example.org", "Still waiting", "Two\n")
        sent.sent_at = clock.now()
        db.session.commit()
    everything = run(app, "outbox", "list").output
    assert "Already sent [sent 3 June 2024 at 9:00am]" in everything
    pending = run(app, "outbox", "list", "--pending").output
    assert "Still waiting [waiting]" in pending
    assert "sent@example.org" not in pending


def test_outbox_show_prints_the_whole_email_with_its_link(app, factory):
    # A real email, as a person asking for a new password gets it, on a site served at port 5150.
    app.config["DPS_BASE_URL"] = "http://127.0.0.1:5150"
    factory.user("buyer", email="pat.buyer@example.org")
    browser = app.test_client()
    assert browser.submit("/forgotten-password", {"email": "pat.buyer@example.org"}).status_code == 200
    with app.app_context():
        message = db.session.scalars(select(OutboxMessage)).one()
        message_id, subject, body = message.id, message.subject, message.body

    result = run(app, "outbox", "show", str(message_id))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:5] == [
        f"Email #{message_id}",
        "To:      pat.buyer@example.org",
        f"Subject: {subject}",
        "Created: 3 June 2024 at 9:00am",
        "Sent:    not yet (DPS_SMTP_URL is not set: it stays in the outbox)",
    ]
    assert "Error:" not in result.output
    assert body.rstrip("\n") in result.output, "the whole body"
    link = re.search(r"http://127\.0\.0\.1:5150(/reset-password/\S+)", result.output)
    assert link, "the emailed link uses DPS_BASE_URL: " + result.output
    assert "http://dps.test" not in result.output
    assert browser.get(link.group(1)).status_code == 200, "the link shown opens the page"


def test_outbox_show_a_sent_email_and_one_that_failed(app):
    with app.app_context():
        sent = mail.queue("sent@example.org", "Sent one", "Hello\nSee http://dps.test/sign-in\n")
        sent.sent_at = clock.now()
        sent.attempts = 1
        failed = mail.queue("nobody@example.org", "Refused one", "Body\n")
        failed.attempts = 2
        failed.last_error = "(550, b'No such mailbox')"
        given_up = mail.queue("gone@example.org", "Given up", "Body\n")
        given_up.attempts = mail.MAX_ATTEMPTS
        given_up.last_error = "could not connect: timed out"
        db.session.commit()
        ids = sent.id, failed.id, given_up.id

    shown = run(app, "outbox", "show", str(ids[0]))
    assert shown.exit_code == 0, shown.output
    assert "Sent:    3 June 2024 at 9:00am (one-time links are removed once sent)" in shown.output
    assert shown.output.endswith("\n\nHello\nSee http://dps.test/sign-in\n")

    shown = run(app, "outbox", "show", str(ids[1]))
    assert "Sent:    not yet, 2 tries so far\nError:   (550, b'No such mailbox')\n" in shown.output

    shown = run(app, "outbox", "show", str(ids[2]))
    assert f"Sent:    no, given up after {mail.MAX_ATTEMPTS} tries\nError:   could not connect: timed out\n" in shown.output


def test_outbox_show_an_unknown_id_says_so_and_fails(app):
    result = run(app, "outbox", "show", "999")
    assert result.exit_code == 1
    assert "No email in the outbox has the id 999 (`flask --app dps outbox list` shows the ids)" in result.output


# demo load ------------------------------------------------------------------------------------

def test_demo_load_prints_where_to_sign_in_at_the_configured_base_url(app):
    app.config["DPS_BASE_URL"] = "http://127.0.0.1:5150"
    result = run(app, "demo", "load", "--password", TEST_PASSWORD)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Demo data loaded. Sign in at http://127.0.0.1:5150/sign-in with:\n")
    assert ":5000" not in result.output

    again = run(app, "demo", "load", "--if-empty")
    assert again.exit_code == 0, again.output
    assert again.output == ("Demo data: not loaded, the database already has data (`make reset-demo` starts again).\n"
                            "Sign in at http://127.0.0.1:5150/sign-in\n")


# flask routes ---------------------------------------------------------------------------------

def test_routes_lists_the_supplier_and_buyer_endpoints(app):
    # `routes` is one of flask's own commands (FlaskGroup), run here against this app.
    result = app.test_cli_runner().invoke(cli=flask_cli, args=["routes"])
    assert result.exit_code == 0, result.output
    endpoints = set(re.findall(r"^(\S+)", result.output, re.M))
    assert any(e.startswith("suppliers.") for e in endpoints), result.output
    assert any(e.startswith("buyers.") for e in endpoints), result.output
    assert {"suppliers.sign_up", "buyers.dashboard", "team.clock"} <= endpoints
