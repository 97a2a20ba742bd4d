"""An accountable body runs its DPS from an empty database, through the pages (issue 9, "done when").

Set-up on the command line; then, as the DPS team: members imported from a CSV, an agreement with two
lots and a questionnaire, published; a supplier applies and is admitted; a second agreement beside
the first, each public page showing its own suppliers; the rules that keep a DPS lawful refuse what
they must (a lot with admissions, a member that has left, a published questionnaire).
"""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta
from importlib import resources

from sqlalchemy import func, select

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import (
    Agreement,
    AuditEvent,
    Competition,
    Installation,
    Lot,
    Organisation,
    QuestionnaireVersion,
    User,
)
from dps.services import budget, competitions
from dps.services.competitions import CriterionInput
from tests.applying import complete_draft
from tests.conftest import TEST_PASSWORD, sign_in

TEAM_EMAIL = "fiona.marsden@oldham.gov.uk"
MEMBERS_HEADER = ["name", "membership", "kind", "nation", "contracting_authority", "identifier_scheme",
                  "identifier_id", "joined_on", "left_on"]


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _field_error(response, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>(.*?)</p>', response.get_data(as_text=True), re.S)
    assert match, f"no error by {field}: {_text(response)[:3000]}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).replace("Error:", "").strip()


def _members_csv(bad: bool = False) -> str:
    """The network's 75 members (its annual report of 2020, shipped in dps/data) in the import's layout."""
    text = resources.files("dps").joinpath("data", "ccin-members-2020-07-31.csv").read_text(encoding="utf-8")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MEMBERS_HEADER, lineterminator="\r\n")
    writer.writeheader()
    for n, row in enumerate(csv.DictReader(io.StringIO(text))):
        record = dict.fromkeys(MEMBERS_HEADER, "")
        record.update(name=row["name"], membership=row["membership"], kind=row["kind"], nation=row["nation"])
        if bad and n == 3:
            record["membership"] = "platinum"  # line 5
        if bad and n == 10:
            record["joined_on"] = "31/02/2019"  # line 12
        if bad and n == 20:
            record.update(joined_on="2020-01-01", left_on="2019-01-01")  # line 22
        writer.writerow(record)
    return out.getvalue()


def _confirm_fields(response) -> dict:
    body = response.get_data(as_text=True)
    fields = {}
    for name in ("content", "fingerprint"):
        match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', body) or re.search(
            rf'value="([^"]*)"[^>]*name="{name}"', body)
        assert match, f"no {name} on the preview"
        fields[name] = html.unescape(match.group(1))
    return fields


def _agreement_form(**changes) -> dict:
    data = {"reference": "CCIN-DPS-2020", "title": "CCIN Dynamic Purchasing System 2020 to 2025",
            "description": "Policy development, prototypes and capacity building for the network's members.",
            "regime": "pcr2015_dps", "starts_on": ["1", "4", "2020"], "ends_on": ["31", "3", "2025"],
            "nation": "England", "accountable_body_id": ""}
    data.update(changes)
    return data


def _lot_form(number: int, **changes) -> dict:
    data = {"number": str(number), "title": f"Lot {number} work", "description": f"What lot {number} covers.",
            "scope": "Research and policy; not delivery.", "cpv_codes": "73000000-2, 79315000-5",
            "selection_criteria": "Two case studies from the last three years.",
            "public_liability_min_pence": "1,000,000", "professional_indemnity_min_pence": "1000000",
            "case_studies_required": "2"}
    data.update(changes)
    return data


def _new_id(response, pattern: str) -> int:
    assert response.status_code == 302, _text(response)[:3000]
    return int(re.search(pattern, response.headers["Location"]).group(1))


def _publish_questionnaire(team, agreement_id: int, text: str) -> None:
    uploaded = team.submit(f"/team/agreements/{agreement_id}/questionnaires",
                           {"file": (io.BytesIO(text.encode("utf-8")), "questionnaire.yaml")},
                           content_type="multipart/form-data")
    version_id = _new_id(uploaded, r"/questionnaires/(\d+)")
    published = team.submit(f"/team/agreements/{agreement_id}/questionnaires/{version_id}/publish", {"confirm": "y"},
                            page=f"/team/agreements/{agreement_id}/questionnaires/{version_id}")
    assert published.status_code == 302, _text(published)[:3000]


def _admit(app, team, supplier: dict, lot_id: int) -> None:
    """The supplier applies to the lot's agreement and the DPS team admits it, through the pages."""
    application_id = complete_draft(app, supplier["id"], [lot_id])
    browser = app.test_client()
    assert sign_in(browser, supplier["email"]).status_code == 302
    assert browser.submit(f"/supplier/applications/{application_id}/check").status_code == 302
    decided = team.submit(f"/team/applications/{application_id}/lots/{lot_id}/decision",
                          {f"lot{lot_id}-decision": "admitted"}, page=f"/team/applications/{application_id}")
    assert decided.status_code == 302, _text(decided)[:3000]


def test_an_accountable_body_sets_up_and_runs_two_agreements_from_an_empty_database(app, factory):
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Organisation)) == 0

    # 1. Set-up, on the command line, once.
    runner = app.test_cli_runner()
    setup = ["setup", "--accountable-body", "Oldham Council", "--nation", "england", "--admin-email", TEAM_EMAIL,
             "--admin-name", "Fiona Marsden"]
    result = runner.invoke(args=setup, input=f"{TEST_PASSWORD}\n{TEST_PASSWORD}\n")  # asked for, not echoed
    assert result.exit_code == 0, result.output
    assert "Set up Oldham Council as the accountable body" in result.output and "/team/agreements" in result.output
    again = runner.invoke(args=setup + ["--password", TEST_PASSWORD])
    assert again.exit_code != 0 and "already set up for Oldham Council" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
        body_id = db.session.get(Installation, 1).accountable_body_id

    team = app.test_client()
    assert sign_in(team, TEAM_EMAIL).status_code == 302
    assert "Agreements" in _text(team.get("/team/"))
    assert "No agreement has been published yet" in _text(app.test_client().get("/agreements"))

    # 2. The members, from a CSV: a file with three bad rows is refused, naming them; nothing saved.
    refused = team.submit("/team/members/import", {"file": (io.BytesIO(_members_csv(bad=True).encode()), "members.csv")},
                          content_type="multipart/form-data")
    page = _text(refused)
    assert refused.status_code == 400
    for line in (5, 12, 22):
        assert f"Line {line} " in page, line
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Organisation)) == 1
    preview = team.submit("/team/members/import", {"file": (io.BytesIO(_members_csv().encode()), "members.csv")},
                          content_type="multipart/form-data")
    assert preview.status_code == 200, _text(preview)[:3000]
    imported = team.submit("/team/members/import/confirm", _confirm_fields(preview), page="/team/members/import")
    assert imported.status_code == 302
    # Oldham Council, made by set-up, is matched by name: 74 new members and Oldham's tier recorded.
    assert "74 members added and 1 changed" in _text(team.get("/team/members"))
    with app.app_context():
        members = db.session.scalar(select(func.count()).select_from(Organisation).where(Organisation.kind != "supplier"))
        assert members == 75
        assert db.session.get(Organisation, body_id).membership == "full"

    # 3. The agreement: bad input is named by its field, and what was typed stays.
    bad = team.submit("/team/agreements/new", _agreement_form(reference="ccin dps 2020!", accountable_body_id=str(body_id),
                                                              ends_on=["31", "3", "2019"]))
    assert bad.status_code == 400
    assert "capital letters, digits and hyphens" in _field_error(bad, "reference")
    assert "CCIN Dynamic Purchasing System 2020 to 2025" in _text(bad)
    after_start = team.submit("/team/agreements/new", _agreement_form(accountable_body_id=str(body_id),
                                                                      ends_on=["31", "3", "2019"]))
    assert "The last day must be after the first day" in _field_error(after_start, "ends_on")
    first = _new_id(team.submit("/team/agreements/new", _agreement_form(accountable_body_id=str(body_id))),
                    r"/team/agreements/(\d+)")
    assert "Add at least one lot" in _text(team.get(f"/team/agreements/{first}"))

    bad_lot = team.submit(f"/team/agreements/{first}/lots/new", _lot_form(1, cpv_codes="73000000"))
    assert bad_lot.status_code == 400 and "is not a CPV code" in _field_error(bad_lot, "cpv_codes")
    assert "What lot 1 covers." in _text(bad_lot)
    for number in (1, 2):
        assert team.submit(f"/team/agreements/{first}/lots/new", _lot_form(number)).status_code == 302
    not_yet = team.submit(f"/team/agreements/{first}/publish", page=f"/team/agreements/{first}")
    assert "Publish a version of the selection questionnaire" in _text(team.get(not_yet.headers["Location"]))
    _publish_questionnaire(team, first, questionnaire.shipped_text("ccin-sq-2020-04"))
    assert team.submit(f"/team/agreements/{first}/publish", page=f"/team/agreements/{first}").status_code == 302
    with app.app_context():
        lots_a = {lot.number: lot.id for lot in db.session.scalars(select(Lot).where(Lot.agreement_id == first))}

    # 4. A supplier applies and is admitted.
    brightwater = factory.user("supplier", email="amara@brightwater.example.org")
    assert "Apply to join CCIN-DPS-2020" in _text(_signed_in(app, brightwater).get("/supplier/"))
    _admit(app, team, brightwater, lots_a[1])

    # 5. A second agreement beside the first, with its own lot, questionnaire and supplier.
    second = _new_id(team.submit("/team/agreements/new", _agreement_form(
        reference="CCIN-DPS-2022", title="CCIN Research DPS 2022 to 2026", starts_on=["1", "1", "2022"],
        ends_on=["31", "12", "2026"], accountable_body_id=str(body_id))), r"/team/agreements/(\d+)")
    assert team.submit(f"/team/agreements/{second}/lots/new", _lot_form(1, title="Evaluation")).status_code == 302
    second_version = questionnaire.shipped_text("ccin-sq-2020-04").replace(
        "version: ccin-sq-2020-04", "version: ccin-research-sq-2022", 1)
    _publish_questionnaire(team, second, second_version)
    assert team.submit(f"/team/agreements/{second}/publish", page=f"/team/agreements/{second}").status_code == 302
    with app.app_context():
        lot_b = db.session.scalar(select(Lot.id).where(Lot.agreement_id == second))
    kestrel = factory.user("supplier", email="lucy@kestrellane.example.org")
    with app.app_context():
        db.session.get(Organisation, kestrel["organisation_id"]).name = "Kestrel Lane Data Co-operative"
        db.session.commit()
    _admit(app, team, kestrel, lot_b)
    with app.app_context():
        assert db.session.scalar(select(QuestionnaireVersion.version).join(
            QuestionnaireVersion.agreement).where(Agreement.id == second)) == "ccin-research-sq-2022"

    # Each public page shows the right suppliers for the right agreement.
    public = app.test_client()
    listing = _text(public.get("/agreements"))
    assert "CCIN Dynamic Purchasing System 2020 to 2025" in listing and "CCIN Research DPS 2022 to 2026" in listing
    with app.app_context():
        brightwater_name = db.session.get(Organisation, brightwater["organisation_id"]).name
    on_a = _text(public.get("/agreements/CCIN-DPS-2020/suppliers"))
    on_b = _text(public.get("/agreements/CCIN-DPS-2022/suppliers"))
    assert brightwater_name in on_a and "Kestrel Lane" not in on_a
    assert "Kestrel Lane" in on_b and brightwater_name not in on_b
    assert public.get("/dps/suppliers").headers["Location"].endswith("/agreements/CCIN-DPS-2020/suppliers")

    # 6. A lot with admissions keeps its definition; its title's wording may still be corrected.
    edit = f"/team/agreements/{first}/lots/{lots_a[1]}/edit"
    locked = team.submit(edit, _lot_form(1, selection_criteria="One case study will do."))
    assert locked.status_code == 400
    assert "objectively defined" in _field_error(locked, "selection_criteria")
    assert "One case study will do." in _text(locked)
    assert team.submit(edit, _lot_form(1, title="Research, evaluation and policy")).status_code == 302
    with app.app_context():
        lot = db.session.get(Lot, lots_a[1])
        assert (lot.title, lot.selection_criteria) == ("Research, evaluation and policy",
                                                       "Two case studies from the last three years.")
    # ...and the period of an agreement suppliers applied to is fixed.
    moved = team.submit(f"/team/agreements/{first}/edit", _agreement_form(accountable_body_id=str(body_id),
                                                                          ends_on=["31", "3", "2026"]))
    assert moved.status_code == 400 and "can no longer change" in _field_error(moved, "ends_on")

    # 7. A member that has left cannot publish a competition, and is told why.
    plymouth = _member_id(app, "Plymouth City Council")
    buyer = factory.user("buyer", organisation_id=plymouth, email="kerry@plymouth.example.org")
    draft = _draft_competition(app, buyer, lots_a[1])
    with app.app_context():
        left_on = clock.today_london() - timedelta(days=1)
    record = team.get(f"/team/members/{plymouth}/edit")
    assert record.status_code == 200
    left = team.submit(f"/team/members/{plymouth}/edit", {
        "name": "Plymouth City Council", "membership": "full", "kind": "council", "nation": "England",
        "contracting_authority": "yes", "identifier_scheme": "", "identifier_id": "",
        "joined_on": ["", "", ""], "left_on": [str(left_on.day), str(left_on.month), str(left_on.year)]})
    assert left.status_code == 302, _text(left)[:3000]
    kerry = _signed_in(app, buyer)
    refused = kerry.submit(f"/buyer/competitions/{draft}/publish", page=f"/buyer/competitions/{draft}")
    assert refused.status_code == 400
    assert "left the network on" in _text(refused)
    with app.app_context():
        assert db.session.get(Competition, draft).published_at is None

    # 8. A published questionnaire version can never be changed or deleted.
    replaced = team.submit(f"/team/agreements/{first}/questionnaires",
                           {"file": (io.BytesIO(questionnaire.shipped_text("ccin-sq-2020-04").encode()), "q.yaml")},
                           content_type="multipart/form-data")
    assert replaced.status_code == 400 and "is published, so it can never be replaced" in _text(replaced)
    with app.app_context():
        version_id = db.session.scalar(select(QuestionnaireVersion.id).where(QuestionnaireVersion.agreement_id == first))
    deleted = team.submit(f"/team/agreements/{first}/questionnaires/{version_id}/delete",
                          page=f"/team/agreements/{first}/questionnaires/{version_id}")
    assert deleted.status_code == 400

    # Every change above is in the audit log, and the chain holds.
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEvent.action)))
        from dps.audit import verify_chain

        assert verify_chain().ok
    assert {"service.set_up", "agreement.created", "agreement.published", "lot.created", "lot.updated",
            "questionnaire.uploaded", "questionnaire.published", "application.submitted"} <= actions


def _signed_in(app, user: dict):
    browser = app.test_client()
    assert sign_in(browser, user["email"], user["password"]).status_code == 302
    return browser


def _member_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Organisation.id).where(Organisation.name == name))


def _draft_competition(app, buyer: dict, lot_id: int) -> int:
    """A draft on the lot, charged to an allocation the DPS team made (through the services)."""
    with app.app_context():
        team = db.session.scalar(select(User).where(User.role == "dps_admin"))
        year = budget.create_year(team, 2024)
        line = budget.create_line(team, year, "Policy Labs", 200_000_00, 20_000_00)
        allocation = budget.allocate(team, line, db.session.get(Organisation, buyer["organisation_id"]),
                                     "Co-operative place-making lab", 20_000_00)
        user = db.session.get(User, buyer["id"])
        now = clock.now()
        competition, _ = competitions.create(
            user, lot_id=lot_id, title="Place-making review", description="A review.",
            estimated_value_pence=15_000_00, allocation_id=allocation.id,
            clarification_deadline=now + timedelta(days=7), tender_deadline=now + timedelta(days=14),
            criteria=[CriterionInput("quality", "Approach", 60, "", 500), CriterionInput("price", "Price", 30, "", None),
                      CriterionInput("social_value", "Social value", 10, "", 300)])
        db.session.commit()
        return competition.id


def test_the_first_run_refuses_a_weak_password_and_a_second_run(app):
    runner = app.test_cli_runner()
    args = ["setup", "--accountable-body", "Cardiff Council", "--nation", "wales", "--admin-email", "a@cardiff.gov.uk",
            "--admin-name", "Alun Jones"]
    weak = runner.invoke(args=args + ["--password", "password"])
    assert weak.exit_code != 0
    with app.app_context():
        assert db.session.get(Installation, 1) is None  # nothing half made
        assert db.session.scalar(select(func.count()).select_from(Organisation)) == 0
    assert runner.invoke(args=args + ["--password", TEST_PASSWORD]).exit_code == 0
    with app.app_context():
        body = db.session.get(Installation, 1).accountable_body
        assert (body.name, body.nation, body.contracting_authority) == ("Cardiff Council", "Wales", True)
    assert "already set up" in runner.invoke(args=args + ["--password", TEST_PASSWORD]).output
    # Later accounts of the DPS team and auditors belong to the accountable body by default.
    made = runner.invoke(args=["users", "create", "--role", "auditor", "--email", "audit@cardiff.gov.uk",
                               "--name", "Ceri Auditor", "--password", TEST_PASSWORD])
    assert made.exit_code == 0 and "Cardiff Council" in made.output


def test_users_create_for_the_team_asks_for_set_up_first(app):
    result = app.test_cli_runner().invoke(args=["users", "create", "--role", "dps_admin", "--email", "x@example.org",
                                                "--name", "X", "--password", TEST_PASSWORD])
    assert result.exit_code != 0 and "flask --app dps setup" in result.output
