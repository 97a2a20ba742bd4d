"""Applying to join the DPS and being decided, driven through the pages as each role."""
from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import select

from dps import workingdays
from dps.extensions import db
from dps.models import Admission, Application, AuditEvent, Document, User
from tests.applying import ORGANISATION_DETAILS, PDF, complete_draft, good_section_data, make_dps, upload
from tests.conftest import link_in, make_app, outbox, set_clock, sign_in


def text(response) -> str:
    return response.get_data(as_text=True)


def application_id_from(response) -> int:
    return int(re.search(r"/supplier/applications/(\d+)", response.headers["Location"]).group(1))


@pytest.fixture
def dps(app):
    return make_dps(app)


@pytest.fixture
def team(factory, signed_in, dps):
    browser, _ = signed_in("dps_admin", organisation_id=dps["body"])
    return browser


def sign_up_supplier(app) -> object:
    browser = app.test_client()
    browser.submit("/supplier/sign-up", {"organisation_name": "Brightwater Research Ltd", "name": "Amara Okafor",
                                         "email": "amara@brightwater.example.org", "password": "amber falcon quartz"})
    browser.submit(link_in(outbox(app)[-1].body))
    assert sign_in(browser, "amara@brightwater.example.org", "amber falcon quartz").status_code == 302
    return browser


def fill_in_application(browser, app_id: int, lot_ids: list[int], public_liability: str) -> None:
    base = f"/supplier/applications/{app_id}"
    assert browser.submit(f"{base}/lots", {"lots": lot_ids}).status_code == 302
    for section in ("mandatory_exclusion", "discretionary_exclusion", "economic_financial", "insurance",
                    "technical", "policies"):
        data = good_section_data(section, lot_ids, public_liability=public_liability)
        if section == "economic_financial":
            data["accounts"] = upload("accounts-2023.pdf")
        if section == "insurance":
            data["insurance_certificates"] = upload("insurance.pdf")
        response = browser.submit(f"{base}/sections/{section}", data, content_type="multipart/form-data")
        assert response.status_code == 302, (section, text(response))


def test_the_whole_journey_apply_decide_reapply(app, dps, team):
    supplier = sign_up_supplier(app)
    assert "Add your organisation’s details" in text(supplier.get("/supplier/"))
    assert supplier.submit("/supplier/organisation", ORGANISATION_DETAILS).status_code == 302

    started = supplier.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/")
    app_id = application_id_from(started)
    # £1.5m public liability meets Lot 1's £1m but not Lot 2's £2m.
    fill_in_application(supplier, app_id, [dps["lot1"], dps["lot2"]], public_liability="1,500,000")
    task_list = text(supplier.get(f"/supplier/applications/{app_id}"))
    assert task_list.count("Completed") == 8

    check = supplier.get(f"/supplier/applications/{app_id}/check")
    assert "accounts-2023.pdf" in text(check) and "£1,500,000.00" in text(check)
    submitted = supplier.submit(f"/supplier/applications/{app_id}/check")
    assert submitted.status_code == 302
    receipt = text(supplier.get(submitted.headers["Location"]))
    assert "Application submitted" in receipt and "3 June 2024 at 9:00am" in receipt
    # Received Monday 3 June 2024: 10 working days later is Monday 17 June.
    assert "17 June 2024" in receipt
    emails = outbox(app)
    assert any(m.to_address == "amara@brightwater.example.org" and "received" in m.subject for m in emails)

    # The DPS team sees it in the queue, and the automatic results.
    queue = text(team.get("/team/applications"))
    assert "Brightwater Research Ltd" in queue and "17 June 2024" in queue
    page = text(team.get(f"/team/applications/{app_id}"))
    assert "£1,500,000 is below Lot 2" in page and "£1,500,000 meets Lot 1" in page
    assert "accounts-2023.pdf" in page

    # Lot 2 fails an automatic check, so it cannot be admitted.
    refused = team.submit(f"/team/applications/{app_id}/lots/{dps['lot2']}/decision",
                          {"lot2-decision": "admitted", "lot2-reasons": ""}, page=f"/team/applications/{app_id}")
    assert refused.status_code == 400 and "Lot 2 cannot be admitted" in text(refused)
    # Rejecting needs reasons the supplier will read.
    no_reason = team.submit(f"/team/applications/{app_id}/lots/{dps['lot2']}/decision",
                            {"lot2-decision": "rejected", "lot2-reasons": "  "}, page=f"/team/applications/{app_id}")
    assert no_reason.status_code == 400 and "Enter the reasons for rejecting" in text(no_reason)
    assert 'href="#lot' in text(no_reason)
    admit = team.submit(f"/team/applications/{app_id}/lots/{dps['lot1']}/decision",
                        {"lot{}-decision".format(dps["lot1"]): "admitted"}, page=f"/team/applications/{app_id}")
    assert admit.status_code == 302
    reasons = "Public liability insurance of £1.5m is below this lot's £2m minimum."
    reject = team.submit(f"/team/applications/{app_id}/lots/{dps['lot2']}/decision",
                         {"lot{}-decision".format(dps["lot2"]): "rejected", "lot{}-reasons".format(dps["lot2"]): reasons},
                         page=f"/team/applications/{app_id}")
    assert reject.status_code == 302
    decision_email = outbox(app)[-1]
    assert decision_email.subject == "Decision on your application to join the CCIN DPS"
    assert "Lot 1 (Research and policy): admitted" in decision_email.body and reasons in decision_email.body

    # The supplier sees both decisions, with the reasons.
    decided = text(supplier.get(f"/supplier/applications/{app_id}"))
    assert "Admitted" in decided and "Not admitted" in decided and reasons.replace("'", "&#39;") in decided
    assert "Lot 1: Research and policy" in text(supplier.get("/supplier/"))
    assert "Brightwater Research Ltd" in text(app.test_client().get("/agreements/CCIN-DPS-2020/suppliers"))

    # ...and applies again: a new application for Lot 2, with the last answers copied in.
    again = supplier.submit("/supplier/applications/new", {"previous": app_id, "agreement": dps["agreement"]}, page=f"/supplier/applications/{app_id}")
    new_id = application_id_from(again)
    assert new_id != app_id
    with app.app_context():
        new = db.session.get(Application, new_id)
        assert [al.lot_id for al in new.lots] == [dps["lot2"]]
        assert new.previous_application_id == app_id
        assert new.answer_map()["public_liability"] == 1_500_000_00
        assert new.status == "draft"
    # Only Lot 2 can be chosen: it is already on Lot 1.
    lots_page = text(supplier.get(f"/supplier/applications/{new_id}/lots"))
    assert "You are already on Lot 1: Research and policy" in lots_page


def test_half_finished_sections_are_saved_and_bad_input_keeps_what_was_saved(app, dps, signed_in):
    browser, user = signed_in("supplier")
    app_id = application_id_from(browser.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/"))
    base = f"/supplier/applications/{app_id}/sections/insurance"
    # Half an answer is fine: it is saved, and the task list says "In progress".
    assert browser.submit(base, {"employers_liability": "5,000,000"}).status_code == 302
    assert "In progress" in text(browser.get(f"/supplier/applications/{app_id}"))
    # A bad amount and a bad date: messages by the fields, typed values kept, nothing saved.
    bad = browser.submit(base, {"employers_liability": "5m", "public_liability": "2000000",
                                "insurance_expiry": ["31", "13", "2026"]})
    assert bad.status_code == 400
    page = text(bad)
    assert "Enter an amount in pounds" in page and 'href="#employers_liability"' in page
    assert "Enter a real date" in page
    assert 'value="5m"' in page and 'value="2000000"' in page
    with app.app_context():
        answers = db.session.get(Application, app_id).answer_map()
        assert answers["employers_liability"] == 5_000_000_00
        assert answers.get("public_liability") is None  # the failed save stored nothing


def test_a_wrong_file_behind_a_permitted_extension_is_refused_by_the_field(app, dps, signed_in):
    browser, _ = signed_in("supplier")
    app_id = application_id_from(browser.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/"))
    base = f"/supplier/applications/{app_id}/sections/economic_financial"
    response = browser.submit(base, {"annual_turnover": "1000", "accounts": upload("accounts.pdf", b"MZ\x90\x00fake exe")},
                              content_type="multipart/form-data")
    assert response.status_code == 400
    assert "is not a real .pdf file" in text(response) and 'href="#accounts"' in text(response)
    with app.app_context():
        # Nothing of the failed save is kept: neither the turnover nor a document row.
        assert "annual_turnover" not in db.session.get(Application, app_id).answer_map()
        assert db.session.scalar(select(db.func.count()).select_from(Document)) == 0
    ok = browser.submit(base, {"annual_turnover": "1000", "accounts": upload("accounts.pdf")},
                        content_type="multipart/form-data")
    assert ok.status_code == 302
    page = text(browser.get(base))
    assert "accounts.pdf" in page and "Remove" in page


def test_an_upload_too_large_is_refused_with_the_limit(database_url, factory, dps):
    small = make_app(database_url, DPS_MAX_UPLOAD_MB=1)
    user = factory.user("supplier")
    browser = small.test_client()
    sign_in(browser, user["email"])
    app_id = application_id_from(browser.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/"))
    big = PDF + b"0" * (1024 * 1024 + 1 - len(PDF))
    response = browser.submit(f"/supplier/applications/{app_id}/sections/economic_financial",
                              {"accounts": upload("big.pdf", big)}, content_type="multipart/form-data")
    assert response.status_code == 400 and "must be smaller than 1 MB" in text(response)


def test_storage_unreachable_asks_to_try_again_and_saves_nothing(database_url, factory, dps, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    broken = make_app(database_url, DPS_STORAGE_URL="s3://dps-bucket/docs", DPS_S3_ENDPOINT_URL="http://127.0.0.1:9")
    user = factory.user("supplier")
    browser = broken.test_client()
    sign_in(browser, user["email"])
    app_id = application_id_from(browser.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/"))
    response = browser.submit(f"/supplier/applications/{app_id}/sections/economic_financial",
                              {"annual_turnover": "1000", "accounts": upload()}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "The file could not be saved. Try again." in text(response)
    with broken.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Document)) == 0


# The DPS period, to the minute (Europe/London) ------------------------------------------------

@pytest.mark.parametrize("moment, accepted", [
    ("2025-03-31T23:59", True),
    ("2025-04-01T00:00", False),
    ("2020-03-31T23:59", False),
    ("2020-04-01T00:00", True),
])
def test_applications_are_accepted_only_within_the_dps_period(app, dps, signed_in, moment, accepted):
    browser, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [dps["lot1"]])
    set_clock(app, moment)
    response = browser.submit(f"/supplier/applications/{app_id}/check")
    with app.app_context():
        application = db.session.get(Application, app_id)
        if accepted:
            assert response.status_code == 302
            assert application.status == "submitted"
        else:
            assert response.status_code == 400
            expected = ("It closed to applications on 31 March 2025" if moment.startswith("2025")
                        else "It accepts applications from 1 April 2020 to 31 March 2025")
            assert expected in text(response)
            assert "Your application has been kept" in text(response)
            # Kept: still a draft, answers intact, ready for when (if ever) it can be sent.
            assert application.status == "draft" and application.answer_map()["public_liability"] == 2_000_000_00


def test_the_apply_button_is_not_offered_after_the_dps_closes(app, dps, signed_in):
    browser, _ = signed_in("supplier")
    set_clock(app, "2025-04-01T00:00")
    page = text(browser.get("/supplier/"))
    assert "Apply to join" not in page and 'name="agreement"' not in page
    assert "No agreement is open to applications at the moment" in page


# Working days ---------------------------------------------------------------------------------

@pytest.mark.parametrize("nation, received, due", [
    # Christmas and New Year: 25, 26 Dec and 1 Jan (and 2 Jan in Scotland) are not counted.
    ("England", date(2024, 12, 20), date(2025, 1, 8)),
    ("Wales", date(2024, 12, 20), date(2025, 1, 8)),
    ("Scotland", date(2024, 12, 20), date(2025, 1, 9)),
    # Easter 2024: Good Friday everywhere; Easter Monday not in Scotland.
    ("England", date(2024, 3, 28), date(2024, 4, 15)),
    ("Wales", date(2024, 3, 28), date(2024, 4, 15)),
    ("Scotland", date(2024, 3, 28), date(2024, 4, 12)),
    # St Patrick's Day 2025 in Northern Ireland only.
    ("Northern Ireland", date(2025, 3, 14), date(2025, 3, 31)),
    ("England", date(2025, 3, 14), date(2025, 3, 28)),
    # Received on a Saturday: counting starts on the Monday.
    ("England", date(2024, 6, 1), date(2024, 6, 14)),
])
def test_ten_working_days(nation, received, due):
    assert workingdays.add_working_days(received, 10, nation) == due


def test_the_decision_date_counts_the_agreements_nations_bank_holidays(app, signed_in):
    ids = make_dps(app, nation="Scotland")
    browser, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [ids["lot1"]])
    set_clock(app, "2024-12-20T16:30")
    browser.submit(f"/supplier/applications/{app_id}/check")
    assert "9 January 2025" in text(browser.get(f"/supplier/applications/{app_id}"))


def test_overdue_flag_and_the_15_day_extension(app, dps, team, signed_in):
    browser, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [dps["lot1"]])
    set_clock(app, "2024-12-20T16:30")  # Friday before Christmas, England
    browser.submit(f"/supplier/applications/{app_id}/check")
    set_clock(app, "2025-01-08T17:00")  # the 10th working day: due today, not overdue
    queue = text(team.get("/team/applications"))
    assert "8 January 2025" in queue and "Due today" in queue and "Overdue" not in queue
    set_clock(app, "2025-01-09T09:00")  # the 11th: overdue
    assert "Overdue" in text(team.get("/team/applications"))
    assert "is overdue" in text(team.get(f"/team/applications/{app_id}"))

    # An extension without a reason is refused, by the field.
    refused = team.submit(f"/team/applications/{app_id}/extend", {"reason": ""}, page=f"/team/applications/{app_id}")
    assert refused.status_code == 400
    assert "Enter why this application needs more time" in text(refused) and 'href="#reason"' in text(refused)
    with app.app_context():
        assert db.session.get(Application, app_id).decision_due_on == date(2025, 1, 8)
    reason = "We are checking the supplier's insurance certificate with the insurer."
    ok = team.submit(f"/team/applications/{app_id}/extend", {"reason": reason}, page=f"/team/applications/{app_id}")
    assert ok.status_code == 302
    with app.app_context():
        item = db.session.get(Application, app_id)
        assert item.decision_due_on == date(2025, 1, 15)  # 15 working days after 20 December
        assert item.extension_reason == reason
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "application.extended"))
        assert event.data["reason"] == reason and event.data["after"] == "2025-01-15"
    assert "Overdue" not in text(team.get("/team/applications"))
    supplier_view = text(browser.get(f"/supplier/applications/{app_id}"))
    assert "15 January 2025" in supplier_view and "checking the supplier" in supplier_view
    again = team.submit(f"/team/applications/{app_id}/extend", {"reason": "More"}, page=f"/team/applications/{app_id}")
    assert again.status_code == 400 and "already been extended" in text(again)


def test_overdue_decisions_are_emailed_to_the_team(app, dps, team, signed_in):
    from dps.services import applications as rules

    browser, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [dps["lot1"]])
    browser.submit(f"/supplier/applications/{app_id}/check")
    set_clock(app, "2024-06-18T09:00")  # due 17 June
    result = app.test_cli_runner().invoke(args=["applications", "notify-overdue"])
    assert result.exit_code == 0 and "1 overdue" in result.output
    message = outbox(app)[-1]
    assert "overdue" in message.subject and f"/team/applications/{app_id}" in message.body
    with app.app_context():
        assert message.to_address in [u.email for u in db.session.scalars(select(User).where(User.role == "dps_admin"))]
        assert rules.is_overdue(db.session.get(Application, app_id))


def test_a_mandatory_exclusion_fails_unless_self_cleaning_is_given(app, dps, team, signed_in):
    from dps.services import applications as rules

    browser, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [dps["lot1"]])
    browser.submit(f"/supplier/applications/{app_id}/sections/mandatory_exclusion",
                   {**good_section_data("mandatory_exclusion", []), "fraud": "yes"})
    with app.app_context():
        item = db.session.get(Application, app_id)
        assert rules.assessment(item).outcome_for(dps["lot1"]) == "fail"
    browser.submit(f"/supplier/applications/{app_id}/sections/mandatory_exclusion",
                   {**good_section_data("mandatory_exclusion", []), "fraud": "yes",
                    "mandatory_self_cleaning": "The director responsible left in 2019; we repaid the council in full."})
    browser.submit(f"/supplier/applications/{app_id}/check")
    page = text(team.get(f"/team/applications/{app_id}"))
    assert "Needs judgement" in page and "self-cleaning evidence to weigh" in page
    # With self-cleaning to weigh, admitting is the team's judgement and is allowed.
    admit = team.submit(f"/team/applications/{app_id}/lots/{dps['lot1']}/decision",
                        {f"lot{dps['lot1']}-decision": "admitted"}, page=f"/team/applications/{app_id}")
    assert admit.status_code == 302


def test_employers_liability_below_five_million_fails(app, dps):
    from dps import questionnaire as q

    version = q.parse(q.shipped_text("ccin-sq-2020-04"))
    with app.app_context():
        from dps.models import Lot

        lot = db.session.get(Lot, dps["lot1"])
        for amount, outcome in ((4_999_999_99, "fail"), (5_000_000_00, "pass")):
            answers = {"employers_liability": amount, "employers_liability_exempt": "no"}
            [result] = [r for r in q.assess(version, answers, [lot], date(2024, 6, 3)).general
                        if r.question.id == "employers_liability"]
            assert result.outcome == outcome


def test_every_supplier_that_meets_the_criteria_is_admitted_no_cap(app, dps, factory):
    from dps.services import applications as rules

    admin = factory.user("dps_admin", organisation_id=dps["body"])
    ids = [complete_draft(app, factory.user("supplier")["id"], [dps["lot1"]]) for _ in range(25)]
    with app.app_context():
        actor = db.session.get(User, admin["id"])
        for app_id in ids:
            item = db.session.get(Application, app_id)
            rules.submit(item, item.created_by)
            rules.decide_lot(item, dps["lot1"], actor, "admitted")
        db.session.commit()
        assert db.session.scalar(select(db.func.count()).select_from(Admission).where(Admission.status == "admitted")) == 25


def test_suppliers_cannot_see_each_others_applications(app, dps, signed_in):
    mine, me = signed_in("supplier")
    theirs, them = signed_in("supplier")
    their_app = complete_draft(app, them["id"], [dps["lot1"]])
    for url in (f"/supplier/applications/{their_app}", f"/supplier/applications/{their_app}/check",
                f"/supplier/applications/{their_app}/sections/insurance", f"/supplier/applications/{their_app}/lots"):
        assert mine.get(url).status_code == 404
    assert mine.submit(f"/supplier/applications/{their_app}/check", page="/supplier/").status_code == 404
    assert theirs.get(f"/supplier/applications/{their_app}").status_code == 200


def test_the_team_never_sees_an_unsent_draft(app, dps, team, signed_in):
    _, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [dps["lot1"]])
    assert team.get(f"/team/applications/{app_id}").status_code == 404
    with app.app_context():
        name = db.session.get(Application, app_id).organisation.name
    queue = text(team.get("/team/applications"))
    assert name not in queue and "No applications are waiting for a decision" in queue


def test_a_submitted_application_cannot_be_changed(app, dps, signed_in):
    browser, user = signed_in("supplier")
    app_id = complete_draft(app, user["id"], [dps["lot1"]])
    browser.submit(f"/supplier/applications/{app_id}/check")
    changed = browser.submit(f"/supplier/applications/{app_id}/sections/insurance",
                             {"public_liability": "1"}, page=f"/supplier/applications/{app_id}")
    assert changed.status_code == 302
    with app.app_context():
        assert db.session.get(Application, app_id).answer_map()["public_liability"] == 2_000_000_00


def test_the_team_sees_evidence_only_once_the_application_is_submitted(app, dps, team, signed_in, factory):
    browser, user = signed_in("supplier")
    app_id = application_id_from(browser.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/"))
    browser.submit(f"/supplier/applications/{app_id}/sections/economic_financial",
                   {"annual_turnover": "1000", "accounts": upload("draft-accounts.pdf")}, content_type="multipart/form-data")
    with app.app_context():
        [document_id] = db.session.get(Application, app_id).answer_map()["accounts"]
    auditor, _ = signed_in("auditor", organisation_id=dps["body"])
    assert browser.get(f"/documents/{document_id}").status_code == 200  # the supplier's own
    assert team.get(f"/documents/{document_id}").status_code == 404  # a draft is the supplier's alone
    assert auditor.get(f"/documents/{document_id}").status_code == 404
    with app.app_context():
        item = db.session.get(Application, app_id)
        item.submitted_at = item.created_at  # as if sent (the rest of the journey is tested above)
        db.session.commit()
    assert team.get(f"/documents/{document_id}").status_code == 200
    assert auditor.get(f"/documents/{document_id}").status_code == 200
    other, _ = signed_in("supplier")
    assert other.get(f"/documents/{document_id}").status_code == 404
