"""Accounts, driven through the pages: sign in and out, throttling, passwords, sign-up, invitations."""
from __future__ import annotations

from sqlalchemy import select

from dps.extensions import db
from dps.models import Organisation, SignInAttempt, User
from dps.services import accounts
from tests.conftest import TEST_PASSWORD, link_in, outbox, set_clock, sign_in

WRONG = "Enter a correct email address and password"


def text(response) -> str:
    return response.get_data(as_text=True)


# Sign in ------------------------------------------------------------------------------------

def test_each_role_signs_in_to_its_own_home(app, factory):
    homes = {"supplier": "/supplier/", "buyer": "/buyer/", "dps_admin": "/team/", "auditor": "/team/"}
    for role, home in homes.items():
        org = factory.organisation() if role in ("dps_admin", "auditor") else None
        user = factory.user(role, organisation_id=org)
        browser = app.test_client()
        response = sign_in(browser, user["email"], user["password"])
        assert response.status_code == 302
        assert response.headers["Location"] == home
        assert browser.get(home).status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_message(client, factory):
    user = factory.user("buyer")
    wrong_password = sign_in(client, user["email"], "not the right password at all")
    unknown_email = sign_in(client, "nobody@example.org", TEST_PASSWORD)
    assert wrong_password.status_code == unknown_email.status_code == 400
    assert WRONG in text(wrong_password) and WRONG in text(unknown_email)
    # The error summary links to the form; neither page says which part was wrong.
    for response in (wrong_password, unknown_email):
        assert "not recognised" not in text(response) and "no account" not in text(response).lower()


def test_email_is_case_insensitive_at_sign_in(client, factory):
    user = factory.user("buyer", email="Jo.Bloggs@Oldham.example.org")
    assert user["email"] == "jo.bloggs@oldham.example.org"
    assert sign_in(client, "JO.BLOGGS@oldham.EXAMPLE.org").status_code == 302


def test_empty_sign_in_form_says_what_to_enter(client):
    response = client.submit("/sign-in", {"email": "", "password": ""})
    assert response.status_code == 400
    body = text(response)
    assert "Enter an email address" in body and "Enter your password" in body
    assert 'href="#email"' in body and 'href="#password"' in body  # the error summary links to the fields


def test_repeated_failures_slow_down_that_account(app, client, factory):
    user = factory.user("buyer")
    for _ in range(accounts.MAX_FAILURES_PER_ACCOUNT):
        assert WRONG in text(sign_in(client, user["email"], "a wrong password here"))
    # Past the limit even the right password is not checked, and the page says to wait.
    refused = sign_in(client, user["email"], user["password"])
    assert refused.status_code == 400
    assert "too many attempts" in text(refused)
    # Another account from the same address is unaffected.
    other = factory.user("buyer")
    assert sign_in(app.test_client(), other["email"], other["password"]).status_code == 302
    # 15 minutes later the account can be used again.
    set_clock(app, "2024-06-03T09:16")
    assert sign_in(app.test_client(), user["email"], user["password"]).status_code == 302


def test_the_limit_applies_to_unknown_emails_too(client):
    """Counting per typed address means the limit reveals nothing about which accounts exist."""
    for _ in range(accounts.MAX_FAILURES_PER_ACCOUNT):
        sign_in(client, "ghost@example.org", "whatever password")
    assert "too many attempts" in text(sign_in(client, "ghost@example.org", "whatever password"))


def test_repeated_failures_slow_down_that_address(app, factory):
    user = factory.user("buyer")
    attacker = app.test_client()
    for n in range(accounts.MAX_FAILURES_PER_ADDRESS):
        sign_in(attacker, f"victim{n}@example.org", "some wrong password")
    # Same address (the test client's 127.0.0.1), a real account with the right password: refused.
    assert "too many attempts" in text(sign_in(attacker, user["email"], user["password"]))
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(SignInAttempt)) == accounts.MAX_FAILURES_PER_ADDRESS + 1


def test_a_successful_sign_in_resets_the_account_count(app, client, factory):
    user = factory.user("buyer")
    for _ in range(accounts.MAX_FAILURES_PER_ACCOUNT - 1):
        sign_in(client, user["email"], "a wrong password here")
    assert sign_in(app.test_client(), user["email"], user["password"]).status_code == 302
    sign_in(client, user["email"], "a wrong password here")
    assert sign_in(app.test_client(), user["email"], user["password"]).status_code == 302


def test_next_parameter_only_goes_to_local_pages(client, factory):
    user = factory.user("buyer")
    data = {"email": user["email"], "password": user["password"]}
    evil = client.submit("/sign-in?next=//evil.example.com/x", data, page="/sign-in")
    assert evil.headers["Location"] == "/buyer/"
    local = factory.user("buyer")
    browser = client.application.test_client()
    response = browser.submit("/sign-in?next=/account", {"email": local["email"], "password": local["password"]}, page="/sign-in")
    assert response.headers["Location"] == "/account"


def test_deactivated_account_cannot_sign_in(app, client, factory):
    user = factory.user("buyer")
    with app.app_context():
        db.session.get(User, user["id"]).active = False
        db.session.commit()
    assert WRONG in text(sign_in(client, user["email"], user["password"]))


# Sessions -----------------------------------------------------------------------------------

def test_signing_out_ends_every_session_of_that_user(app, factory):
    user = factory.user("buyer")
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop, user["email"], user["password"])
    sign_in(phone, user["email"], user["password"])
    assert phone.get("/buyer/").status_code == 200
    response = laptop.submit("/sign-out", page="/buyer/")
    assert response.status_code == 302
    assert "signed out on every device" in text(laptop.get(response.headers["Location"]))
    # The phone's cookie is still there, but its session is over.
    after = phone.get("/buyer/")
    assert after.status_code == 302 and after.headers["Location"].startswith("/sign-in")


def test_sign_out_is_not_possible_by_get(signed_in):
    browser, _ = signed_in("buyer")
    assert browser.get("/sign-out").status_code == 405
    assert browser.get("/buyer/").status_code == 200


def test_forms_without_the_csrf_token_are_refused(signed_in):
    browser, _ = signed_in("buyer")
    response = browser.post("/sign-out")
    assert response.status_code == 400
    assert "This form has expired" in text(response)
    assert browser.get("/buyer/").status_code == 200


def test_deactivation_by_the_team_ends_the_users_sessions_at_once(app, factory, signed_in):
    buyer_browser, buyer = signed_in("buyer")
    team_browser, _ = signed_in("dps_admin", organisation_id=factory.organisation())
    response = team_browser.submit(f"/team/accounts/{buyer['id']}/deactivate", page="/team/accounts")
    assert response.status_code == 302
    assert "deactivated" in text(team_browser.get("/team/accounts"))
    assert buyer_browser.get("/buyer/").headers["Location"].startswith("/sign-in")
    # Reactivated, they can sign in again (their old session stays over).
    team_browser.submit(f"/team/accounts/{buyer['id']}/reactivate", page="/team/accounts")
    assert buyer_browser.get("/buyer/").status_code == 302
    assert sign_in(app.test_client(), buyer["email"], buyer["password"]).status_code == 302


def test_the_team_cannot_deactivate_itself(factory, signed_in):
    team_browser, me = signed_in("dps_admin", organisation_id=factory.organisation())
    response = team_browser.submit(f"/team/accounts/{me['id']}/deactivate", page="/team/accounts", follow_redirects=True)
    assert "You cannot deactivate your own account" in text(response)
    assert team_browser.get("/team/").status_code == 200


# Passwords ----------------------------------------------------------------------------------

def test_forgotten_password_by_emailed_one_time_link(app, client, factory):
    user = factory.user("supplier")
    response = client.submit("/forgotten-password", {"email": user["email"].upper()})
    assert response.status_code == 200 and "Check your email" in text(response)
    [message] = outbox(app)
    assert message.to_address == user["email"]
    link = link_in(message.body)
    assert link.startswith("/reset-password/")

    form = client.get(link)
    assert form.status_code == 200 and "Choose a new password" in text(form)
    weak = client.submit(link, {"password": "password1234"})
    assert weak.status_code == 400 and "too easy to guess" in text(weak)
    done = client.submit(link, {"password": "ginger parsnip lighthouse"})
    assert done.status_code == 302
    # The link works once; the old password no longer works; the new one does.
    assert client.get(link).status_code == 404
    assert "expired or has already been used" in text(client.get(link))
    assert WRONG in text(sign_in(app.test_client(), user["email"], user["password"]))
    assert sign_in(app.test_client(), user["email"], "ginger parsnip lighthouse").status_code == 302


def test_forgotten_password_for_an_unknown_email_says_the_same_and_sends_nothing(app, client):
    response = client.submit("/forgotten-password", {"email": "nobody@example.org"})
    assert response.status_code == 200 and "If nobody@example.org has an account" in text(response)
    assert outbox(app) == []


def test_reset_link_expires_after_two_hours(app, client, factory):
    user = factory.user("buyer")
    client.submit("/forgotten-password", {"email": user["email"]})
    link = link_in(outbox(app)[-1].body)
    set_clock(app, "2024-06-03T10:59")
    assert client.get(link).status_code == 200
    set_clock(app, "2024-06-03T11:00")
    assert client.get(link).status_code == 404


def test_a_reset_ends_existing_sessions(app, factory):
    user = factory.user("buyer")
    old = app.test_client()
    sign_in(old, user["email"], user["password"])
    stranger = app.test_client()
    stranger.submit("/forgotten-password", {"email": user["email"]})
    stranger.submit(link_in(outbox(app)[-1].body), {"password": "ginger parsnip lighthouse"})
    assert old.get("/buyer/").status_code == 302


def test_password_rules_length_and_guessability_only(app):
    with app.app_context():
        assert accounts.password_problem("short words") == "Password must be 12 characters or more"
        assert "too easy to guess" in accounts.password_problem("password1234")
        assert "too easy to guess" in accounts.password_problem("qwertyuiop12")
        # No composition rules: lower-case words with spaces are fine; 12 characters is the boundary.
        assert accounts.password_problem("copper kettle harbour") is None
        assert accounts.password_problem("zq8#Lm2!vR7p") is None
        assert accounts.password_problem("zq8#Lm2!vR7") == "Password must be 12 characters or more"
        # Guessable from the person's own details.
        assert accounts.password_problem("oldhamcouncil", organisation="Oldham Council", email="jo@oldham.gov.uk") is not None


def test_passwords_use_owasp_parameters(database_url):
    """The suite hashes cheaply for speed; the application's own default is OWASP's argon2id."""
    from tests.conftest import make_app

    production_like = make_app(database_url, ARGON2_PARAMETERS=None)
    with production_like.app_context():
        stored = accounts.hash_password(TEST_PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert TEST_PASSWORD not in stored


def test_a_hash_with_old_parameters_is_upgraded_at_sign_in(database_url, factory):
    from tests.conftest import make_app

    user = factory.user("buyer")  # hashed with the suite's cheap parameters
    production_like = make_app(database_url, ARGON2_PARAMETERS=None)
    assert sign_in(production_like.test_client(), user["email"], user["password"]).status_code == 302
    with production_like.app_context():
        assert db.session.get(User, user["id"]).password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_changing_password_keeps_this_session_and_ends_others(app, factory):
    user = factory.user("buyer")
    here, elsewhere = app.test_client(), app.test_client()
    sign_in(here, user["email"], user["password"])
    sign_in(elsewhere, user["email"], user["password"])
    wrong = here.submit("/account", {"current_password": "not my password", "password": "ginger parsnip lighthouse"})
    assert wrong.status_code == 400 and "Your current password is not correct" in text(wrong)
    ok = here.submit("/account", {"current_password": user["password"], "password": "ginger parsnip lighthouse"})
    assert ok.status_code == 302
    assert here.get("/buyer/").status_code == 200
    assert elsewhere.get("/buyer/").status_code == 302


# Supplier sign-up ---------------------------------------------------------------------------

def sign_up(client, email="amara@brightwater.example.org", password="amber falcon quartz"):
    return client.submit("/supplier/sign-up", {"organisation_name": "Brightwater Research Ltd", "name": "Amara Okafor",
                                               "email": email, "password": password})


def test_supplier_signs_up_confirms_email_and_signs_in(app, client):
    response = sign_up(client)
    assert response.status_code == 200 and "Check your email" in text(response)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "amara@brightwater.example.org"))
        assert user.role == "supplier" and user.organisation.kind == "supplier"
        assert user.organisation.name == "Brightwater Research Ltd"
        assert user.email_confirmed_at is None

    # Before confirming, the right password gets a message and a way to have the link sent again.
    early = sign_in(client, "amara@brightwater.example.org", "amber falcon quartz")
    assert early.status_code == 400 and "Confirm your email address" in text(early)
    assert "Send the confirmation link again" in text(early)

    link = link_in(outbox(app)[-1].body)
    assert link.startswith("/confirm-email/")
    page = client.get(link)  # the link itself changes nothing: confirming is a button (POST)
    assert page.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(User.email_confirmed_at).where(User.email == "amara@brightwater.example.org")) is None
    assert client.submit(link).status_code == 302
    assert sign_in(client, "amara@brightwater.example.org", "amber falcon quartz").headers["Location"] == "/supplier/"


def test_resending_the_confirmation_link(app, client):
    sign_up(client)
    before = len(outbox(app))
    response = client.submit("/resend-confirmation", {"email": "amara@brightwater.example.org"}, page="/sign-in")
    assert "Check your email" in text(response)
    messages = outbox(app)
    assert len(messages) == before + 1
    # Only the newest link works.
    assert client.get(link_in(messages[-2].body)).status_code == 404
    assert client.get(link_in(messages[-1].body)).status_code == 200


def test_sign_up_with_an_email_already_registered_reveals_nothing(app, client, factory):
    existing = factory.user("buyer", email="pat@plymouth.example.org")
    response = sign_up(client, email="PAT@plymouth.example.org")
    # The page is the same as for a new address...
    assert response.status_code == 200 and "Check your email" in text(response)
    # ...no second account or organisation was made, and the holder was told by email.
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(User).where(User.email == "pat@plymouth.example.org")) == 1
        assert db.session.scalar(select(db.func.count()).select_from(Organisation).where(Organisation.name == "Brightwater Research Ltd")) == 0
    [message] = outbox(app)
    assert message.to_address == existing["email"] and "already have an account" in message.body


def test_sign_up_errors_are_shown_by_their_fields_and_input_is_kept(client):
    response = client.submit("/supplier/sign-up", {"organisation_name": "", "name": "Amara Okafor",
                                                   "email": "not-an-email", "password": "short"})
    assert response.status_code == 400
    body = text(response)
    assert "Enter the name of your organisation" in body
    assert "Enter an email address in the correct format" in body
    assert 'value="Amara Okafor"' in body  # what was typed is not lost
    weak = sign_up(client, password="password1234")
    assert weak.status_code == 400 and "too easy to guess" in text(weak)


def test_email_uniqueness_is_enforced_by_the_database_too(app, factory):
    import pytest
    from sqlalchemy.exc import IntegrityError

    factory.user("buyer", email="sam@example.org")
    with app.app_context():
        org = db.session.scalar(select(Organisation))
        db.session.add(User(email="SAM@example.org", name="x", role="buyer", organisation=org,
                            created_at=db.session.scalar(select(User.created_at))))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


# Invitations --------------------------------------------------------------------------------

def test_a_buyer_invites_a_colleague_who_joins_the_same_organisation(app, signed_in):
    browser, inviter = signed_in("buyer")
    response = browser.submit("/buyer/colleagues", {"name": "Robin Shah", "email": "Robin.Shah@oldham.example.org"})
    assert response.status_code == 302
    assert "Robin Shah" in text(browser.get("/buyer/colleagues"))
    link = link_in(outbox(app)[-1].body)
    assert link.startswith("/invitation/")

    newcomer = app.test_client()
    assert newcomer.submit(link, {"password": "lemon tractor velvet"}).status_code == 302
    assert sign_in(newcomer, "robin.shah@oldham.example.org", "lemon tractor velvet").headers["Location"] == "/buyer/"
    with app.app_context():
        robin = db.session.scalar(select(User).where(User.email == "robin.shah@oldham.example.org"))
        assert robin.role == "buyer" and robin.organisation_id == inviter["organisation_id"]
    assert newcomer.get(link).status_code == 404  # used once


def test_a_supplier_invites_a_colleague(app, signed_in):
    browser, inviter = signed_in("supplier")
    assert browser.submit("/supplier/colleagues", {"name": "Kit Mensah", "email": "kit@example.org"}).status_code == 302
    with app.app_context():
        kit = db.session.scalar(select(User).where(User.email == "kit@example.org"))
        assert kit.role == "supplier" and kit.organisation_id == inviter["organisation_id"]
        assert kit.password_hash is None


def test_inviting_an_existing_address_reveals_nothing_and_tells_its_holder(app, signed_in, factory):
    holder = factory.user("buyer", email="taken@example.org")
    browser, _ = signed_in("supplier")
    response = browser.submit("/supplier/colleagues", {"name": "Someone", "email": "Taken@example.org"})
    # The inviter sees what any invitation shows...
    assert response.status_code == 302
    assert "We have emailed taken@example.org" in text(browser.get("/supplier/colleagues"))
    # ...no account was made or moved, and the holder was told.
    with app.app_context():
        assert db.session.scalar(select(User.organisation_id).where(User.email == "taken@example.org")) == holder["organisation_id"]
    [message] = outbox(app)
    assert message.to_address == "taken@example.org" and "already have an account" in message.body


def test_team_creates_buyer_accounts_only_for_eligible_members(app, factory, signed_in):
    team, _ = signed_in("dps_admin", organisation_id=factory.organisation())
    full = factory.organisation("council", "full", name="Plymouth City Council")
    parish = factory.organisation("town_parish_community_council", "associate", name="Winsford Town Council")
    network = factory.organisation("network", None, name="Co-operative Councils' Innovation Network")
    affiliate = factory.organisation("organisation", "affiliate", name="Mutual Ventures", nation=None)
    opposition = factory.organisation("opposition_group", "associate", name="York Labour Group")

    page = text(team.get("/team/accounts/new-buyer"))
    for name in ("Plymouth City Council", "Winsford Town Council", "Co-operative Councils"):
        assert name in page
    assert "Mutual Ventures" not in page and "York Labour Group" not in page

    response = team.submit("/team/accounts/new-buyer", {"organisation": full, "name": "Alex Tremayne",
                                                         "email": "alex@plymouth.example.org"})
    assert response.status_code == 302
    assert "Alex Tremayne" in text(team.get("/team/accounts?role=buyer"))
    assert link_in(outbox(app)[-1].body).startswith("/invitation/")

    refused = team.submit("/team/accounts/new-buyer", {"organisation": affiliate, "name": "X", "email": "x@example.org"},
                          page="/team/accounts/new-buyer")
    assert refused.status_code == 400 and "Not a valid choice" in text(refused)
    with app.app_context():
        for org_id, expected in ((affiliate, "Affiliate Member"), (opposition, "not a contracting authority"),
                                 (parish, None), (network, None)):
            reason = accounts.buyer_ineligibility(db.session.get(Organisation, org_id))
            assert (reason is None) if expected is None else (expected in reason)


def _from(app, address: str):
    """A browser whose requests come from ``address`` (only the WSGI environ; no traffic is sent)."""
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = address
    return browser


def test_a_stranger_elsewhere_cannot_lock_the_real_person_out(app, factory):
    user = factory.user("buyer")
    attacker = _from(app, "192.0.2.66")
    for _ in range(accounts.MAX_FAILURES_PER_ACCOUNT + 2):
        sign_in(attacker, user["email"], "a wrong password here")
    assert "too many attempts" in text(sign_in(attacker, user["email"], user["password"]))
    assert sign_in(_from(app, "198.51.100.10"), user["email"], user["password"]).status_code == 302


def test_guessing_one_account_from_many_addresses_is_slowed_too(app, factory):
    user = factory.user("buyer")
    for n in range(accounts.MAX_FAILURES_PER_ACCOUNT_ANYWHERE):
        sign_in(_from(app, f"192.0.2.{n % 200 + 1}"), user["email"], "a wrong password here")
    assert "too many attempts" in text(sign_in(_from(app, "198.51.100.10"), user["email"], user["password"]))


def test_a_new_password_lifts_the_lock(app, client, factory):
    user = factory.user("buyer")
    for _ in range(accounts.MAX_FAILURES_PER_ACCOUNT):
        sign_in(client, user["email"], "a wrong password here")
    assert "too many attempts" in text(sign_in(client, user["email"], user["password"]))
    client.submit("/forgotten-password", {"email": user["email"]})
    client.submit(link_in(outbox(app)[-1].body), {"password": "ginger parsnip lighthouse"})
    assert sign_in(client, user["email"], "ginger parsnip lighthouse").status_code == 302


def test_signing_in_to_ones_own_account_does_not_reset_the_address_limit(app, factory):
    mine = factory.user("supplier")
    sprayer = _from(app, "192.0.2.99")
    for n in range(accounts.MAX_FAILURES_PER_ADDRESS - 1):
        sign_in(sprayer, f"target{n}@example.org", "Summer2024!")
    assert sign_in(sprayer, mine["email"], mine["password"]).status_code == 302
    sprayer = _from(app, "192.0.2.99")
    sign_in(sprayer, "one-more@example.org", "Summer2024!")
    assert "too many attempts" in text(sign_in(sprayer, "another@example.org", "Summer2024!"))


def test_sessions_end_after_12_hours_or_2_idle_hours(signed_in, monkeypatch):
    from dps import auth

    now = [1_900_000_000.0]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    busy, _ = signed_in("buyer")
    idle, _ = signed_in("buyer")
    # Busy all day, one request an hour: the session lives...
    for _ in range(11):
        now[0] += 3600
        assert busy.get("/buyer/").status_code == 200
    now[0] += 3600 + 1  # ...until 12 hours after signing in.
    expired = busy.get("/buyer/")
    assert expired.status_code == 302 and expired.headers["Location"].startswith("/sign-in")
    assert "away for a while" in busy.get(expired.headers["Location"]).get_data(as_text=True)
    # The idle one has not been seen for 12 hours: long past the 2-hour idle limit.
    assert idle.get("/buyer/").status_code == 302


def test_two_idle_hours_end_a_session_but_less_does_not(signed_in, monkeypatch):
    from dps import auth

    now = [1_900_000_000.0]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    browser, _ = signed_in("buyer")
    now[0] += auth.SESSION_IDLE_LIMIT
    assert browser.get("/buyer/").status_code == 200  # exactly 2 hours: still signed in
    now[0] += auth.SESSION_IDLE_LIMIT + 1
    assert browser.get("/buyer/").status_code == 302


def test_a_one_time_link_used_by_a_racing_request_is_refused(app, client, factory):
    import pytest
    from sqlalchemy import text as sql

    from dps.services import ServiceError

    user = factory.user("buyer")
    client.submit("/forgotten-password", {"email": user["email"]})
    raw = link_in(outbox(app)[-1].body).rsplit("/", 1)[1]
    with app.app_context():
        token = accounts.find_token(raw, "reset_password")  # this request sees it unused...
        # ...while another request uses it first (same row, written behind this session's back).
        db.session.execute(sql("UPDATE user_tokens SET used_at = created_at WHERE id = :id"), {"id": token.id})
        with pytest.raises(ServiceError, match="already been used"):
            accounts.reset_password(raw, "ginger parsnip lighthouse")
        db.session.rollback()
