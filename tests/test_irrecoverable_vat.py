"""Irrecoverable VAT: the buyer records it when confirming the award; the Transparency Code's
contracts report publishes it. Driven through the evaluation page as the buyer would."""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dps.exports import Filters, get
from dps.extensions import db
from dps.models import Allocation, Award, CallOff, User
from dps.services import ServiceError
from dps.services import evaluation as rules
from tests.conftest import set_clock
from tests.competing import events, post
from tests.test_evaluation import (  # noqa: F401  (world is a fixture)
    SCORES,
    competition_with_bids,
    open_and_declare,
    score_all,
    world,
)


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def field_error(page: str, field_id: str) -> str:
    """The GOV.UK error message shown with a field (its id-error element)."""
    match = re.search(rf'id="{field_id}-error"[^>]*>(.*?)</p>', page, re.S)
    assert match, f"no error shown with {field_id}"
    return re.sub(r"<[^>]+>", "", match.group(1)).replace("Error:", "").strip()


@pytest.fixture
def awarded(app, world) -> dict:
    """An award of £10,000 to Brightwater, decided with a standstill that has now ended."""
    alice = world["alice"]
    c = competition_with_bids(app, world)
    open_and_declare(app, world, c)
    score_all(alice, c, SCORES)
    score_all(alice, c, SCORES, action="moderate")
    response = post(alice, f"{c['base']}/award", c["page"],
                    {"bid_id": c["bids"]["Brightwater Research Ltd"], "value": "10,000"})
    assert response.status_code == 302, text(response)
    with app.app_context():
        ends = db.session.scalar(select(Award)).standstill_ends_at
    set_clock(app, ends + timedelta(hours=1))
    return c


def test_the_confirm_form_asks_for_irrecoverable_vat_with_a_hint_and_0_by_default(app, world, awarded):
    page = text(world["alice"].get(awarded["page"]))
    assert "Irrecoverable VAT, if any, in pounds" in page
    assert "VAT your organisation cannot reclaim" in page and "usually 0" in page
    field = re.search(r'<input[^>]*name="irrecoverable_vat"[^>]*>', page)
    assert field and 'value="0"' in field.group(0)


WRONG = [
    ("10,000.01", "Irrecoverable VAT cannot be more than the call-off’s value, £10,000.00"),
    ("-1", "Enter an amount of 0 or more"),
    ("twelve", "Enter an amount in pounds"),
    ("1.234", "no more than 2 decimal places"),
]


def test_a_wrong_amount_is_refused_next_to_the_field_and_nothing_is_lost(app, world, awarded):
    alice = world["alice"]
    for typed, message in WRONG:
        refused = post(alice, f"{awarded['base']}/award/confirm", awarded["page"],
                       {"irrecoverable_vat": typed, "starts_on": ["1", "8", "2024"], "ends_on": ["31", "3", "2025"]})
        assert refused.status_code == 400, typed
        page = text(refused)
        assert message in field_error(page, "irrecoverable_vat")
        # What was typed is still there, the amount and the dates.
        assert f'value="{typed}"' in page
        assert 'value="1"' in page and 'value="8"' in page and 'value="2025"' in page
    with app.app_context():
        assert db.session.scalar(select(func.count(CallOff.id))) == 0
        assert db.session.scalar(select(Award)).confirmed_at is None
        assert db.session.get(Allocation, world["allocation"]).committed_pence == 0
    assert events(app, "call_off.created") == []


def test_irrecoverable_vat_is_kept_audited_and_published(app, world, awarded):
    alice = world["alice"]
    confirmed = post(alice, f"{awarded['base']}/award/confirm", awarded["page"], {"irrecoverable_vat": "£1,666.67"})
    assert confirmed.status_code == 302, text(confirmed)
    with app.app_context():
        call_off = db.session.scalar(select(CallOff))
        assert (call_off.value_pence, call_off.irrecoverable_vat_pence) == (10_000_00, 1_666_67)
        reference = call_off.reference
        committed = db.session.get(Allocation, world["allocation"]).committed_pence
    created = events(app, "call_off.created")
    assert len(created) == 1 and created[0].data["irrecoverable_vat_pence"] == 1_666_67
    # The quarter's Transparency Code contracts report and the contracts register show it.
    out = io.BytesIO()
    with app.app_context():
        get("transparency-contracts").write(Filters(), out, lambda _: None)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8-sig"), newline="")))
    assert [(r["Reference"], r["Total value (including VAT)"], r["Irrecoverable VAT"]) for r in rows] == [
        (reference, "10000.00", "1666.67")]
    out = io.BytesIO()
    with app.app_context():
        get("contracts").write(Filters(), out, lambda _: None)
    register = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8-sig"), newline="")))
    assert [r["Irrecoverable VAT"] for r in register] == ["1666.67"]
    assert sum(int(r["Value (including VAT)"].replace(".", "")) for r in register) == committed


def test_left_blank_it_is_0(app, world, awarded):
    confirmed = post(world["alice"], f"{awarded['base']}/award/confirm", awarded["page"], {"irrecoverable_vat": ""})
    assert confirmed.status_code == 302, text(confirmed)
    with app.app_context():
        assert db.session.scalar(select(CallOff)).irrecoverable_vat_pence == 0
    assert events(app, "call_off.created")[0].data["irrecoverable_vat_pence"] == 0


def test_the_rule_at_its_boundaries(app, world, awarded):
    """From £0 up to the whole value (the database's CHECK allows no more); a penny outside is refused
    by the service, naming the field, before anything is written."""
    with app.app_context():
        award = db.session.scalar(select(Award))
        alice = db.session.get(User, world["alice_user"]["id"])
        with pytest.raises(ServiceError) as refused:
            rules.confirm_award(award, alice, irrecoverable_vat_pence=10_000_01)
        assert refused.value.field == "irrecoverable_vat"
        db.session.rollback()
        with pytest.raises(ServiceError) as refused:
            rules.confirm_award(award, alice, irrecoverable_vat_pence=-1)
        assert refused.value.field == "irrecoverable_vat"
        db.session.rollback()
        call_off = rules.confirm_award(db.session.scalar(select(Award)), alice, irrecoverable_vat_pence=10_000_00)
        db.session.commit()
        assert db.session.get(CallOff, call_off.id).irrecoverable_vat_pence == 10_000_00


def test_without_standstill_it_is_asked_with_the_award_and_checked_there(app, world):
    alice = world["alice"]
    c = competition_with_bids(app, world, standstill=False)
    open_and_declare(app, world, c)
    score_all(alice, c, SCORES)
    score_all(alice, c, SCORES, action="moderate")
    brightwater = c["bids"]["Brightwater Research Ltd"]
    assert "Irrecoverable VAT, if any, in pounds" in text(alice.get(c["page"]))

    response = post(alice, f"{c['base']}/award", c["page"],
                    {"bid_id": brightwater, "value": "10,000", "irrecoverable_vat": "10,000.01"})
    assert response.status_code == 400
    assert field_error(text(response), "irrecoverable_vat").startswith("Irrecoverable VAT cannot be more than")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Award)) == 0

    response = post(alice, f"{c['base']}/award", c["page"],
                    {"bid_id": brightwater, "value": "10,000", "irrecoverable_vat": "1,666.67"})
    assert response.status_code == 302, text(response)
    with app.app_context():
        assert db.session.scalar(select(CallOff.irrecoverable_vat_pence)) == 1_666_67
