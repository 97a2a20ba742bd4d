"""Sealed bids (Directive 2014/24/EU Annex IV, carried into PCR 2015): before the tender deadline
nobody but the bidder can see a bid's content, through any page, download, export or command.

A bid is planted with a distinctive price and a unique marker in its answers, its document's
name and its document's bytes. Then every GET route of the app is requested as every other role,
with every id the test made, and no response (body or headers), command output, email or audit
event may carry the marker or the price. After the deadline and the opening, the declared panel
member downloads the document: the same search finds it, so it would have found a leak.
"""
from __future__ import annotations

import json
import uuid
import warnings
from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import (
    Admission,
    Agreement,
    Allocation,
    Answer,
    Application,
    ApplicationLot,
    AuditEvent,
    Bid,
    BidAnswer,
    BidDocument,
    BudgetLine,
    BudgetYear,
    CallOff,
    Clarification,
    Competition,
    CompetitionDocument,
    Criterion,
    Document,
    Invitation,
    Lot,
    Organisation,
    OutboxMessage,
    PanelMember,
    RenewalRequest,
    User,
)
from tests.conftest import set_clock
from tests.test_bids import (
    World,
    bid_data,
    browser_for,
    open_invitation,
    post_bid,
    published_competition,
)

PRICE = "9,876,543.21"
PRICE_PENCE = 987_654_321
# Every way the price could be written out.
PRICE_FORMS = (PRICE, "9876543.21", str(PRICE_PENCE))

# Tables whose ids fill a route's integer parameters, by the parameter's name.
ID_SOURCES = {
    "competition_id": Competition, "bid_id": Bid, "document_id": Document, "application_id": Application,
    "org_id": Organisation, "organisation_id": Organisation, "supplier_id": Organisation, "buyer_id": Organisation,
    "allocation_id": Allocation, "user_id": User, "lot_id": Lot, "admission_id": Admission,
    "request_id": RenewalRequest, "renewal_id": RenewalRequest, "invitation_id": Invitation,
    "criterion_id": Criterion, "clarification_id": Clarification, "line_id": BudgetLine, "year_id": BudgetYear,
    "call_off_id": CallOff, "agreement_id": Agreement, "answer_id": Answer, "bid_answer_id": BidAnswer,
}
# Every table the test fills: a parameter of a name not listed above gets every id up to the
# largest of these.
ALL_TABLES = tuple({*ID_SOURCES.values(), ApplicationLot, BidDocument, CompetitionDocument, PanelMember})


@dataclass
class Planted:
    world: World
    marker: str
    bid_id: int
    document_id: int
    bidder: dict
    colleague: dict
    panel_member: dict
    other_buyer: dict
    auditor: dict


def _plant(app: Flask, factory) -> Planted:
    world = published_competition(app, factory)
    bidder_supplier, rival = world.suppliers
    marker = uuid.uuid4().hex
    bidder = browser_for(app, bidder_supplier.user)
    open_invitation(bidder, world)
    data = bid_data(world, price=PRICE, quality=f"Our method {marker} in full.", social=f"Social value {marker}.",
                    action="save")
    document = (f"Our plan: {marker}\n".encode(), f"plan-{marker}.txt")
    assert post_bid(bidder, world, data, document=document).status_code == 302
    assert post_bid(bidder, world, {**data, "action": "submit"}).status_code == 302

    # The rival bids too, with content of its own, so lists and counts have more than one bid.
    rival_browser = browser_for(app, rival.user)
    open_invitation(rival_browser, world)
    assert post_bid(rival_browser, world, bid_data(world, action="submit"),
                    document=(b"Rival plan\n", "rival.txt")).status_code == 302

    colleague = factory.user("supplier", organisation_id=bidder_supplier.org)
    panel_member = factory.user("buyer", organisation_id=world.buyer_org)
    other_buyer = factory.user("buyer")
    auditor = factory.user("auditor", organisation_id=factory.organisation(name="Grant Thornton Audit"))
    with app.app_context():
        now = clock.now()
        db.session.add(PanelMember(competition_id=world.competition, user_id=panel_member["id"], declared_at=now,
                                   conflicted=False, declaration="I have no conflict of interest."))
        db.session.commit()
        bid = db.session.scalar(select(Bid).where(Bid.organisation_id == bidder_supplier.org))
        assert bid.state == "submitted" and bid.price_pence == PRICE_PENCE
        document_id = db.session.scalar(select(BidDocument.document_id).where(BidDocument.bid_id == bid.id))
        return Planted(world=world, marker=marker, bid_id=bid.id, document_id=document_id,
                       bidder=bidder_supplier.user, colleague=colleague, panel_member=panel_member,
                       other_buyer=other_buyer, auditor=auditor)


def _ids(app: Flask) -> tuple[dict[str, list[int]], list[int]]:
    with app.app_context():
        by_name = {name: list(db.session.scalars(select(model.id).order_by(model.id)))
                   for name, model in ID_SOURCES.items()}
        largest = max(db.session.scalar(select(func.max(model.id))) or 0 for model in ALL_TABLES)
        # Lots are also addressed by number (/dps/lots/<number>).
        numbers = list(db.session.scalars(select(Lot.number)))
    by_name["number"] = numbers
    return by_name, list(range(1, largest + 1))


def _string_values(name: str, planted: Planted) -> list[str]:
    if name == "section_id":
        return [section.id for section in questionnaire.load("ccin-sq-2020-04").sections]
    # Tokens, formats, kinds: a few plausible values, and the competition's reference.
    return ["x", "csv", "xlsx", "json", "ocds", planted.world.reference, str(planted.world.competition)]


def _urls(app: Flask, planted: Planted) -> list[str]:
    """Every GET route of the app, with its parameters filled in every way the test can."""
    by_name, every_id = _ids(app)
    urls: list[str] = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint == "static":
                continue
            combos: list[dict] = [{}]
            for name in rule.arguments:
                converter = rule._converters[name].__class__.__name__
                if isinstance(rule._converters[name], IntegerConverter):  # the app's int (dps.IdConverter)
                    values: list = sorted(set(by_name.get(name) or every_id))
                elif converter == "PathConverter":
                    values = ["x", planted.world.reference]
                else:
                    values = _string_values(name, planted)
                combos = [{**combo, name: value} for combo in combos for value in values]
            for combo in combos:
                urls.append(url_for(rule.endpoint, **combo))
            if not rule.arguments:
                # Lists and searches: ask for what only the bid contains. The query echoes back
                # half the marker, never the whole; the price digits alone are never shown as money.
                urls.append(url_for(rule.endpoint, q=planted.marker[:16], search=planted.marker[:16]))
                urls.append(url_for(rule.endpoint, q="9876543", format="csv"))
    return urls


def _leaks(response, planted: Planted) -> list[str]:
    body = response.get_data(as_text=True)
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    found = []
    for needle in (planted.marker, *PRICE_FORMS):
        if needle in body or needle in headers:
            found.append(needle)
    return found


def _crawl(app: Flask, browser, planted: Planted) -> tuple[dict[str, list[str]], list[str]]:
    """Request every URL; return {url: what leaked} and the URLs that failed with a server error."""
    leaks: dict[str, list[str]] = {}
    errors: list[str] = []
    for url in _urls(app, planted):
        response = browser.get(url)
        if response.status_code >= 500:
            errors.append(f"{url} -> {response.status_code}")
        found = _leaks(response, planted)
        if found:
            leaks[url] = found
    return leaks, errors


@pytest.fixture
def planted(app, factory) -> Planted:
    # A route that fails must answer with the error page (which is searched too), as in
    # production, rather than stop the crawl.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return _plant(app, factory)


def _browsers(app: Flask, planted: Planted) -> dict[str, object]:
    world = planted.world
    return {
        "panel member of the buying organisation": browser_for(app, planted.panel_member),
        "buyer who created the competition": browser_for(app, world.buyer),
        "buyer of another organisation": browser_for(app, planted.other_buyer),
        "DPS team": browser_for(app, world.team),
        "auditor": browser_for(app, planted.auditor),
        "another invited supplier": browser_for(app, world.suppliers[1].user),
        "anonymous visitor": app.test_client(),
    }


def test_before_the_deadline_no_route_shows_any_bid_content_to_anyone_but_the_bidder(app, planted):
    # The crawl reaches the bid: the bidder's colleague (allowed) finds the marker and the price.
    colleague_leaks, _ = _crawl(app, browser_for(app, planted.colleague), planted)
    seen = {needle for found in colleague_leaks.values() for needle in found}
    assert planted.marker in seen and PRICE in seen, "the crawl never reached the bid's own pages"
    assert any(f"/documents/{planted.document_id}" == url for url in colleague_leaks)

    all_errors: list[str] = []
    for role, browser in _browsers(app, planted).items():
        leaks, errors = _crawl(app, browser, planted)
        assert leaks == {}, f"bid content shown to the {role} before the deadline: {leaks}"
        all_errors += [f"{role}: {e}" for e in errors]
    if all_errors:
        # Not a leak, but a GET that fails is a bug somewhere: say so without hiding the result.
        warnings.warn("GET routes answering with a server error: " + "; ".join(all_errors[:20]), stacklevel=1)


def test_before_the_deadline_the_bid_document_is_not_found_and_the_attempt_is_audited(app, planted):
    for role, browser in _browsers(app, planted).items():
        response = browser.get(f"/documents/{planted.document_id}")
        assert not _leaks(response, planted), role
        if role == "anonymous visitor":
            assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
            continue
        assert response.status_code == 404, role
    with app.app_context():
        refusals = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "bid_content.refused")).all()
        who = {event.actor_user_id for event in refusals if event.data.get("bid_id") == planted.bid_id}
        assert {planted.panel_member["id"], planted.world.buyer["id"], planted.other_buyer["id"],
                planted.world.team["id"], planted.auditor["id"], planted.world.suppliers[1].user["id"]} <= who
        assert all(event.data["sealed"] is True for event in refusals)


def test_no_command_email_or_audit_event_carries_bid_content(app, planted):
    runner = app.test_cli_runner()
    for args in (["users", "list"], ["outbox", "list"], ["audit", "verify"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, (args, result.output)
        for needle in (planted.marker, *PRICE_FORMS):
            assert needle not in result.output, args
    with app.app_context():
        # The audit log is for auditors before the deadline too; emails go through the outbox
        # that administrators list.
        for event in db.session.scalars(select(AuditEvent)):
            dumped = json.dumps(event.data)
            assert not any(needle in dumped for needle in (planted.marker, *PRICE_FORMS)), event.action
        # Nor the bid document's size or hash, which would let a reader confirm a guess at it.
        document = db.session.get(Document, planted.document_id)
        upload = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "document.uploaded",
                                                            AuditEvent.object_id == str(document.id)))
        assert upload.data == {"filename": "bid-document.txt", "sealed": True}
        assert document.sha256 not in json.dumps([e.data for e in db.session.scalars(select(AuditEvent))])
        for message in db.session.scalars(select(OutboxMessage)):
            assert not any(needle in message.subject + message.body for needle in (planted.marker, *PRICE_FORMS))


def test_after_the_deadline_and_the_opening_the_declared_panel_member_can_read_the_bid(app, planted):
    """The same search finds the content once it may be read: so it would have found a leak."""
    panel = browser_for(app, planted.panel_member)
    outsider = browser_for(app, planted.other_buyer)
    set_clock(app, "2024-07-05T12:00:01")
    # Past the deadline but not yet opened: still sealed.
    assert panel.get(f"/documents/{planted.document_id}").status_code == 404

    with app.app_context():
        competition = db.session.get(Competition, planted.world.competition)
        competition.opened_at = clock.now()
        competition.opened_by_id = planted.world.buyer["id"]
        db.session.commit()
    response = panel.get(f"/documents/{planted.document_id}")
    assert response.status_code == 200
    assert planted.marker in _leaks(response, planted)
    assert f"plan-{planted.marker}.txt" in response.headers["Content-Disposition"]
    # Another organisation's buyer is never on the panel: still not found.
    assert outsider.get(f"/documents/{planted.document_id}").status_code == 404


def test_a_panel_member_who_declared_a_conflict_never_reads_the_bid(app, planted):
    set_clock(app, "2024-07-06T09:00")
    with app.app_context():
        member = db.session.scalar(select(PanelMember).where(PanelMember.user_id == planted.panel_member["id"]))
        member.conflicted = True
        competition = db.session.get(Competition, planted.world.competition)
        competition.opened_at = clock.now()
        competition.opened_by_id = planted.world.buyer["id"]
        db.session.commit()
    assert browser_for(app, planted.panel_member).get(f"/documents/{planted.document_id}").status_code == 404


def _export_text(app: Flask, name: str) -> str:
    """An export as text, as a user would open it (an XLSX workbook is a zip of XML parts)."""
    import io
    import zipfile

    from dps import exports

    with app.test_request_context():
        export = exports.get(name)
        buffer = io.BytesIO()
        export.write(exports.Filters(), buffer, exports.no_progress)
    data = buffer.getvalue()
    if export.extension == "xlsx":
        with zipfile.ZipFile(io.BytesIO(data)) as workbook:
            return "\n".join(workbook.read(part).decode("utf-8") for part in workbook.namelist())
    return data.decode("utf-8-sig")


def _export_names() -> list[str]:
    from dps import exports

    return [export.name for export in exports.all_exports()]


def test_no_export_carries_bid_content_before_the_bids_are_opened_and_after_it_ocds_does(app, planted):
    names = _export_names()
    assert {"ocds", "records", "audit", "contracts", "xlsx"} <= set(names)
    for name in names:
        text = _export_text(app, name)
        assert not any(needle in text for needle in (planted.marker, *PRICE_FORMS)), name
    # The public endpoints too, whatever the dates asked for.
    anonymous = app.test_client()
    for path in ("/ocds/releases.json", "/ocds/records.json", "/ocds/releases.json?from=2024-01-01&to=2030-12-31"):
        response = anonymous.get(path)
        assert response.status_code == 200, path
        assert not _leaks(response, planted), path

    # After the deadline, still nothing until the buyer opens the bids (the DPS team and auditors
    # read bid content only then, on every page and in every export).
    set_clock(app, "2024-07-05T12:00:01")
    for name in names:
        text = _export_text(app, name)
        assert not any(needle in text for needle in (planted.marker, *PRICE_FORMS)), name
    # Once opened, OCDS bid details carry the prices: the same search finds the price, so it
    # would have found it before.
    with app.app_context():
        competition = db.session.get(Competition, planted.world.competition)
        competition.opened_at = clock.now()
        competition.opened_by_id = planted.world.buyer["id"]
        db.session.commit()
    assert any(form in _export_text(app, "ocds") for form in PRICE_FORMS)
