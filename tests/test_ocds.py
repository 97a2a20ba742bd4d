"""OCDS 1.1.5 exports (DESIGN 6): the merged schema, offline validation, and the demo data's
release and record packages as the DPS team and auditors take them."""
from __future__ import annotations

import io
import json
import socket
import urllib.request
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from dps import clock
from dps.exports import REGISTRY, ExportInvalid, Filters, get
from dps.exports import ocds, ocds_validate
from dps.extensions import db
from dps.models import Admission, Agreement, Allocation, Bid, CallOff, Competition, Invoice, Lot, Organisation, User
from tests.conftest import demo_application, set_clock

DEMO_CLOCK = "2024-11-18T09:30"  # where `make run` puts the demo (Makefile DEMO_CLOCK)
PASSWORD = "copper kettle harbour lantern"


@pytest.fixture(scope="module")
def demo_app(database_template, tmp_path_factory):
    """One demo load for the whole module, at the demo's clock. Tests that move the clock put it back."""
    with demo_application(database_template, tmp_path_factory, at=DEMO_CLOCK, password=PASSWORD) as application:
        yield application


def export(app, kind: str = "releases", filters: Filters = Filters(), public: bool = False) -> dict:
    with app.app_context():
        out = io.BytesIO()
        ocds.write_package(kind, filters, out, public=public)
        db.session.rollback()
    return json.loads(out.getvalue())


def pence(amount: float) -> int:
    as_pence = round(amount * 100)
    assert abs(amount * 100 - as_pence) < 1e-6, f"{amount} is not a whole number of pence"
    return as_pence


def validate_whole(package: dict, contents: str) -> None:
    """The whole package at once against the shipped package schema (the export itself checks it
    piece by piece while streaming): a second opinion, with every error rather than the first."""
    validator = ocds_validate._checker().packages[contents]
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(package)]
    assert errors == []


# The schema and the validator ----------------------------------------------------------------------

def test_merge_patch_follows_rfc_7386():
    merge = ocds_validate.merge_patch
    # Examples from RFC 7386, appendix A.
    assert merge({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge({"a": "b"}, {"a": None}) == {}
    assert merge({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    original = {"a": {"b": 1}}
    merge(original, {"a": {"b": 2}})
    assert original == {"a": {"b": 1}}


def test_the_merged_schema_has_the_three_extensions_and_keeps_the_core():
    schema = ocds_validate.merged_release_schema()
    assert schema["id"] == ocds_validate.RELEASE_SCHEMA_ID
    definitions = schema["definitions"]
    tender = definitions["Tender"]["properties"]
    assert {"lots", "lotDetails", "techniques", "competitive"} <= set(tender)  # lots, techniques
    assert {"title", "status", "tenderPeriod", "awardCriteria"} <= set(tender)  # core, kept
    assert "bids" in schema["properties"] and "relatedBid" in definitions["Award"]["properties"]  # bids
    assert definitions["DynamicPurchasingSystem"]["properties"]["type"]["enum"] == ["open", "closed", None]
    assert "relatedLots" in definitions["Award"]["properties"] and "id" in definitions["Award"]["properties"]


def _release(**changes) -> dict:
    release = {"ocid": "ocds-test-1", "id": "ocds-test-1-tender-1", "date": "2024-06-03T09:00:00+01:00",
               "tag": ["tender"], "initiationType": "tender", "tender": {"id": "T-1"}}
    release.update(changes)
    return release


def test_date_times_are_checked_by_the_format_checker():
    ocds_validate.validate_release(_release())
    for bad in ("2024-06-31T09:00:00+01:00", "3 June 2024", "2024-06-03T09:00:00", "2024-06-03"):
        with pytest.raises(ExportInvalid) as caught:
            ocds_validate.validate_release(_release(date=bad), "releases[7]")
        assert caught.value.message.startswith("releases[7].date: ")
        assert "is not a 'date-time'" in caught.value.message
        assert "ocds-test-1" in caught.value.message


def test_a_wrong_type_and_an_undefined_field_are_named_by_their_path():
    awards = [{"id": "a-1", "value": {"amount": "9500.00", "currency": "GBP"}}]
    with pytest.raises(ExportInvalid) as caught:
        ocds_validate.validate_release(_release(awards=awards), "releases[3]")
    assert caught.value.message.startswith("releases[3].awards[0].value.amount: '9500.00' is not of type 'number'")
    awards = [{"id": "a-1", "value": {"amount": 9500, "currency": "GBP"}, "supplierRating": 5}]
    with pytest.raises(ExportInvalid) as caught:
        ocds_validate.validate_release(_release(awards=awards), "releases[3]")
    assert caught.value.message.startswith("releases[3].awards[0].supplierRating: is not a field")
    # Language variants are defined by the schema's patternProperties, so they are allowed.
    ocds_validate.validate_release(_release(tender={"id": "T-1", "title_cy": "Teitl"}))
    # Codes of open codelists come from the lists we ship.
    parties = [{"id": "org-1", "name": "Oldham Council", "roles": ["buyer", "overseer"]}]
    with pytest.raises(ExportInvalid) as caught:
        ocds_validate.validate_release(_release(parties=parties))
    assert caught.value.message.startswith("release.parties[0].roles: 'overseer' is not a code of the partyRole.csv")


def test_unique_items_are_checked_in_linear_time_with_json_equality():
    award = {"id": "a-1", "value": {"amount": 9500, "currency": "GBP"}}
    ocds_validate.validate_release(_release(awards=[award, {**award, "id": "a-2"}]))
    same = {"id": "a-1", "value": {"amount": 9500.0, "currency": "GBP"}}  # 9500 and 9500.0 are equal
    with pytest.raises(ExportInvalid) as caught:
        ocds_validate.validate_release(_release(awards=[award, same]), "releases[0]")
    assert caught.value.message.startswith("releases[0].awards: has non-unique elements (item 1 repeats item 0)")


def test_validation_never_goes_to_the_network(demo_app, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    ocds_validate._checker.cache_clear()  # build the schema and registry again, with the network gone
    try:
        package = export(demo_app, "records")
        assert package["records"]
        validate_whole(package, "records")
        # A reference to anything not shipped is refused, not fetched.
        elsewhere = ocds_validate._checker().release.evolve(schema={"$ref": "https://example.org/schema.json"})
        with pytest.raises(Exception) as caught:
            elsewhere.validate({})
        assert "example.org/schema.json" in str(caught.value)
    finally:
        ocds_validate._checker.cache_clear()
    assert attempts == []


def test_releases_are_checked_by_validators_built_once_and_errors_worked_out_only_on_failure(demo_app, monkeypatch):
    ocds_validate._checker()  # built once per process, before any export

    def refuse(*args, **kwargs):
        raise AssertionError("not on the way of a valid export")

    monkeypatch.setattr(ocds_validate.fastjsonschema, "compile", refuse)
    monkeypatch.setattr(ocds_validate, "best_match", refuse)
    for kind in ("releases", "records"):
        assert export(demo_app, kind)[kind]


def test_the_compiled_validator_refuses_what_jsonschema_refuses(demo_app):
    checker = ocds_validate._checker()

    def compiled_accepts(release: dict) -> bool:
        try:
            checker.release_compiled(release)
        except ocds_validate.fastjsonschema.JsonSchemaException:
            return False
        return True

    releases = export(demo_app, "releases")["releases"]
    assert all(compiled_accepts(r) and checker.release.is_valid(r) for r in releases)
    award = {"id": "a-1", "value": {"amount": 9500, "currency": "GBP"}}
    broken = [
        _release(date="2024-06-31T09:00:00+01:00"),            # no 31 June
        _release(date="2024-06-03T09:00:00"),                  # no offset
        _release(tag=["tender", "auction"]),                   # not a release tag
        _release(tender={"id": "T-1", "value": {"amount": "9500.00"}}),
        _release(awards=[award, {**award, "value": {"amount": 9500.0, "currency": "GBP"}}]),
        {key: value for key, value in _release().items() if key != "ocid"},
    ]
    for release in broken:
        assert not checker.release.is_valid(release) and not compiled_accepts(release), release


# The demo data ------------------------------------------------------------------------------------

def test_both_exports_are_registered_as_json():
    assert get("ocds") is REGISTRY["ocds"] and get("records") is REGISTRY["records"]
    for name, title in (("ocds", "OCDS release package"), ("records", "OCDS record package")):
        assert (REGISTRY[name].title, REGISTRY[name].extension, REGISTRY[name].media_type) == (
            title, "json", "application/json")


@pytest.mark.parametrize("public", [False, True])
def test_the_demo_release_package_validates_whole_with_the_extensions_in_use(demo_app, public):
    package = export(demo_app, "releases", public=public)
    validate_whole(package, "releases")
    assert package["version"] == "1.1" and len(package["extensions"]) == 3
    for index, release in enumerate(package["releases"]):
        ocds_validate.validate_release(release, f"releases[{index}]")  # no undefined field anywhere
    ids = [r["id"] for r in package["releases"]]
    assert len(ids) == len(set(ids))
    dps_tender = next(r for r in package["releases"] if r["tag"] == ["tender"] and "CCIN-DPS" in r["ocid"])
    techniques = dps_tender["tender"]["techniques"]
    assert techniques == {"hasFrameworkAgreement": False, "hasDynamicPurchasingSystem": True,
                          "dynamicPurchasingSystem": {"type": "open"}}
    assert [lot["id"] for lot in dps_tender["tender"]["lots"]] == ["lot-1", "lot-2", "lot-3"]
    assert dps_tender["tender"]["status"] == "active"  # 18 November 2024 is inside the DPS period
    assert any(r.get("bids", {}).get("details") for r in package["releases"])
    # Tags come from the closed codelist; the schema checked that, this checks each kind occurs.
    tags = {t for r in package["releases"] for t in r["tag"]}
    assert {"tender", "tenderUpdate", "tenderCancellation", "award", "awardUpdate", "contract",
            "implementation"} <= tags


def test_the_demo_record_package_validates_and_compiles_each_process(demo_app):
    package = export(demo_app, "records")
    validate_whole(package, "records")
    with demo_app.app_context():
        # A DPS process for each published agreement, and one for each published competition of one.
        agreements = db.session.scalar(select(func.count()).select_from(Agreement)
                                       .where(Agreement.published_at.is_not(None)))
        published = db.session.scalar(select(func.count()).select_from(Competition)
                                      .join(Lot, Lot.id == Competition.lot_id)
                                      .join(Agreement, Agreement.id == Lot.agreement_id)
                                      .where(Competition.published_at.is_not(None),
                                             Agreement.published_at.is_not(None)))
    assert agreements >= 1 and len(package["records"]) == agreements + published
    for record in package["records"]:
        dates = [r["date"] for r in record["releases"]]
        moments = [clock.parse_london(d) for d in dates]
        assert moments == sorted(moments), record["ocid"]
        compiled = record["compiledRelease"]
        assert compiled["tag"] == ["compiled"] and compiled["ocid"] == record["ocid"]
        assert compiled["date"] == dates[-1]
        ocds_validate.validate_release(compiled)


def test_every_mini_competition_is_its_own_ocid_linked_to_the_dps(demo_app):
    package = export(demo_app, "releases")
    with demo_app.app_context():
        agreements = {a.id: a for a in db.session.scalars(select(Agreement).where(Agreement.published_at.is_not(None)))}
        dps_ocids = {f"ocds-ccindps-{a.reference}" for a in agreements.values()}
        # Each competition with the agreement it is run under (None: on a draft agreement).
        competitions = [(ref, at, agreements.get(agreement_id)) for ref, at, agreement_id in db.session.execute(
            select(Competition.reference, Competition.published_at, Lot.agreement_id)
            .join(Lot, Lot.id == Competition.lot_id))]
    by_ocid: dict[str, list[dict]] = {}
    for release in package["releases"]:
        by_ocid.setdefault(release["ocid"], []).append(release)
    assert dps_ocids and dps_ocids <= set(by_ocid)
    published = [(ref, agreement) for ref, at, agreement in competitions if at is not None and agreement is not None]
    drafts = [ref for ref, at, agreement in competitions if at is None or agreement is None]
    assert drafts, "the demo has a draft competition"
    assert set(by_ocid) == dps_ocids | {f"ocds-ccindps-{ref}" for ref, _ in published}
    for ref, agreement in published:
        for release in by_ocid[f"ocds-ccindps-{ref}"]:
            assert release["relatedProcesses"] == [{
                "id": "1", "relationship": ["framework"], "title": agreement.title, "scheme": "ocid",
                "identifier": f"ocds-ccindps-{agreement.reference}"}], release["id"]
            assert release["tender"]["id"] == ref
    text = json.dumps(package)
    for ref in drafts:
        assert ref not in text


def test_amounts_agree_with_the_budget_and_invoices(demo_app):
    package = export(demo_app, "records")
    compiled = {r["ocid"]: r["compiledRelease"] for r in package["records"]}
    contracts = [c for release in compiled.values() for c in release.get("contracts", [])]
    with demo_app.app_context():
        committed = db.session.scalar(select(func.sum(Allocation.committed_pence)))
        call_offs = {c.reference: c.value_pence for c in db.session.scalars(select(CallOff))}
        invoices = {}
        for invoice in db.session.scalars(select(Invoice)):
            invoices.setdefault(invoice.call_off.reference, {})[f"invoice-{invoice.id}"] = (
                invoice.amount_pence, invoice.paid_on.isoformat())
    assert committed > 0 and len(contracts) == len(call_offs) >= 5
    assert sum(pence(c["value"]["amount"]) for c in contracts) == committed == sum(call_offs.values())
    for contract in contracts:
        assert pence(contract["value"]["amount"]) == call_offs[contract["id"]]
        transactions = contract.get("implementation", {}).get("transactions", [])
        assert {t["id"]: (pence(t["value"]["amount"]), t["date"][:10]) for t in transactions} == \
            invoices.get(contract["id"], {})


def test_admissions_are_awards_of_the_dps_and_a_suspension_an_amendment(demo_app):
    package = export(demo_app, "records")
    with demo_app.app_context():
        agreement = db.session.scalar(select(Agreement).where(Agreement.published_at.is_not(None))
                                      .order_by(Agreement.id))
        admissions = db.session.execute(select(Admission.id, Admission.status, Lot.number)
                                        .join(Lot, Lot.id == Admission.lot_id)
                                        .where(Lot.agreement_id == agreement.id)).all()
    # The first published agreement's DPS process comes first; its awards are its admissions.
    dps = package["records"][0]
    assert dps["ocid"] == f"ocds-ccindps-{agreement.reference}"
    awards = {a["id"]: a for a in dps["compiledRelease"]["awards"]}
    assert admissions and set(awards) == {f"admission-{a.id}" for a in admissions}
    for admission in admissions:
        award = awards[f"admission-{admission.id}"]
        assert award["relatedLots"] == [f"lot-{admission.number}"]
        if admission.status == "suspended":
            assert award["status"] == "active"
            [amendment] = award["amendments"]
            assert amendment["description"].startswith(f"Suspended from Lot {admission.number}")
            assert "renewed self-declaration" in amendment["rationale"]
        else:
            assert award["status"] == "active" and "amendments" not in award


def test_bids_appear_at_the_tender_deadline_and_not_a_second_before(demo_app):
    with demo_app.app_context():
        # The demo's "closed" competition: deadline passed, bids in, not yet opened.
        competition = db.session.scalars(select(Competition).where(Competition.opened_at.is_(None),
                                                                   Competition.published_at.is_not(None),
                                                                   Competition.cancelled_at.is_(None))
                                         .order_by(Competition.tender_deadline)).first()
        ocid, deadline = f"ocds-ccindps-{competition.reference}", competition.tender_deadline
        submitted = db.session.scalar(select(func.count()).select_from(Bid).where(
            Bid.competition_id == competition.id, Bid.state == "submitted"))
    assert submitted >= 2 and deadline < clock.parse_london(DEMO_CLOCK)
    try:
        set_clock(demo_app, deadline - timedelta(seconds=1))
        for kind in ("releases", "records"):
            text = json.dumps(export(demo_app, kind))
            assert ocid in text  # the team's export shows the published tender...
            releases = [r for r in export(demo_app, "releases")["releases"] if r["ocid"] == ocid]
            assert [r["tag"] for r in releases] == [["tender"]]  # ...and nothing of its bids
            assert all("bids" not in r for r in releases)
        set_clock(demo_app, deadline)
        releases = [r for r in export(demo_app, "releases")["releases"] if r["ocid"] == ocid]
        assert [r["tag"] for r in releases] == [["tender"], ["tenderUpdate"]]
        bids = releases[1]["bids"]
        assert bids["statistics"][0]["measure"] == "bids" and bids["statistics"][0]["value"] == submitted
        # Who bid, but not their prices: the DPS team and auditors read prices only once the buyer
        # has opened the bids, as on every page (dps.services.sealed.may_read).
        assert len(bids["details"]) == submitted and not any("value" in d for d in bids["details"])
        with demo_app.app_context():
            db.session.get(Competition, competition.id).opened_at = deadline + timedelta(hours=1)
            db.session.commit()
        releases = [r for r in export(demo_app, "releases")["releases"] if r["ocid"] == ocid]
        assert all("value" in d for d in releases[1]["bids"]["details"])
    finally:
        with demo_app.app_context():
            db.session.get(Competition, competition.id).opened_at = None
            db.session.commit()
        set_clock(demo_app, DEMO_CLOCK)


def test_a_broken_release_fails_the_export_naming_the_field(demo_app, monkeypatch):
    monkeypatch.setattr(ocds, "pounds", lambda p: f"{p / 100:.2f}")
    with pytest.raises(ExportInvalid) as caught:
        export(demo_app, "releases")
    message = caught.value.message
    assert message.startswith("releases[") and ".value.amount: '" in message and "is not of type 'number'" in message
    assert "ocid 'ocds-ccindps-CCIN-MC-" in message
    monkeypatch.undo()

    real = ocds._dps_tender
    monkeypatch.setattr(ocds, "_dps_tender", lambda agreement, status: {**real(agreement, status), "colour": "blue"})
    with pytest.raises(ExportInvalid) as caught:
        export(demo_app, "records")
    assert caught.value.message.startswith("records[0].releases[0].tender.colour: is not a field")


def test_a_record_holds_the_history_up_to_the_end_of_the_period(demo_app):
    everything = export(demo_app, "records")
    awarded = next(r for r in everything["records"] if any(x["tag"] == ["contract"] for x in r["releases"]))
    tender, contract = awarded["releases"][0], next(x for x in awarded["releases"] if x["tag"] == ["contract"])
    contract_day = clock.parse_london(contract["date"]).astimezone(clock.LONDON).date()
    # A period holding the contract but not the tender: the tender is still in the record.
    period = Filters(contract_day, contract_day)
    [record] = [r for r in export(demo_app, "records", period)["records"] if r["ocid"] == awarded["ocid"]]
    assert record["releases"][0]["id"] == tender["id"]
    assert all(clock.parse_london(x["date"]) < period.end_utc for x in record["releases"])
    assert record["compiledRelease"]["date"] == record["releases"][-1]["date"]
    # The release package of the same period has the contract but not the tender.
    ids = {r["id"] for r in export(demo_app, "releases", period)["releases"]}
    assert contract["id"] in ids and tender["id"] not in ids
    # A period before anything happened has nothing to hand out.
    with pytest.raises(ocds.NothingToExport):
        export(demo_app, "releases", Filters(None, date(2020, 3, 31)))


def test_the_team_export_holds_no_contact_details_either(demo_app):
    text = json.dumps(export(demo_app, "records"), ensure_ascii=False)
    with demo_app.app_context():
        emails = db.session.scalars(select(User.email)).all()
        contacts = db.session.execute(select(Organisation.contact_email, Organisation.contact_phone)).all()
        people = db.session.scalars(select(User.name)).all()
        sole_traders = db.session.scalars(select(Organisation.name).where(Organisation.legal_form == "sole_trader")).all()
    assert [e for e in (*emails, *(v for row in contacts for v in row if v)) if e in text] == []
    assert "contactPoint" not in text
    # People's names appear only as a sole trader's business name (auditors need the supplier).
    named = [name for name in people if name in text]
    assert named and all(any(name in business for business in sole_traders) for name in named), named


# Changes of standing recorded by the service (a fresh database: runs after the demo tests) ----------

def test_each_logged_change_of_standing_is_an_amendment_and_removal_cancels_the_award(app, factory):
    from dps.services import standing
    from tests.applying import make_dps
    from tests.test_competitions import admit

    dps = make_dps(app)
    supplier = admit(app, factory, dps["agreement"], dps["lot1"], "Brightwater Research Ltd", "amara@brightwater.example.org")
    other = admit(app, factory, dps["agreement"], dps["lot2"], "Prototype Works Ltd", "pat@prototype.example.org")
    team = factory.user("dps_admin")
    steps = [("2024-06-04T10:00", standing.suspend, supplier, "Insurance certificate expired."),
             ("2024-06-05T10:00", standing.reinstate, supplier, "New certificate received."),
             ("2024-06-06T10:00", standing.remove, other, "Convicted of a mandatory exclusion offence.")]
    for moment, change, who, reason in steps:
        set_clock(app, moment)
        with app.app_context():
            admission = db.session.scalar(select(Admission).where(Admission.organisation_id == who["organisation_id"]))
            change(admission, db.session.get(User, team["id"]), reason)
            db.session.commit()
    [record] = [r for r in export(app, "records")["records"]]
    updates = [r for r in record["releases"] if r["tag"] == ["awardUpdate"]]
    assert [u["awards"][0]["amendments"][0]["description"].split(" Lot")[0] for u in updates] == [
        "Suspended from", "Reinstated on", "Removed from"]
    assert [u["date"] for u in updates] == ["2024-06-04T10:00:00+01:00", "2024-06-05T10:00:00+01:00",
                                             "2024-06-06T10:00:00+01:00"]
    awards = {a["suppliers"][0]["name"]: a for a in record["compiledRelease"]["awards"]}
    assert awards["Brightwater Research Ltd"]["status"] == "active"
    assert [a["rationale"] for a in awards["Brightwater Research Ltd"]["amendments"]] == [
        "Insurance certificate expired.", "New certificate received."]
    assert awards["Prototype Works Ltd"]["status"] == "cancelled"
    # The public endpoint says what changed, not why.
    public = export(app, "records", public=True)
    assert "Convicted" not in json.dumps(public) and "Removed from Lot 2" in json.dumps(public)
