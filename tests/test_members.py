"""Member organisations (issue 9, item 4): the DPS team adds and changes members and imports them
from a CSV file with a preview; auditors read; buying follows the records (a member that has left
cannot have buyers made or start or publish a competition). Driven through the pages as each
role, on the simulated clock the tests freeze at Monday 3 June 2024, 9am."""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import date
from importlib import resources

import pytest
from sqlalchemy import func, select

from dps import clock
from dps.extensions import db
from dps.models import AuditEvent, Organisation, User
from dps.services import ServiceError, accounts, competitions
from dps.services import members as rules
from tests.conftest import count_queries, sign_in

HEADER = "name,membership,kind,nation,contracting_authority,identifier_scheme,identifier_id,joined_on,left_on"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _field_error(response, field: str) -> str:
    """The error message shown by ``field`` (GOV.UK puts it in an element with id <field>-error)."""
    match = re.search(rf'id="{field}-error"[^>]*>(.*?)</p>', response.get_data(as_text=True), re.S)
    assert match, f"no error by {field}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).replace("Error:", "").strip()


def _errors(response) -> list[str]:
    return re.findall(r'id="([\w-]+)-error"', response.get_data(as_text=True))


@pytest.fixture
def team(signed_in):
    return signed_in("dps_admin")[0]


def _member(app, name: str, *, kind: str = "council", membership: str | None = "full", nation: str | None = "England",
            contracting_authority: bool = True, joined_on: date | None = None, left_on: date | None = None,
            scheme: str | None = None, identifier: str | None = None) -> int:
    with app.app_context():
        org = Organisation(name=name, kind=kind, membership=membership, nation=nation,
                           contracting_authority=contracting_authority, joined_on=joined_on, left_on=left_on,
                           identifier_scheme=scheme, identifier_id=identifier, created_at=clock.now())
        db.session.add(org)
        db.session.commit()
        return org.id


def _form(**values) -> dict:
    """What the team types into the member form; dates as (day, month, year) boxes."""
    data = {"name": "", "membership": "", "kind": "", "nation": "", "identifier_scheme": "", "identifier_id": "",
            "joined_on": ["", "", ""], "left_on": ["", "", ""]}
    for key, value in values.items():
        data[key] = [str(part) for part in value] if isinstance(value, tuple) else value
    return data


def _audit(app, action: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        rows = db.session.scalars(stmt).all()
        db.session.expunge_all()
        return rows


def _audit_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent))


def _org_named(app, name: str) -> Organisation | None:
    with app.app_context():
        org = db.session.scalar(select(Organisation).where(Organisation.name == name))
        if org is not None:
            db.session.expunge(org)
        return org


# Adding and changing a member ---------------------------------------------------------------------

def test_the_team_adds_a_member_and_every_error_is_by_its_field(app, team):
    page = team.get("/team/members/new")
    assert page.status_code == 200 and "<title>Add a member organisation" in _text(page)

    empty = team.submit("/team/members/new", _form())
    assert empty.status_code == 400
    assert _field_error(empty, "name") == "Enter the organisation’s name"

    # Every rule broken is shown at once, each by its own field.
    refused = team.submit("/team/members/new", _form(name="Barnsley Council", kind="council", identifier_id="BNS",
                                                     joined_on=(1, 4, 2019), left_on=(1, 4, 2018)))
    assert refused.status_code == 400
    assert _errors(refused) == ["membership", "identifier_scheme", "left_on"]
    assert _field_error(refused, "membership") == "Select the membership tier"

    no_nation = team.submit("/team/members/new", _form(name="Barnsley Council", kind="council", membership="full"))
    assert no_nation.status_code == 400
    assert _field_error(no_nation, "nation").startswith("Select the nation: Full and Associate Members need one")

    bad_date = team.submit("/team/members/new", _form(name="Barnsley Council", kind="council", membership="full",
                                                      nation="England", joined_on=(31, 2, 2019)))
    assert bad_date.status_code == 400
    assert _field_error(bad_date, "joined_on") == "Enter a real date, like 27 6 2024"

    # The boundary: leaving on the day it joined is refused, by the date it left, with what was typed kept.
    same_day = team.submit("/team/members/new", _form(name="Barnsley Council", kind="council", membership="full",
                                                      nation="England", identifier_scheme="GB-LAE",
                                                      identifier_id="bns", joined_on=(1, 4, 2019),
                                                      left_on=(1, 4, 2019)))
    assert same_day.status_code == 400
    assert _errors(same_day) == ["left_on"]
    assert _field_error(same_day, "left_on") == "The date it left must be after the date it joined (1 April 2019)"
    body = same_day.get_data(as_text=True)
    assert 'value="Barnsley Council"' in body and 'value="bns"' in body
    assert re.search(r'name="left_on"[^>]*value="1"', body) or re.search(r'value="1"[^>]*name="left_on"', body)
    assert "<title>Error: Add a member organisation" in _text(same_day)
    assert _org_named(app, "Barnsley Council") is None

    # The next day is accepted.
    added = team.submit("/team/members/new", _form(name="  Barnsley   Council ", kind="council", membership="full",
                                                   nation="England", identifier_scheme="GB-LAE", identifier_id="bns",
                                                   joined_on=(1, 4, 2019), left_on=(2, 4, 2019)))
    assert added.status_code == 302 and added.headers["Location"].endswith("/team/members")
    org = _org_named(app, "Barnsley Council")
    assert (org.kind, org.membership, org.nation, org.identifier_scheme, org.identifier_id) == (
        "council", "full", "England", "GB-LAE", "BNS")
    assert (org.joined_on, org.left_on) == (date(2019, 4, 1), date(2019, 4, 2))
    assert org.contracting_authority is True  # not chosen: the usual for a council
    [event] = _audit(app, "organisation.created")
    assert event.object_id == str(org.id) and event.data["before"] is None
    assert event.data["after"]["joined_on"] == "2019-04-01" and event.data["after"]["contracting_authority"] is True
    assert "Barnsley Council has been added" in _text(team.get("/team/members"))

    # A second member by the same name (in other capitals) or with the same identifier is refused.
    again = team.submit("/team/members/new", _form(name="BARNSLEY COUNCIL", kind="council", membership="full",
                                                   nation="England"))
    assert again.status_code == 400 and _field_error(again, "name") == "There is already a member called Barnsley Council"
    taken = team.submit("/team/members/new", _form(name="Barnsley MBC", kind="council", membership="full",
                                                   nation="England", identifier_scheme="GB-LAE", identifier_id="BNS"))
    assert taken.status_code == 400
    assert _field_error(taken, "identifier_id") == "The identifier GB-LAE-BNS already belongs to Barnsley Council"
    no_scheme = team.submit("/team/members/new", _form(name="Barnsley MBC", kind="council", membership="full",
                                                       nation="England", identifier_id="BNS2"))
    assert no_scheme.status_code == 400 and _field_error(no_scheme, "identifier_scheme").startswith("Select the scheme")
    affiliate = team.submit("/team/members/new", _form(name="Mutual Ventures", kind="organisation",
                                                       membership="affiliate", contracting_authority="no"))
    assert affiliate.status_code == 302  # an Affiliate Member needs no nation
    assert _org_named(app, "Mutual Ventures").contracting_authority is False


def test_editing_records_only_the_fields_that_changed(app, team, factory):
    org_id = _member(app, "York Labour Group", kind="opposition_group", membership="associate",
                     contracting_authority=False, joined_on=date(2016, 6, 1))
    url = f"/team/members/{org_id}/edit"
    page = _text(team.get(url))
    assert "<title>Change York Labour Group" in page and 'value="York Labour Group"' in page

    current = _form(name="York Labour Group", kind="opposition_group", membership="associate", nation="England",
                    contracting_authority="no", joined_on=(1, 6, 2016))
    same_day = team.submit(url, {**current, "left_on": ["1", "6", "2016"]})
    assert same_day.status_code == 400
    assert _field_error(same_day, "left_on") == "The date it left must be after the date it joined (1 June 2016)"
    assert _org_named(app, "York Labour Group").left_on is None

    changed = team.submit(url, {**current, "nation": "Scotland", "left_on": ["2", "6", "2016"]})
    assert changed.status_code == 302
    org = _org_named(app, "York Labour Group")
    assert (org.nation, org.left_on) == ("Scotland", date(2016, 6, 2))
    [event] = _audit(app, "organisation.updated")
    assert event.data == {"before": {"nation": "England", "left_on": None},
                          "after": {"nation": "Scotland", "left_on": "2016-06-02"}}

    before = _audit_count(app)
    unchanged = team.submit(url, {**current, "nation": "Scotland", "left_on": ["2", "6", "2016"]})
    assert unchanged.status_code == 302 and _audit_count(app) == before
    assert "Nothing was changed" in _text(team.get("/team/members"))

    # Only organisations that are not suppliers are members: a supplier's id is not found.
    supplier = factory.organisation(kind="supplier", membership=None, name="Brightwater Research Ltd")
    assert team.get(f"/team/members/{supplier}/edit").status_code == 404
    assert team.get("/team/members/999999/edit").status_code == 404


def test_the_network_itself_has_no_tier_and_there_is_only_one(app, team):
    network = _member(app, "Co-operative Councils' Innovation Network", kind="network", membership=None,
                      contracting_authority=False)
    tiered = team.submit(f"/team/members/{network}/edit",
                         _form(name="Co-operative Councils' Innovation Network", kind="network", membership="full",
                               nation="England"))
    assert tiered.status_code == 400 and _field_error(tiered, "membership").startswith("The network itself has no")
    second = team.submit("/team/members/new", _form(name="Another network", kind="network"))
    assert second.status_code == 400 and _field_error(second, "kind").startswith("Only one organisation can be")


def test_auditors_read_the_members_but_every_change_is_refused(app, signed_in):
    org_id = _member(app, "Oldham Council", scheme="GB-LAE", identifier="OLD")
    auditor = signed_in("auditor")[0]
    listing = auditor.get("/team/members")
    assert listing.status_code == 200
    page = _text(listing)
    assert "Oldham Council" in page and "GB-LAE-OLD" in page
    assert f"/team/members/{org_id}/edit" not in page and "/team/members/new" not in page
    assert "Member organisations" in _text(auditor.get("/team/"))
    for url in ("/team/members/new", f"/team/members/{org_id}/edit", "/team/members/import"):
        assert auditor.get(url).status_code == 403, url
    for url, data in (("/team/members/new", _form(name="Barnsley Council", kind="council", membership="full",
                                                  nation="England")),
                      (f"/team/members/{org_id}/edit", _form(name="Oldham", kind="council", membership="full",
                                                             nation="England")),
                      ("/team/members/import", {}),
                      ("/team/members/import/confirm", {"content": "", "fingerprint": ""})):
        assert auditor.submit(url, data, page="/team/members").status_code == 403, url
    assert _org_named(app, "Barnsley Council") is None and _org_named(app, "Oldham Council") is not None

    # The service says no too, whoever calls it.
    with app.app_context():
        user = db.session.scalar(select(User).where(User.role == "auditor"))
        with pytest.raises(ServiceError, match="Only the DPS team"):
            rules.add(user, name="Barnsley Council", kind="council", membership="full", nation="England")
        with pytest.raises(ServiceError, match="Only the DPS team"):
            rules.apply_import(user, f"{HEADER}\nBarnsley Council,full,council,England,,,,,\n")


def test_suppliers_and_buyers_cannot_see_the_members_pages(app, signed_in):
    council = _member(app, "Plymouth City Council")
    for browser in (signed_in("supplier")[0], signed_in("buyer", organisation_id=council)[0]):
        for url in ("/team/members", "/team/members/new", f"/team/members/{council}/edit", "/team/members/import"):
            assert browser.get(url).status_code == 403, url
        assert browser.submit("/team/members/new", _form(name="X", kind="council", membership="full", nation="England"),
                              page="/account").status_code == 403


def test_every_post_needs_its_csrf_token(app, team):
    response = team.post("/team/members/new", data=_form(name="Barnsley Council", kind="council", membership="full",
                                                         nation="England"))
    assert response.status_code == 400 and _org_named(app, "Barnsley Council") is None
    assert team.post("/team/members/import/confirm", data={"content": "", "fingerprint": ""}).status_code == 400


# Importing --------------------------------------------------------------------------------------

def _ccin_rows() -> list[dict[str, str]]:
    text = resources.files("dps").joinpath("data", "ccin-members-2020-07-31.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _ccin_csv(changes: dict[str, dict[str, str]] | None = None) -> str:
    """The network's 75 members in the import's format. Tiers, kinds and nations are given now as
    codes, now as labels; Oldham Council has an identifier and dates."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER.split(","), lineterminator="\r\n")
    writer.writeheader()
    for n, row in enumerate(_ccin_rows()):
        record = {"name": row["name"], "membership": row["membership"].title() if n % 2 else row["membership"],
                  "kind": row["kind"], "nation": row["nation"].upper() if n % 3 == 0 else row["nation"],
                  "contracting_authority": "", "identifier_scheme": "", "identifier_id": "", "joined_on": "",
                  "left_on": ""}
        if row["name"] == "Oldham Council":
            record.update(identifier_scheme="GB-LAE", identifier_id="OLD", joined_on="2013-03-01",
                          contracting_authority="yes")
        record.update((changes or {}).get(row["name"], {}))
        writer.writerow(record)
    return out.getvalue()


def _upload(client, content: str | bytes, filename: str = "members.csv"):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return client.submit("/team/members/import", {"file": (io.BytesIO(data), filename)},
                         content_type="multipart/form-data")


def _confirm_fields(response) -> dict:
    body = response.get_data(as_text=True)
    fields = {}
    for name in ("content", "fingerprint"):
        match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', body) or re.search(
            rf'value="([^"]*)"[^>]*name="{name}"', body)
        assert match, f"no {name} on the preview"
        fields[name] = html.unescape(match.group(1))
    return fields


def _member_names(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Organisation.name).where(Organisation.kind != "supplier")))


def test_importing_the_networks_75_members_then_the_same_file_again(app, team):
    names = {row["name"] for row in _ccin_rows()}
    assert len(names) == 75
    content = _ccin_csv()
    page = team.get("/team/members/import")
    assert page.status_code == 200 and "<title>Import members from a CSV file" in _text(page)
    assert HEADER in _text(page)

    preview = _upload(team, "\ufeff" + content)  # Excel's "CSV UTF-8" starts with a byte order mark
    assert preview.status_code == 200, _text(preview)
    shown = _text(preview)
    assert "<title>Check the members to import" in shown
    assert "Import 75 members" in shown
    assert "Greater Manchester Combined Authority" in shown
    assert _member_names(app) & names == set()  # a preview saves nothing

    confirmed = team.submit("/team/members/import/confirm", _confirm_fields(preview), page="/team/members/import")
    assert confirmed.status_code == 302 and confirmed.headers["Location"].endswith("/team/members")
    assert "75 members added and 0 changed" in _text(team.get("/team/members"))
    assert names <= _member_names(app)
    oldham = _org_named(app, "Oldham Council")
    assert (oldham.identifier_scheme, oldham.identifier_id, oldham.joined_on) == ("GB-LAE", "OLD", date(2013, 3, 1))
    with app.app_context():
        tiers = dict(db.session.execute(select(Organisation.membership, func.count())
                                        .where(Organisation.name.in_(names)).group_by(Organisation.membership)).all())
        assert tiers == {"full": 33, "associate": 16, "affiliate": 26}
        affiliates = db.session.scalars(select(Organisation).where(Organisation.membership == "affiliate")).all()
        assert all(org.nation is None and org.contracting_authority is False for org in affiliates)
        councils = db.session.scalars(select(Organisation).where(Organisation.name.in_(names),
                                                                 Organisation.kind == "council")).all()
        assert all(org.contracting_authority for org in councils)
    events = _audit(app)
    assert [e.action for e in events[-76:]] == ["organisation.created"] * 75 + ["organisations.imported"]
    assert events[-1].data["added"] == 75 and events[-2].data["import"]["line"] == 76

    # The same file again: nothing to change, and no button to press.
    before = _audit_count(app)
    again = _upload(team, content)
    assert again.status_code == 200
    assert "Nothing to change" in _text(again) and "75 already up to date" in _text(again)
    assert 'name="fingerprint"' not in again.get_data(as_text=True)
    # Confirming it anyway (the earlier preview's form, sent again) changes nothing either.
    replayed = team.submit("/team/members/import/confirm", _confirm_fields(preview), page="/team/members/import")
    assert replayed.status_code == 302
    assert "Nothing to change" in _text(team.get("/team/members"))
    with app.app_context():
        team_user = db.session.scalar(select(User).where(User.role == "dps_admin"))
        result = rules.apply_import(team_user, content)
        db.session.commit()
    assert (result.added, result.changed, result.unchanged) == (0, 0, 75)
    assert _audit_count(app) == before
    assert len(_member_names(app) & names) == 75

    # A changed file: a tier, a date left, a label in other capitals that means the same.
    changed = _ccin_csv({"Bassetlaw District Council": {"membership": "associate"},
                         "Oldham Council": {"left_on": "2025-03-31", "kind": "COUNCIL"}})
    preview = _upload(team, changed)
    shown = _text(preview)
    assert "Import 2 members" in shown and "73 already up to date" in shown
    assert re.search(r"Bassetlaw District Council</th>.*?Tier</td>", shown, re.S)
    assert re.search(r"Oldham Council</th>.*?Date left</td>", shown, re.S)
    confirmed = team.submit("/team/members/import/confirm", _confirm_fields(preview), page="/team/members/import")
    assert confirmed.status_code == 302
    assert "0 members added and 2 changed" in _text(team.get("/team/members"))
    updates = _audit(app, "organisation.updated")
    assert [e.data["after"] for e in updates] == [{"membership": "associate"}, {"left_on": "2025-03-31"}]
    assert updates[1].data["before"] == {"left_on": None}


def test_a_file_with_three_bad_rows_is_refused_with_their_line_numbers_and_nothing_is_saved(app, team):
    lines = [HEADER,
             "Plymouth City Council,Full,Council,England,,GB-LAE,PLY,2014-01-01,",  # line 2
             "Barnsley Council,Full,council,England,,,,1/4/2019,",  # line 3: not YYYY-MM-DD
             "Kirklees Council,full,council,England,,,,,",  # line 4
             "Gold Council,Platinum,council,England,,,,,",  # line 5: no such tier
             "Cardiff Council,Full,council,Wales,,,,,",  # line 6
             "Sunderland City Council,Full,council,,,,,,",  # line 7: a Full Member without a nation
             "Mutual Ventures,Affiliate,organisation,,,,,,"]  # line 8
    before = _audit_count(app)
    refused = _upload(team, "\n".join(lines) + "\n")
    assert refused.status_code == 400
    shown = _text(refused)
    assert "<title>Error: Check the members to import" in shown
    problems = re.findall(r'<li id="line-(\d+)">(.*?)</li>', shown)
    assert [line for line, _ in problems] == ["3", "5", "7"]
    assert problems[0][1] == ("Line 3 (Barnsley Council): enter the date it joined as YYYY-MM-DD, "
                              "like 2019-04-01 (not ‘1/4/2019’)")
    assert "Line 5 (Gold Council): the membership tier must be Full, Associate or Affiliate" in problems[1][1]
    assert "Line 7 (Sunderland City Council): enter the nation" in problems[2][1]
    assert "Full and Associate Members need one" in problems[2][1]
    assert 'name="fingerprint"' not in refused.get_data(as_text=True)  # no button to import
    assert _member_names(app) & {"Plymouth City Council", "Kirklees Council", "Cardiff Council"} == set()

    # Sent straight to the confirmation (a hand-made form): checked again, refused, nothing saved.
    from dps.views.team_members import _pack

    forced = team.submit("/team/members/import/confirm", {"content": _pack("\n".join(lines)), "fingerprint": ""},
                         page="/team/members/import")
    assert forced.status_code == 400
    assert re.findall(r'<li id="line-(\d+)">', forced.get_data(as_text=True)) == ["3", "5", "7"]
    assert "Nothing was imported: 3 rows of the file have a problem" in _text(forced)
    assert _member_names(app) & {"Plymouth City Council", "Kirklees Council", "Cardiff Council"} == set()
    assert _audit_count(app) == before


@pytest.mark.parametrize("row, message", [
    ("Oldham Council,full,council,England,,GB-XYZ,OLD,,", "the identifier scheme GB-XYZ is not one of GB-LAE"),
    ("Oldham Council,full,council,England,,,OLD,,", "enter the identifier_scheme of the identifier OLD"),
    ("Oldham Council,full,borough,England,,,,,", "the kind must be one of council, combined_authority"),
    ("Oldham Council,full,council,Cornwall,,,,,", "the nation must be England, Wales, Scotland or Northern Ireland"),
    ("Oldham Council,full,council,England,maybe,,,,", "enter yes or no for contracting_authority"),
    ("Oldham Council,full,council,England,,,,2019-04-01,2019-04-01",
     "the date it left (2019-04-01) must be after the date it joined (2019-04-01)"),
    ("Oldham Council,full,council,England,,,,2019-02-30,", "enter the date it joined as YYYY-MM-DD"),
    (",full,council,England,,,,,", "Line 2: enter the member’s name"),
    ("Oldham Council,,council,England,,,,,", "enter the membership tier: Full, Associate or Affiliate"),
    ("Oldham Council,full,council,England,,,,,,extra", "it has a value in a column the first row does not name"),
])
def test_each_bad_row_says_what_is_wrong(app, row, message):
    with app.app_context():
        preview = rules.preview_import(f"{HEADER}\n{row}\n")
    [problem] = preview.problems
    assert problem.line == 2 and message in problem.text, problem.text
    assert preview.rows == []


def test_duplicates_within_the_file_and_the_boundary_of_leaving_are_found(app):
    with app.app_context():
        preview = rules.preview_import("\n".join([
            HEADER,
            "Oldham Council,full,council,England,,GB-LAE,OLD,2019-04-01,2019-04-02",  # left the day after: fine
            "oldham council,full,council,England,,,,,",
            "Rochdale Council,full,council,England,,gb-lae,old,,",
        ]))
    assert [(p.line, p.messages) for p in preview.problems] == [
        (3, ("the name is also on line 2",)),
        (4, ("the identifier GB-LAE-OLD is also on line 2",)),
    ]
    assert [(row.line, row.status) for row in preview.rows] == [(2, "new")]


@pytest.mark.parametrize("content, message", [
    ("Barnsley Council,full,council,England\n".encode("utf-8"), "The first row must name every column"),
    (b"name,membership,kind,nation\nBarnsley Council,full,council,England\n",
     "contracting_authority, identifier_scheme, identifier_id, joined_on, left_on are missing"),
    (f"{HEADER},colour\n".encode("utf-8"), "a column this import does not know: colour"),
    (f"{HEADER}\nSt Helens Council,full,council,England,,,,,\nYnys M\xf4n,full,council,Wales,,,,,\n".encode("latin-1"),
     "The file must be saved as UTF-8 (in Excel, ‘CSV UTF-8’): line 3"),
    (b"", "The selected file is empty"),
])
def test_a_file_that_cannot_be_used_is_refused_by_the_file_field(app, team, content, message):
    refused = _upload(team, content)
    assert refused.status_code == 400
    assert message in _field_error(refused, "file")


def test_a_file_of_more_than_5000_members_is_refused(app):
    rows = "".join(f"Member {n},affiliate,organisation,,,,,,\n" for n in range(rules.IMPORT_ROW_LIMIT + 1))
    with app.app_context():
        with pytest.raises(ServiceError, match="more than 5,000 members"):
            rules.preview_import(f"{HEADER}\n{rows}")
        preview = rules.preview_import(f"{HEADER}\n" + rows.split("\n", 1)[1])  # 5,000 exactly
        assert len(preview.rows) == rules.IMPORT_ROW_LIMIT and preview.ok


def test_an_import_matches_by_identifier_then_by_name(app, team, factory):
    oldham = _member(app, "Oldham Metropolitan Borough Council", scheme="GB-LAE", identifier="OLD")
    plymouth = _member(app, "Plymouth City Council")
    factory.organisation(kind="supplier", membership=None, name="Brightwater Research Ltd")
    with app.app_context():
        supplier = db.session.scalar(select(Organisation).where(Organisation.kind == "supplier"))
        supplier.identifier_scheme, supplier.identifier_id = "GB-COH", "09876543"
        db.session.commit()
        preview = rules.preview_import("\n".join([
            HEADER,
            "Oldham Council,full,council,England,yes,GB-LAE,OLD,,",  # renamed, found by its identifier
            "PLYMOUTH CITY COUNCIL,full,council,England,yes,GB-LAE,PLY,,",  # found by name; gains an identifier
            "Brightwater Members Club,affiliate,organisation,,,GB-COH,09876543,,",
        ]))
    assert [(p.line, p.messages) for p in preview.problems] == [
        (4, ("the identifier GB-COH-09876543 belongs to a supplier, Brightwater Research Ltd",))]
    rows = {row.line: row for row in preview.rows}
    assert (rows[2].organisation.id, rows[2].changes) == (oldham, ["name"])
    assert (rows[3].organisation.id, rows[3].changes) == (plymouth, ["name", "identifier_scheme", "identifier_id"])


# Buying follows the members' records ----------------------------------------------------------------

def test_a_member_that_has_left_cannot_buy_and_one_leaving_tomorrow_still_can(app, team, signed_in):
    leaving = _member(app, "Kirklees Council", joined_on=date(2015, 4, 1))
    staying = _member(app, "Cardiff Council", nation="Wales", joined_on=date(2015, 4, 1))
    buyer, buyer_user = signed_in("buyer", organisation_id=leaving)
    other, other_user = signed_in("buyer", organisation_id=staying)

    # The team records the dates they leave: today (so it left; a member until yesterday) and tomorrow.
    for org_id, name, nation, left in ((leaving, "Kirklees Council", "England", (3, 6, 2024)),
                                       (staying, "Cardiff Council", "Wales", (4, 6, 2024))):
        response = team.submit(f"/team/members/{org_id}/edit", _form(
            name=name, kind="council", membership="full", nation=nation, contracting_authority="yes",
            joined_on=(1, 4, 2015), left_on=left))
        assert response.status_code == 302, _text(response)

    message = "Kirklees Council left the network on 3 June 2024: its buyers can no longer start or publish a competition."
    with app.app_context():
        assert competitions.why_cannot_buy(db.session.get(User, buyer_user["id"])) == message
        assert competitions.why_cannot_buy(db.session.get(User, other_user["id"])) is None
        with pytest.raises(ServiceError) as refused:
            accounts.create_user(email="new@kirklees.example.org", name="Sam Patel", role="buyer",
                                 organisation=db.session.get(Organisation, leaving), actor_label="test")
        assert (refused.value.message, refused.value.field) == (message, "organisation")
        db.session.rollback()

    # No new buyer account for it: it is not offered, and a hand-made form is refused.
    page = _text(team.get("/team/accounts/new-buyer"))
    assert "Cardiff Council" in page and "Kirklees Council" not in page
    response = team.submit("/team/accounts/new-buyer", {"organisation": leaving, "name": "Sam Patel",
                                                        "email": "new@kirklees.example.org"})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "new@kirklees.example.org")) is None

    # Its existing buyer still signs in and sees their pages, told why they cannot start a competition.
    again = buyer.application.test_client()
    assert sign_in(again, buyer_user["email"]).status_code == 302
    dashboard = again.get("/buyer/")
    assert dashboard.status_code == 200 and message in _text(dashboard)
    listing = again.get("/buyer/competitions")
    assert listing.status_code == 200 and message in _text(listing)
    assert "Create a mini-competition" not in _text(listing)
    new = again.get("/buyer/competitions/new")
    assert new.status_code == 403 and message in _text(new)

    # Leaving tomorrow: still a member today.
    listing = other.get("/buyer/competitions")
    assert listing.status_code == 200 and "Create a mini-competition" in _text(listing)
    assert "left the network" not in _text(other.get("/buyer/"))
    assert "Member until 3 June 2024" in _text(team.get("/team/members"))
    created = team.submit("/team/accounts/new-buyer", {"organisation": staying, "name": "Rhian Evans",
                                                       "email": "rhian@cardiff.example.org"})
    assert created.status_code == 302


def test_a_member_that_has_not_joined_yet_cannot_buy(app):
    joining = _member(app, "Wirral Council", joined_on=date(2024, 6, 4))
    with app.app_context():
        reason = accounts.buyer_ineligibility(db.session.get(Organisation, joining))
    assert reason == ("Wirral Council joins the network on 4 June 2024: its buyers cannot start or publish a "
                      "competition before then.")


# The list ----------------------------------------------------------------------------------------

def _many_members(app, count: int, start: int = 0) -> None:
    with app.app_context():
        for n in range(start, start + count):
            db.session.add(Organisation(
                name=f"Member council {n:03d}", kind="council", membership=("full", "associate", "affiliate")[n % 3],
                nation="England", contracting_authority=True, joined_on=date(2015, 4, 1),
                left_on=date(2024, 1, 1) if n % 10 == 0 else None, created_at=clock.now()))
        db.session.commit()


def _list_queries(app, client, url: str = "/team/members") -> int:
    client.get(url)  # anything done once per session (the clock, the session's refresh) happens first
    with count_queries(app) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return queries()


def test_the_members_list_pages_by_name_with_a_count_and_constant_queries(app, team):
    _many_members(app, 5)
    few = _list_queries(app, team)
    _many_members(app, 55, start=5)
    many = _list_queries(app, team)
    assert few == many

    # 60 members and the team's own organisation: 50 on the first page, the rest on the next.
    first = _text(team.get("/team/members"))
    assert "61 organisations" in first
    assert first.count("Member council") == 50 and "Member council 049" in first and "Member council 050" not in first
    next_url = html.unescape(re.search(r'href="([^"]*after=\d+)"', first).group(1))
    second = _text(team.get(next_url))
    assert second.count("Member council") == 10 and "Member council 050" in second and "Member council 059" in second
    assert "Test council" in second
    assert "61 organisations" in second
    previous_url = html.unescape(re.search(r'href="([^"]*before=\d+)"', second).group(1))
    back = _text(team.get(previous_url))
    assert back.count("Member council") == 50 and "Member council 000" in back
    assert "offset" not in next_url.lower()

    # Filters: by tier, and current or left (as of today, 3 June 2024).
    left = _text(team.get("/team/members?status=left"))
    assert "6 organisations" in left and "Left on 1 January 2024" in left
    current_full = _text(team.get("/team/members?status=current&tier=full"))
    full_current = sum(1 for n in range(60) if n % 3 == 0 and n % 10 != 0) + 1  # and the team's own council
    assert f"{full_current} organisations" in current_full
    assert "Member council 000" not in current_full and "Member council 003" in current_full
    assert _list_queries(app, team, "/team/members?status=current&tier=full") == few
    assert team.get("/team/members?after=notanumber&tier=gold").status_code == 200


def test_a_confirmation_is_refused_when_the_members_changed_since_the_preview(app, team):
    _member(app, "Bassetlaw District Council")
    _member(app, "Oldham Council")
    content = "\n".join([HEADER, "Bassetlaw District Council,associate,council,England,,,,,",
                         "Oldham Council,full,council,England,,GB-LAE,OLD,,"])
    preview = _upload(team, content)
    assert "Import 2 members" in _text(preview)
    # Meanwhile a colleague gives Oldham Council that identifier.
    with app.app_context():
        colleague = db.session.scalar(select(User).where(User.role == "dps_admin"))
        rules.update(colleague, db.session.scalar(select(Organisation).where(Organisation.name == "Oldham Council")),
                     identifier_scheme="GB-LAE", identifier_id="OLD")
        db.session.commit()
    before = _audit_count(app)
    refused = team.submit("/team/members/import/confirm", _confirm_fields(preview), page="/team/members/import")
    assert refused.status_code == 400
    shown = _text(refused)
    assert "the members have changed since the file was checked" in shown and "Import 1 member" in shown
    assert _org_named(app, "Bassetlaw District Council").membership == "full" and _audit_count(app) == before
    confirmed = team.submit("/team/members/import/confirm", _confirm_fields(refused), page="/team/members/import")
    assert confirmed.status_code == 302
    assert _org_named(app, "Bassetlaw District Council").membership == "associate"
    assert "0 members added and 1 changed" in _text(team.get("/team/members"))


def test_a_tampered_confirmation_is_a_bad_request(app, team):
    for content in ("not base64 at all!", "", "eJzLSM3JyVcozy/KSQEAGgQEXQ"):
        assert team.submit("/team/members/import/confirm", {"content": content, "fingerprint": "x"},
                           page="/team/members/import").status_code == 400
