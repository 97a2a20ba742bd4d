"""Two-factor sign-in (TOTP), driven through the pages: enrolment, codes and recovery codes at
sign-in, the shared sign-in limits, replays, the requirement for the DPS team and auditors, and
resets. Codes are checked against a fixed real time (two_factor.real_time), never the wall clock."""
from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select

from dps.config import load
from dps.extensions import db
from dps.models import AuditEvent, RecoveryCode, User
from dps.services import accounts, two_factor
from tests.conftest import set_clock, sign_in

T = 1_717_401_600  # a moment on a 30-second boundary: step T // 30
STEP = 30
PAGE = "/account/two-factor"


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture(autouse=True)
def fixed_time(monkeypatch):
    """Real time, as the codes see it, held at T unless a test moves it."""
    moment = {"now": T}
    monkeypatch.setattr(two_factor, "real_time", lambda: moment["now"])
    return moment


def code_at(secret: str, moment: int) -> str:
    return pyotp.TOTP(secret).at(moment)


def wrong_code(secret: str, moment: int = T) -> str:
    valid = {code_at(secret, moment + offset * STEP) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def start_setup(browser) -> str:
    """Press "Set up", then read the key the page shows."""
    response = browser.submit(f"{PAGE}/start", page=PAGE)
    assert response.status_code == 302
    html = text(browser.get(PAGE))
    return re.search(r"<code>([A-Z2-7 ]{20,})</code>", html).group(1).replace(" ", "")


def enrol(browser, moment: int = T) -> tuple[str, list[str]]:
    secret = start_setup(browser)
    response = browser.submit(f"{PAGE}/confirm", {"code": code_at(secret, moment)}, page=PAGE)
    assert response.status_code == 200, text(response)
    codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", text(response))
    assert len(codes) == 10
    return secret, codes


def password_step(browser, user: dict):
    response = sign_in(browser, user["email"], user["password"])
    assert response.status_code == 302 and response.headers["Location"] == "/sign-in/code"
    return response


def submit_code(browser, code: str):
    return browser.submit("/sign-in/code", {"code": code})


def audit_actions(app, user_id: int) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "user",
                                                           AuditEvent.object_id == str(user_id))
                                  .order_by(AuditEvent.id)).all()


# Enrolment ----------------------------------------------------------------------------------

def test_enrolment_needs_a_correct_code_and_shows_recovery_codes_once(app, signed_in):
    browser, user = signed_in("buyer")
    account = text(browser.get("/account"))
    assert "Two-factor sign-in is off" in account and "Set up two-factor sign-in" in account
    # The page only offers to start; GET makes no secret.
    first = text(browser.get(PAGE))
    assert "Set up two-factor sign-in" in first and "<svg" not in first
    secret = start_setup(browser)
    page = text(browser.get(PAGE))
    # The QR code is inline SVG (the CSP allows no outside image, and it needs no data: URI).
    assert "<svg" in page and "data:" not in page and "otpauth" not in page
    assert len(secret) == 32
    # A wrong code is refused by the field, and nothing is turned on.
    refused = browser.submit(f"{PAGE}/confirm", {"code": wrong_code(secret)}, page=PAGE)
    assert refused.status_code == 400
    assert 'class="govuk-error-message"' in text(refused)
    assert two_factor.WRONG_SETUP_CODE in text(refused)
    empty = browser.submit(f"{PAGE}/confirm", {"code": ""}, page=PAGE)
    assert empty.status_code == 400 and "Enter the code from your authenticator app" in text(empty)
    with app.app_context():
        assert not db.session.get(User, user["id"]).two_factor_enabled
    # The key is the same until enrolment ends (each GET shows it, none makes a new one).
    assert start_secret_shown(browser) == secret
    accepted = browser.submit(f"{PAGE}/confirm", {"code": code_at(secret, T)}, page=PAGE)
    assert accepted.status_code == 200
    codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", text(accepted))
    assert len(set(codes)) == 10
    # Stored hashed (argon2) and the secret encrypted, never in clear.
    with app.app_context():
        stored = db.session.get(User, user["id"])
        assert stored.two_factor_enabled and stored.totp_last_step == T // STEP
        assert secret not in stored.totp_secret and two_factor.decrypt_secret(stored.totp_secret) == secret
        hashes = db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user["id"])).all()
        assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
        assert not any(code.replace("-", "") in h for h in hashes for code in codes)
    # Never shown again.
    for url in (PAGE, "/account"):
        later = text(browser.get(url))
        assert not any(code in later for code in codes)
    assert "10 of 10" in text(browser.get(PAGE))
    assert "user.two_factor_enabled" in [e.action for e in audit_actions(app, user["id"])]


def start_secret_shown(browser) -> str:
    html = text(browser.get(PAGE))
    return re.search(r"<code>([A-Z2-7 ]{20,})</code>", html).group(1).replace(" ", "")


def test_the_secret_does_not_decrypt_with_another_key(app):
    with app.app_context():
        stored = two_factor.encrypt_secret("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        assert two_factor.decrypt_secret(stored) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
        assert two_factor.decrypt_secret(stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")) is None
        app.config["SECRET_KEY"] = "another-key"
        assert two_factor.decrypt_secret(stored) is None


# Signing in ---------------------------------------------------------------------------------

def test_sign_in_asks_for_a_code_after_the_password(app, signed_in, fixed_time):
    browser, user = signed_in("buyer")
    secret, _ = enrol(browser)
    other = app.test_client()
    password_step(other, user)
    # Half signed in is not signed in.
    assert other.get("/buyer/").headers["Location"].startswith("/sign-in")
    assert other.get("/account").headers["Location"].startswith("/sign-in")
    refused = submit_code(other, wrong_code(secret, T + STEP))
    assert refused.status_code == 400 and two_factor.WRONG_CODE in text(refused)
    fixed_time["now"] = T + STEP
    done = submit_code(other, code_at(secret, T + STEP))
    assert done.status_code == 302 and done.headers["Location"] == "/buyer/"
    assert other.get("/buyer/").status_code == 200
    signed = [e for e in audit_actions(app, user["id"]) if e.action == "user.signed_in"]
    assert signed[-1].data == {"second_factor": "code"}


def test_a_code_cannot_be_used_twice(app, signed_in, fixed_time):
    browser, user = signed_in("buyer")
    secret, _ = enrol(browser)
    # The code that completed enrolment is used up.
    other = app.test_client()
    password_step(other, user)
    assert submit_code(other, code_at(secret, T)).status_code == 400
    fixed_time["now"] = T + STEP
    assert submit_code(other, code_at(secret, T + STEP)).status_code == 302
    # The same code again, still inside its window, in another browser: refused.
    third = app.test_client()
    password_step(third, user)
    replay = submit_code(third, code_at(secret, T + STEP))
    assert replay.status_code == 400 and two_factor.WRONG_CODE in text(replay)
    # The next step's code works.
    fixed_time["now"] = T + 2 * STEP
    assert submit_code(third, code_at(secret, T + 2 * STEP)).status_code == 302


def test_a_recovery_code_works_once(app, signed_in):
    browser, user = signed_in("supplier")
    _, codes = enrol(browser)
    other = app.test_client()
    password_step(other, user)
    done = submit_code(other, codes[3].upper().replace("-", " "))  # as people type them
    assert done.status_code == 302
    assert "You used a recovery code" in text(other.get(done.headers["Location"]))
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(RecoveryCode).where(
            RecoveryCode.user_id == user["id"], RecoveryCode.used_at.is_(None))) == 9
    again = app.test_client()
    password_step(again, user)
    refused = submit_code(again, codes[3])
    assert refused.status_code == 400 and two_factor.WRONG_CODE in text(refused)
    assert submit_code(again, codes[4]).status_code == 302
    signed = [e for e in audit_actions(app, user["id"]) if e.action == "user.signed_in"]
    assert signed[-1].data == {"second_factor": "recovery_code", "recovery_codes_left": 8}


def test_wrong_codes_count_against_the_sign_in_limit(app, signed_in):
    browser, user = signed_in("buyer")
    secret, _ = enrol(browser)
    set_clock(app, "2024-06-03T09:01")  # after the sign-in that set it up (a success restarts the count)
    attacker = app.test_client()
    password_step(attacker, user)
    for _ in range(accounts.MAX_FAILURES_PER_ACCOUNT - 1):
        assert submit_code(attacker, wrong_code(secret)).status_code == 400
    # Typing the (known) password again does not start the count again.
    password_step(attacker, user)
    assert submit_code(attacker, wrong_code(secret)).status_code == 400
    # Past the limit even the right code is refused, and so is the password.
    blocked = submit_code(attacker, code_at(secret, T + STEP))
    assert blocked.status_code == 400 and "too many attempts" in text(blocked)
    assert "too many attempts" in text(sign_in(app.test_client(), user["email"], user["password"]))
    with app.app_context():
        assert db.session.get(User, user["id"]).totp_last_step == T // STEP  # the right code was not used


def test_the_code_step_expires_and_needs_the_password_first(app, signed_in, monkeypatch):
    browser, user = signed_in("buyer")
    secret, _ = enrol(browser)
    stranger = app.test_client()
    assert stranger.get("/sign-in/code").headers["Location"] == "/sign-in"
    password_step(stranger, user)
    token = stranger.csrf_token("/sign-in/code")
    monkeypatch.setattr("dps.views.public.PENDING_LIFETIME", -1)  # the few minutes have passed
    late = stranger.post("/sign-in/code", data={"code": code_at(secret, T + STEP), "csrf_token": token})
    assert late.status_code == 302 and late.headers["Location"] == "/sign-in"
    assert stranger.get("/buyer/").status_code == 302


# Required for the DPS team and auditors -----------------------------------------------------

@pytest.mark.parametrize("role", ["dps_admin", "auditor"])
def test_the_team_and_auditors_must_enrol_before_anything_else(app, factory, signed_in, role):
    app.config["DPS_REQUIRE_MFA"] = True
    browser, user = signed_in(role, organisation_id=factory.organisation())
    assert browser.get("/team/").headers["Location"] == PAGE
    assert browser.get("/account").headers["Location"] == PAGE
    assert browser.submit("/team/accounts/1/deactivate", page=PAGE).headers["Location"] == PAGE
    page = text(browser.get(PAGE))
    assert "must use two-factor sign-in" in page and "Your account</a>" not in page
    secret, _ = enrol(browser)
    assert browser.get("/team/").status_code == 200
    # It cannot be turned off while required.
    refused = browser.submit(f"{PAGE}/turn-off", {"code": code_at(secret, T + STEP)}, page=PAGE)
    assert refused.status_code == 400 and "required" in text(refused)
    with app.app_context():
        assert db.session.get(User, user["id"]).two_factor_enabled


def test_buyers_and_suppliers_are_offered_it_but_not_made_to(app, signed_in):
    app.config["DPS_REQUIRE_MFA"] = True
    browser, _ = signed_in("buyer")
    assert browser.get("/buyer/").status_code == 200


def test_the_requirement_is_on_in_production_and_off_otherwise(tmp_path):
    base = {"DPS_SECRET_KEY": "k" * 32, "DPS_DATABASE_URL": "postgresql://dps@db/dps",
            "DPS_CLAMD_URL": "tcp://127.0.0.1:3310"}
    assert load(str(tmp_path), {})["DPS_REQUIRE_MFA"] is False
    assert load(str(tmp_path), {"DPS_ENV": "production", **base})["DPS_REQUIRE_MFA"] is True
    assert load(str(tmp_path), {"DPS_ENV": "production", "DPS_REQUIRE_MFA": "false", **base})["DPS_REQUIRE_MFA"] is False
    assert load(str(tmp_path), {"DPS_REQUIRE_MFA": "true"})["DPS_REQUIRE_MFA"] is True


# Turning off and resetting ------------------------------------------------------------------

def test_people_turn_theirs_off_with_a_current_code(app, signed_in):
    browser, user = signed_in("buyer")
    secret, _ = enrol(browser)
    refused = browser.submit(f"{PAGE}/turn-off", {"code": wrong_code(secret, T)}, page=PAGE)
    assert refused.status_code == 400 and two_factor.WRONG_CODE in text(refused)
    done = browser.submit(f"{PAGE}/turn-off", {"code": code_at(secret, T + STEP)}, page=PAGE)
    assert done.status_code == 302
    with app.app_context():
        stored = db.session.get(User, user["id"])
        assert not stored.two_factor_enabled and stored.totp_secret is None
        assert db.session.scalar(select(db.func.count()).select_from(RecoveryCode)
                                 .where(RecoveryCode.user_id == user["id"])) == 0
    assert "user.two_factor_disabled" in [e.action for e in audit_actions(app, user["id"])]
    assert sign_in(app.test_client(), user["email"], user["password"]).headers["Location"] == "/buyer/"


def test_the_team_resets_two_factor_and_ends_the_users_sessions(app, factory, signed_in):
    buyer_browser, buyer = signed_in("buyer")
    enrol(buyer_browser)
    team_browser, team = signed_in("dps_admin", organisation_id=factory.organisation())
    listing = text(team_browser.get("/team/accounts"))
    url = f"/team/accounts/{buyer['id']}/reset-two-factor"
    assert url in listing
    # The confirmation page changes nothing.
    confirm = team_browser.get(url)
    assert confirm.status_code == 200 and "Reset two-factor sign-in" in text(confirm)
    assert team_browser.post(url, data={}).status_code == 400  # no CSRF token
    with app.app_context():
        assert db.session.get(User, buyer["id"]).two_factor_enabled
    assert buyer_browser.get("/buyer/").status_code == 200
    done = team_browser.submit(url, follow_redirects=True)
    assert "has been reset" in text(done)
    assert buyer_browser.get("/buyer/").headers["Location"].startswith("/sign-in")
    with app.app_context():
        stored = db.session.get(User, buyer["id"])
        assert not stored.two_factor_enabled and stored.totp_secret is None
    reset = [e for e in audit_actions(app, buyer["id"]) if e.action == "user.two_factor_reset"]
    assert len(reset) == 1 and reset[0].actor_user_id == team["id"]
    # They sign in with their password alone now (set it up again if they wish).
    assert sign_in(app.test_client(), buyer["email"], buyer["password"]).headers["Location"] == "/buyer/"
    # Resetting again says there is nothing to reset.
    again = team_browser.submit(url, page=url, follow_redirects=True)
    assert "has not set up two-factor sign-in" in text(again)


def test_auditors_and_others_cannot_reset(app, factory, signed_in):
    buyer_browser, buyer = signed_in("buyer")
    enrol(buyer_browser)
    auditor, _ = signed_in("auditor", organisation_id=factory.organisation())
    assert auditor.get(f"/team/accounts/{buyer['id']}/reset-two-factor").status_code == 403
    colleague, _ = signed_in("buyer")
    assert colleague.get(f"/team/accounts/{buyer['id']}/reset-two-factor").status_code == 403


def test_every_two_factor_form_needs_the_csrf_token(app, factory, signed_in):
    browser, user = signed_in("buyer")
    assert browser.post(f"{PAGE}/start", data={}).status_code == 400
    secret = start_setup(browser)
    assert browser.post(f"{PAGE}/confirm", data={"code": code_at(secret, T)}).status_code == 400
    enrol_done = browser.submit(f"{PAGE}/confirm", {"code": code_at(secret, T)}, page=PAGE)
    assert enrol_done.status_code == 200
    assert browser.post(f"{PAGE}/turn-off", data={"code": code_at(secret, T + STEP)}).status_code == 400
    other = app.test_client()
    password_step(other, user)
    assert other.post("/sign-in/code", data={"code": code_at(secret, T + STEP)}).status_code == 400
    with app.app_context():
        assert db.session.get(User, user["id"]).totp_last_step == T // STEP  # nothing was accepted
    assert other.get("/buyer/").status_code == 302
