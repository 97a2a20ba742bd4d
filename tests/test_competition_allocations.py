"""Creating a competition offers only the allocations that can pay for it now (issue 16 item 13):
the buyer's own, of the financial year containing today, with something left, each labelled with
what is left; a past year's allocation posted by hand is refused by the field."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from dps.extensions import db
from dps.models import Allocation, Competition
from tests.applying import make_dps
from tests.test_competitions import allocation, form_data, text


@pytest.fixture
def dps(app):
    return make_dps(app)


@pytest.fixture
def buyer(app, factory, signed_in, dps):
    """A buyer (the clock is 3 June 2024: 2024/25) with allocations of this year and of past years."""
    council = factory.organisation(name="Rochdale Borough Council")
    browser, user = signed_in("buyer", organisation_id=council, name="Priya Shah", email="priya@rochdale.example.org")
    user["lab"] = allocation(app, council, project="Community wealth building lab", amount_pence=12_500_00)
    user["spent"] = allocation(app, council, project="Spent prototype", programme="Policy Prototypes",
                               amount_pence=2_000_00)
    user["last_year"] = allocation(app, council, project="Food plan", start_year=2023)
    user["old"] = allocation(app, council, project="Anchor institutions review", start_year=2022)
    with app.app_context():
        db.session.get(Allocation, user["spent"]).committed_pence = 2_000_00
        db.session.commit()
    return browser, user


def _offered(page: str) -> list[str]:
    select = re.search(r'<select[^>]*name="allocation".*?</select>', page, re.S)
    assert select, "no allocation select on the page"
    return [label.strip() for label in re.findall(r"<option[^>]*>([^<]*)</option>", select.group(0))]


def test_the_page_offers_this_years_allocations_with_what_is_left(app, buyer, dps):
    browser, user = buyer
    page = text(browser.get("/buyer/competitions/new"))
    assert _offered(page) == ["Choose an allocation",
                              "Community wealth building lab, Policy Labs 2024/25: £12,500.00 left"]
    # Last year's, the year before's and one with nothing left are not offered.
    assert "Food plan" not in page and "Anchor institutions review" not in page and "Spent prototype" not in page
    assert "Only your allocations of this financial year with money left are shown" in page


@pytest.mark.parametrize("which, message", [
    ("old", "Anchor institutions review belongs to 2022/23, which has ended: choose an allocation of 2024/25"),
    ("last_year", "Food plan belongs to 2023/24, which has ended: choose an allocation of 2024/25"),
    ("spent", "Nothing is left of Spent prototype: all £2,000.00 is committed to call-offs. "
              "Choose another allocation"),
])
def test_an_allocation_that_cannot_pay_now_is_refused_by_the_field(app, buyer, dps, which, message):
    browser, user = buyer
    refused = browser.submit("/buyer/competitions/new",
                             form_data(dps["lot1"], user[which], panel=[str(user["id"])]),
                             page="/buyer/competitions/new")
    assert refused.status_code == 400
    body = text(refused)
    assert message in body
    assert 'href="#allocation"' in body and 'id="allocation-error"' in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Competition)) == 0


def test_this_years_allocation_is_accepted(app, buyer, dps):
    browser, user = buyer
    created = browser.submit("/buyer/competitions/new",
                             form_data(dps["lot1"], user["lab"], panel=[str(user["id"])]),
                             page="/buyer/competitions/new")
    assert created.status_code == 302, text(created)
    with app.app_context():
        assert db.session.scalars(select(Competition.allocation_id)).all() == [user["lab"]]
