"""Changing a draft mini-competition, driven through the pages as its buyer: the edit page is the
new page's form filled in with what is saved, checked by the same rules (each refused at its
boundary, by its field, with nothing saved); specification documents added and removed; every
change audited; nothing changes once it is published or cancelled (answering clarifications
still works); another organisation's draft is not found."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from dps import clock
from dps.extensions import db
from dps.models import (
    AuditEvent,
    Clarification,
    Competition,
    CompetitionDocument,
    Document,
    Organisation,
    PanelMember,
    User,
)
from dps.services import ServiceError, competitions
from tests.applying import make_dps, upload
from tests.conftest import set_clock, sign_in
from tests.test_competitions import admit, allocation, create, form_data, publish, statements, text

# It is Monday 3 June 2024 at 9am (tests/conftest.py DEFAULT_NOW).


@pytest.fixture
def dps(app):
    return make_dps(app)


@pytest.fixture
def buyer(app, factory, signed_in, dps):
    """A buyer of a Full Member council with two allocations and a colleague, signed in."""
    council = factory.organisation(name="Rochdale Borough Council")
    browser, user = signed_in("buyer", organisation_id=council, name="Priya Shah", email="priya@rochdale.example.org")
    user["allocation"] = allocation(app, council)
    user["food_plan"] = allocation(app, council, project="Food plan")
    user["colleague"] = factory.user("buyer", organisation_id=council, name="Tom Evans")
    return browser, user


@pytest.fixture
def draft(buyer, dps) -> int:
    browser, user = buyer
    return create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))


class _FormReader(HTMLParser):
    """What a browser would send from each form of a page, as (name, value) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append([])
        elif not self.forms:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    self.forms[-1].append((a["name"], a.get("value", "on")))
            elif kind != "submit":
                self.forms[-1].append((a["name"], a.get("value", "")))
        elif tag == "textarea":
            self._textarea = a["name"]
            self.forms[-1].append((a["name"], ""))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.forms[-1].append((self._select, a.get("value", "")))

    def handle_data(self, data):
        if self._textarea is not None:
            name, value = self.forms[-1][-1]
            self.forms[-1][-1] = (name, value + data)

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
            name, value = self.forms[-1][-1]
            self.forms[-1][-1] = (name, value.removeprefix("\n"))  # HTML drops a leading newline
        elif tag == "select":
            self._select = None


def filled_in(html: str) -> dict:
    """The competition form of a page, as the browser would submit it untouched (no CSRF token:
    ``submit`` adds it)."""
    reader = _FormReader()
    reader.feed(html)
    form = next(f for f in reader.forms if any(name == "title" for name, _ in f))
    data: dict = {}
    for name, value in form:
        if name == "csrf_token":
            continue
        if name in data:
            data[name] = (data[name] if isinstance(data[name], list) else [data[name]]) + [value]
        else:
            data[name] = value
    if "panel" in data and not isinstance(data["panel"], list):
        data["panel"] = [data["panel"]]
    return data


def saved(app, competition_id: int) -> dict:
    """Everything the edit page can change, as stored."""
    with app.app_context():
        c = db.session.get(Competition, competition_id)
        return {
            "columns": {name: getattr(c, name) for name in (
                "lot_id", "title", "description", "estimated_value_pence", "allocation_id", "clarification_deadline",
                "tender_deadline", "standstill", "standstill_days", "price_formula", "published_at", "cancelled_at")},
            "criteria": [(x.position, x.kind, x.title, x.description, x.weight, x.word_limit) for x in c.criteria],
            "panel": sorted(db.session.scalars(select(PanelMember.user_id)
                                               .where(PanelMember.competition_id == competition_id))),
            "documents": sorted(db.session.scalars(select(CompetitionDocument.document_id)
                                                   .where(CompetitionDocument.competition_id == competition_id))),
        }


def audited(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def edit_page(browser, competition_id: int) -> dict:
    response = browser.get(f"/buyer/competitions/{competition_id}/edit")
    assert response.status_code == 200, text(response)
    return filled_in(text(response))


def section(page: str, anchor: str) -> str:
    """The part of the competition page from the heading with ``id=anchor`` to the next heading."""
    return re.search(rf'id="{anchor}">.*?(?=<h2 )', page, re.S).group(0)


# Editing every field -----------------------------------------------------------------------------

def test_the_edit_page_is_filled_in_with_what_is_saved(app, buyer, dps, draft):
    browser, user = buyer
    page = browser.get(f"/buyer/competitions/{draft}")
    assert f'href="/buyer/competitions/{draft}/edit"' in text(page) and "Edit the draft" in text(page)
    fields = edit_page(browser, draft)
    assert fields == {
        "lot": str(dps["lot1"]),
        "title": "Community wealth building review",
        "description": "A review of our anchor institutions' spending, with recommendations.",
        "estimated_value": "15,000", "allocation": str(user["allocation"]),
        "clarification_deadline": ["10", "06", "2024"], "clarification_deadline_time": "5:00pm",
        "tender_deadline": ["17", "06", "2024"], "tender_deadline_time": "12:00pm",
        "price_weight": "40", "price_formula": "lowest_price_ratio",
        "quality_1_title": "Approach and method", "quality_1_description": "How you will do the review.",
        "quality_1_weight": "50", "quality_1_word_limit": "1000",
        **{f"quality_{n}_{part}": "" for n in (2, 3) for part in ("title", "description", "weight", "word_limit")},
        "social_value_title": "Social value", "social_value_description": "", "social_value_weight": "10",
        "social_value_word_limit": "500",
        "standstill": "no", "standstill_days": "10", "panel": [str(user["id"])],
    }


def test_saving_the_edit_page_untouched_changes_nothing_and_writes_nothing(app, buyer, draft):
    browser, user = buyer
    before = saved(app, draft)
    response = browser.submit(f"/buyer/competitions/{draft}/edit", edit_page(browser, draft))
    assert response.status_code == 302
    assert "You did not change anything, so nothing was saved." in text(browser.get(response.headers["Location"]))
    assert saved(app, draft) == before
    assert audited(app, "competition.updated") == []
    assert len(audited(app, "panel.member_added")) == 1 and audited(app, "panel.member_removed") == []


def test_every_field_of_a_draft_is_changed_shown_on_its_page_and_audited(app, buyer, dps, draft):
    browser, user = buyer
    before = saved(app, draft)
    fields = edit_page(browser, draft)
    fields.update({
        "lot": str(dps["lot2"]), "title": "Anchor institutions spending review",
        "description": "Where our anchor institutions spend, and how more of it could stay local.",
        "estimated_value": "18,500.50", "allocation": str(user["food_plan"]),
        "clarification_deadline": ["12", "6", "2024"], "clarification_deadline_time": "10:00am",
        "tender_deadline": ["20", "6", "2024"], "tender_deadline_time": "3:30pm",
        "standstill": "yes", "standstill_days": "14", "price_formula": "linear_from_lowest", "price_weight": "30",
        "quality_1_title": "Method", "quality_1_description": "How you will map the spending.",
        "quality_1_weight": "40", "quality_1_word_limit": "800",
        "quality_2_title": "Local knowledge", "quality_2_description": "What you know of Rochdale.",
        "quality_2_weight": "15", "quality_2_word_limit": "",
        "social_value_title": "Local jobs", "social_value_description": "Placements for local people.",
        "social_value_weight": "15", "social_value_word_limit": "300",
        "panel": [str(user["colleague"]["id"])],
    })
    response = browser.submit(f"/buyer/competitions/{draft}/edit", fields)
    assert response.status_code == 302, text(response)
    assert response.headers["Location"].endswith(f"/buyer/competitions/{draft}")
    page = text(browser.get(response.headers["Location"]))
    assert ("Your changes to CCIN-MC-2024-0001 have been saved: lot, title, description, estimated value, budget "
            "allocation, deadline for questions, tender deadline, standstill, length of the standstill, how price "
            "is scored, award criteria and evaluation panel.") in page

    # The page shows what was saved.
    assert "CCIN-MC-2024-0001, CCIN-DPS-2020 Lot 2: Prototyping" in page
    assert "Anchor institutions spending review" in page and "how more of it could stay local" in page
    assert "£18,500.50" in page and "2024/25, Policy Labs: Food plan (£20,000.00 remaining)" in page
    assert "12 June 2024 at 10:00am" in page and "20 June 2024 at 3:30pm" in page and "Yes, 14 days" in page
    criteria = section(page, "criteria")
    assert "Linear: the lowest price gets the full price weight" in criteria
    for expected in ("Method", "How you will map the spending.", "40%", "800", "Local knowledge", "15%",
                     "Local jobs", "Placements for local people.", "300", "30%"):
        assert expected in criteria, expected
    assert "Approach and method" not in criteria and "1,000" not in criteria
    panel = re.search(r"<ul class=\"govuk-list govuk-list--bullet\">.*?</ul>", section(page, "panel"), re.S).group(0)
    assert "Tom Evans" in panel and "Priya Shah" not in panel
    assert "This is a draft" in page

    after = saved(app, draft)
    with app.app_context():
        assert after["columns"] == {
            **before["columns"], "lot_id": dps["lot2"], "title": "Anchor institutions spending review",
            "description": "Where our anchor institutions spend, and how more of it could stay local.",
            "estimated_value_pence": 18_500_50, "allocation_id": user["food_plan"],
            "clarification_deadline": clock.parse_london("2024-06-12T10:00"),
            "tender_deadline": clock.parse_london("2024-06-20T15:30"), "standstill": True, "standstill_days": 14,
            "price_formula": "linear_from_lowest"}
    assert after["criteria"] == [
        (1, "price", "Price", "", 30, None), (2, "quality", "Method", "How you will map the spending.", 40, 800),
        (3, "quality", "Local knowledge", "What you know of Rochdale.", 15, None),
        (4, "social_value", "Local jobs", "Placements for local people.", 15, 300)]
    assert after["panel"] == [user["colleague"]["id"]]

    # The audit log says what changed, before and after, and who changed it.
    [event] = audited(app, "competition.updated")
    assert event.actor_user_id == user["id"] and event.organisation_id == user["organisation_id"]
    assert event.object_type == "competition" and event.object_id == str(draft)
    assert event.data["reference"] == "CCIN-MC-2024-0001"
    assert set(event.data["before"]) == set(event.data["after"]) == {
        "lot_id", "title", "description", "estimated_value_pence", "allocation_id", "clarification_deadline",
        "tender_deadline", "standstill", "standstill_days", "price_formula", "criteria"}
    assert event.data["before"]["title"] == "Community wealth building review"
    assert event.data["after"]["title"] == "Anchor institutions spending review"
    assert event.data["before"]["estimated_value_pence"] == 15_000_00
    assert event.data["after"]["tender_deadline"] == clock.parse_london("2024-06-20T15:30").isoformat()
    assert [c["title"] for c in event.data["before"]["criteria"]] == ["Price", "Approach and method", "Social value"]
    assert [(c["kind"], c["weight"]) for c in event.data["after"]["criteria"]] == [
        ("price", 30), ("quality", 40), ("quality", 15), ("social_value", 15)]
    assert [e.data["user_id"] for e in audited(app, "panel.member_added")] == [user["id"], user["colleague"]["id"]]
    assert [e.data["user_id"] for e in audited(app, "panel.member_removed")] == [user["id"]]

    # Criteria can go as well as come: back to one quality criterion. A standstill left without
    # its length is the default 10 days, as the hint says.
    fields = edit_page(browser, draft)
    assert fields["standstill"] == "yes" and fields["standstill_days"] == "14"
    fields.update({"quality_2_title": "", "quality_2_description": "", "quality_2_weight": "",
                   "quality_1_weight": "55", "standstill_days": ""})
    assert browser.submit(f"/buyer/competitions/{draft}/edit", fields).status_code == 302
    assert [row[1:3] for row in saved(app, draft)["criteria"]] == [
        ("price", "Price"), ("quality", "Method"), ("social_value", "Local jobs")]
    assert saved(app, draft)["columns"]["standstill_days"] == 10
    assert len(audited(app, "competition.updated")) == 2


# The checks of creation, at their boundaries ----------------------------------------------------

REFUSED = [
    # 9 days 23 hours 59 minutes after now: one minute short (PCR 2015 reg 34).
    ({"tender_deadline": ["13", "6", "2024"], "tender_deadline_time": "8:59am"},
     "The tender deadline must be at least 10 days after the invitation is sent (PCR 2015 reg 34): if published "
     "now, no earlier than 13 June 2024 at 9:00am", "tender_deadline"),
    ({"price_weight": "39"}, "The weights must add up to 100%: they add up to 99%", "criteria"),
    ({"price_weight": "41"}, "The weights must add up to 100%: they add up to 101%", "criteria"),
    ({"clarification_deadline": ["17", "6", "2024"], "clarification_deadline_time": "12:00pm"},
     "The deadline for questions must be before the tender deadline", "clarification_deadline"),
    ({"clarification_deadline": ["3", "6", "2024"], "clarification_deadline_time": "9:00am"},
     "The deadline for questions must be in the future", "clarification_deadline"),
    ({"estimated_value": "20,000.01"}, "Policy Labs call-offs are capped at £20,000.00 each", "estimated_value"),
    ({"estimated_value": "0"}, "Enter the estimated value, more than £0", "estimated_value"),
    ({"standstill": "yes", "standstill_days": "9"},
     "The standstill period must be from 10 to 30 days (PCR 2015 reg 87", "standstill_days"),
    ({"standstill": "yes", "standstill_days": "31"},
     "The standstill period must be from 10 to 30 days (PCR 2015 reg 87", "standstill_days"),
    ({"standstill": "yes", "standstill_days": "a fortnight"},
     "Enter the standstill period as a whole number of days, like 10", "standstill_days"),
    ({"title": ""}, "Enter the title of the competition", "title"),
    ({"quality_1_title": ""}, "Enter the title of quality criterion 1", "quality_1_title"),
    ({"price_weight": "90", "quality_1_weight": "", "quality_1_title": "", "quality_1_description": "",
      "quality_1_word_limit": ""}, "Include at least one quality criterion", "criteria"),
    ({"quality_1_word_limit": "0"}, "The word limit of quality criterion 1 must be a whole number from 1 to 10,000",
     "quality_1_word_limit"),
    ({"panel": []}, "Choose at least one person for the evaluation panel", "panel"),
    ({"lot": ""}, "Select the lot", "lot"),
]


@pytest.mark.parametrize("changes, message, field", REFUSED, ids=[f"{r[2]}-{i}" for i, r in enumerate(REFUSED)])
def test_each_check_of_creation_refuses_an_edit_by_its_field_keeping_what_was_typed(app, buyer, draft, changes,
                                                                                     message, field):
    browser, user = buyer
    before = saved(app, draft)
    fields = edit_page(browser, draft)
    # Something else typed in the same go, to show it is kept on the page but not saved.
    fields.update({"description": "A changed description that must not be saved.", **changes})
    refused = browser.submit(f"/buyer/competitions/{draft}/edit", fields)
    assert refused.status_code == 400
    body = text(refused)
    # A date's error links to its Day box.
    target = f"{field}-day" if field in ("clarification_deadline", "tender_deadline") else field
    assert message in body and f'href="#{target}"' in body
    assert "A changed description that must not be saved." in body
    assert "Save changes" in body  # still the edit page, to put it right
    assert saved(app, draft) == before
    assert audited(app, "competition.updated") == []


ACCEPTED = [
    ({"tender_deadline": ["13", "6", "2024"], "tender_deadline_time": "9:00am"},
     "tender_deadline", clock.parse_london("2024-06-13T09:00")),
    ({"clarification_deadline": ["17", "6", "2024"], "clarification_deadline_time": "11:59am"},
     "clarification_deadline", clock.parse_london("2024-06-17T11:59")),
    ({"estimated_value": "20,000"}, "estimated_value_pence", 20_000_00),
    ({"standstill": "yes", "standstill_days": "10"}, "standstill_days", 10),
    ({"standstill": "yes", "standstill_days": "30"}, "standstill_days", 30),
]


@pytest.mark.parametrize("changes, column, value", ACCEPTED, ids=[f"{r[1]}-{i}" for i, r in enumerate(ACCEPTED)])
def test_each_check_accepts_the_edge_of_what_it_allows(app, buyer, draft, changes, column, value):
    browser, user = buyer
    fields = edit_page(browser, draft)
    fields.update(changes)
    response = browser.submit(f"/buyer/competitions/{draft}/edit", fields)
    assert response.status_code == 302, text(response)
    assert saved(app, draft)["columns"][column] == value


def test_a_draft_on_an_agreement_that_has_closed_says_so_by_its_lot(app, buyer, draft):
    browser, user = buyer
    before = saved(app, draft)
    set_clock(app, "2025-04-01T09:00")  # the DPS period ended on 31 March 2025
    fields = edit_page(browser, draft)
    assert fields["lot"] == str(before["columns"]["lot_id"])
    assert "CCIN-DPS-2020: Lot 1: Research and policy (not open)" in text(browser.get(f"/buyer/competitions/{draft}/edit"))
    # Its allocation's year, 2024/25, has ended too: the field says so first.
    ended = browser.submit(f"/buyer/competitions/{draft}/edit", fields)
    assert ended.status_code == 400 and 'href="#allocation"' in text(ended)
    assert "belongs to 2024/25, which has ended: choose an allocation of 2025/26" in text(ended)
    fields["allocation"] = str(allocation(app, user["organisation_id"], project="Food plan", start_year=2025))
    refused = browser.submit(f"/buyer/competitions/{draft}/edit", fields)
    assert refused.status_code == 400 and 'href="#lot"' in text(refused)
    assert ("CCIN Dynamic Purchasing System closed on 31 March 2025: changing a mini-competition is no longer "
            "possible on it.") in text(refused)
    assert saved(app, draft) == before


def test_only_the_organisations_own_allocations_and_colleagues_can_be_chosen(app, buyer, draft, factory, signed_in):
    browser, user = buyer
    neighbour = factory.organisation(name="Stockport Council")
    _, other_user = signed_in("buyer", organisation_id=neighbour)
    theirs = allocation(app, neighbour, project="Stockport food plan")
    before = saved(app, draft)
    url = f"/buyer/competitions/{draft}/edit"
    assert "Stockport food plan" not in text(browser.get(url))
    refused = browser.submit(url, {**edit_page(browser, draft), "allocation": str(theirs)})
    assert refused.status_code == 400 and "Choose one of your organisation&#39;s allocations" in text(refused)
    assert 'href="#allocation"' in text(refused)
    foreign = browser.submit(url, {**edit_page(browser, draft), "panel": [str(user["id"]), str(other_user["id"])]})
    assert foreign.status_code == 400 and 'href="#panel"' in text(foreign)
    assert saved(app, draft) == before
    assert audited(app, "competition.updated") == [] and len(audited(app, "panel.member_added")) == 1


def test_a_panel_member_whose_account_closed_is_shown_and_must_be_unticked(app, buyer, dps):
    browser, user = buyer
    tom = user["colleague"]
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"]), str(tom["id"])]))
    with app.app_context():
        db.session.get(User, tom["id"]).active = False
        db.session.commit()
    fields = edit_page(browser, competition_id)
    assert sorted(fields["panel"]) == sorted([str(user["id"]), str(tom["id"])])
    assert "Tom Evans (account closed)" in text(browser.get(f"/buyer/competitions/{competition_id}/edit"))
    url = f"/buyer/competitions/{competition_id}/edit"
    refused = browser.submit(url, fields)
    assert refused.status_code == 400
    assert "Tom Evans’s account is closed, so they cannot sit on the panel: untick them" in text(refused)
    assert 'href="#panel"' in text(refused)
    assert saved(app, competition_id)["panel"] == sorted([user["id"], tom["id"]])
    assert browser.submit(url, {**fields, "panel": [str(user["id"])]}).status_code == 302
    assert saved(app, competition_id)["panel"] == [user["id"]]
    assert [e.data["email"] for e in audited(app, "panel.member_removed")] == [tom["email"]]


# Specification documents ------------------------------------------------------------------------

def test_specification_documents_of_a_draft_are_added_and_removed(app, buyer, draft):
    browser, user = buyer
    page = f"/buyer/competitions/{draft}"
    for name in ("specification.pdf", "annex.pdf"):
        added = browser.submit(f"{page}/documents", {"document": upload(name)}, page=page,
                               content_type="multipart/form-data")
        assert added.status_code == 302
    with app.app_context():
        ids = {d.filename: d.id for d in db.session.scalars(select(Document))}
    body = text(browser.get(page))
    assert "Remove<span class=\"govuk-visually-hidden\"> specification.pdf</span>" in body

    remove = f"{page}/documents/{ids['specification.pdf']}/remove"
    assert browser.get(remove).status_code == 405  # never on GET
    assert browser.post(remove).status_code == 400  # no CSRF token
    assert saved(app, draft)["documents"] == sorted(ids.values())
    removed = browser.submit(remove, page=page)
    assert removed.status_code == 302
    body = text(browser.get(removed.headers["Location"]))
    assert "“specification.pdf” has been removed from the specification." in body
    documents = section(body, "documents")
    assert "annex.pdf" in documents and "specification.pdf" not in documents
    assert saved(app, draft)["documents"] == [ids["annex.pdf"]]
    [event] = audited(app, "competition.document_removed")
    assert event.object_id == str(draft) and event.actor_user_id == user["id"]
    assert event.data["document_id"] == ids["specification.pdf"] and event.data["filename"] == "specification.pdf"
    with app.app_context():
        # The document itself is kept, as every record is: it is only no longer in the specification.
        assert db.session.get(Document, ids["specification.pdf"]) is not None
    # Removed once: a second time, and a document that was never in it, are not found.
    assert browser.submit(remove, page=page).status_code == 404
    assert browser.submit(f"{page}/documents/{10**6}/remove", page=page).status_code == 404


def test_documents_cannot_be_removed_once_published(app, buyer, dps, draft, factory):
    browser, user = buyer
    admit(app, factory, dps["agreement"], dps["lot1"], "Brightwater Research Ltd", "amara@brightwater.example.org")
    page = f"/buyer/competitions/{draft}"
    browser.submit(f"{page}/documents", {"document": upload("specification.pdf")}, page=page,
                   content_type="multipart/form-data")
    with app.app_context():
        document_id = db.session.scalar(select(Document.id))
    publish(browser, draft)
    body = text(browser.get(page))
    assert "specification.pdf" in body and "/remove" not in body
    refused = browser.submit(f"{page}/documents/{document_id}/remove", page=page)
    assert refused.status_code == 400
    assert "Documents can only be removed before the competition is published" in text(refused)
    assert saved(app, draft)["documents"] == [document_id]
    assert audited(app, "competition.document_removed") == []


# Once published, or cancelled ---------------------------------------------------------------------

def test_a_published_competition_cannot_be_edited_but_its_questions_can_be_answered(app, buyer, dps, draft, factory):
    browser, user = buyer
    admit(app, factory, dps["agreement"], dps["lot1"], "Brightwater Research Ltd", "amara@brightwater.example.org")
    fields = edit_page(browser, draft)  # opened while still a draft...
    publish(browser, draft)
    before = saved(app, draft)
    page = f"/buyer/competitions/{draft}"
    assert "Edit the draft" not in text(browser.get(page)) and f"{page}/edit" not in text(browser.get(page))

    why = "Only a draft competition can be changed. Tenders are open until 17 June 2024 at midday."
    shown = browser.get(f"{page}/edit")
    assert shown.status_code == 400 and why in text(shown) and 'name="title"' not in text(shown)
    # ... and saved after it was published: refused, nothing saved.
    posted = browser.submit(f"{page}/edit", {**fields, "title": "Too late"}, page=page)
    assert posted.status_code == 400 and why in text(posted)
    assert saved(app, draft) == before and audited(app, "competition.updated") == []

    # Clarifications are still answered.
    supplier = app.test_client()
    sign_in(supplier, "amara@brightwater.example.org")
    asked = supplier.submit(f"/supplier/competitions/{draft}/clarifications", {"question": "Is fieldwork included?"})
    assert asked.status_code == 302
    with app.app_context():
        clarification_id = db.session.scalar(select(Clarification.id))
    prefix = f"c{clarification_id}-"
    answered = browser.submit(f"{page}/clarifications/{clarification_id}/answer",
                              {prefix + "published_question": "Is fieldwork included?",
                               prefix + "answer": "Yes: see section 3 of the specification."}, page=page)
    assert answered.status_code == 302
    with app.app_context():
        assert db.session.get(Clarification, clarification_id).answer == "Yes: see section 3 of the specification."

    # After the deadline the reason changes with the stage; the page still refuses.
    set_clock(app, "2024-06-18T09:00")
    later = browser.get(f"{page}/edit")
    assert later.status_code == 400
    assert "Only a draft competition can be changed. The bids have not been opened yet." in text(later)


def test_a_cancelled_draft_cannot_be_edited(app, buyer, draft):
    browser, user = buyer
    page = f"/buyer/competitions/{draft}"
    fields = edit_page(browser, draft)
    assert browser.submit(f"{page}/cancel", {"reason": "The project has been merged."}, page=page).status_code == 302
    before = saved(app, draft)
    body = text(browser.get(page))
    assert "Edit the draft" not in body and 'name="document"' not in body
    why = "Only a draft competition can be changed. This competition was cancelled."
    shown = browser.get(f"{page}/edit")
    assert shown.status_code == 400 and why in text(shown)
    posted = browser.submit(f"{page}/edit", {**fields, "title": "Revived"}, page=page)
    assert posted.status_code == 400 and why in text(posted)
    assert saved(app, draft) == before


def test_a_draft_is_not_changed_once_the_organisation_can_no_longer_buy(app, buyer, draft):
    browser, user = buyer
    fields = edit_page(browser, draft)
    with app.app_context():
        db.session.get(Organisation, user["organisation_id"]).membership = "affiliate"
        db.session.commit()
    before = saved(app, draft)
    why = "is an Affiliate Member: only Full and Associate Members may buy from the DPS"
    page = f"/buyer/competitions/{draft}"
    shown = browser.get(f"{page}/edit")
    assert shown.status_code == 400 and why in text(shown) and 'name="title"' not in text(shown)
    posted = browser.submit(f"{page}/edit", {**fields, "title": "Changed anyway"}, page=page)
    assert posted.status_code == 400 and why in text(posted)
    assert saved(app, draft) == before


def test_an_edit_read_before_publication_cannot_land_after_it(app, buyer, draft):
    """Two buyers at once: one publishes while the other's edit is on its way. The edit locks the
    row and checks the stage again as it writes, so it never changes what was sent to suppliers."""
    browser, user = buyer
    with app.app_context():
        stale = db.session.get(Competition, draft)
        _ = (stale.criteria, stale.award, stale.lot.agreement)
        buyer_user = db.session.get(User, user["id"])
        inputs = competitions.CompetitionInputs(
            lot_id=stale.lot_id, title="Changed after publication", description=stale.description,
            estimated_value_pence=stale.estimated_value_pence, allocation_id=stale.allocation_id,
            clarification_deadline=stale.clarification_deadline, tender_deadline=stale.tender_deadline,
            criteria=[competitions.CriterionInput(c.kind, c.title, c.weight, c.description, c.word_limit)
                      for c in stale.criteria], standstill=stale.standstill)
        db.session.expunge_all()  # what this buyer read, kept as read
        db.session.commit()
        with app.app_context():  # the other buyer publishes, in a session of their own
            db.session.get(Competition, draft).published_at = clock.now()
            db.session.commit()
        db.session.add(stale)
        db.session.add(buyer_user)
        assert stale.published_at is None  # the stale copy still reads as a draft
        with pytest.raises(ServiceError) as refused:
            competitions.update_draft(stale, buyer_user, inputs)
        assert str(refused.value) == "Only a draft competition can be changed. Tenders are open until 17 June 2024 at midday."
        db.session.rollback()
    assert saved(app, draft)["columns"]["title"] == "Community wealth building review"


def test_a_draft_with_more_criteria_than_the_form_shows_is_not_edited_there(app, buyer, dps):
    browser, user = buyer
    with app.app_context():
        competition, _ = competitions.create(
            db.session.get(User, user["id"]), lot_id=dps["lot1"], title="Four quality criteria",
            description="Made by a service, not the new page.", estimated_value_pence=10_000_00,
            allocation_id=user["allocation"], clarification_deadline=clock.parse_london("2024-06-10T17:00"),
            tender_deadline=clock.parse_london("2024-06-17T12:00"),
            criteria=[competitions.CriterionInput("price", "Price", 40)]
            + [competitions.CriterionInput("quality", f"Quality {n}", 15) for n in range(1, 5)])
        competitions.appoint_panel(competition, db.session.get(User, user["id"]), [user["id"]])
        db.session.commit()
        competition_id = competition.id
    before = saved(app, competition_id)
    url = f"/buyer/competitions/{competition_id}/edit"
    shown = browser.get(url)
    assert shown.status_code == 400 and "more award criteria than the edit page can show" in text(shown)
    assert browser.submit(url, {"title": "Dropped criteria"}, page=f"/buyer/competitions/{competition_id}"
                          ).status_code == 400
    assert saved(app, competition_id) == before


# Who may edit, and how --------------------------------------------------------------------------

def test_another_organisations_buyer_finds_no_draft_and_a_supplier_no_page(app, buyer, draft, factory, signed_in):
    browser, user = buyer
    page = f"/buyer/competitions/{draft}"
    browser.submit(f"{page}/documents", {"document": upload("specification.pdf")}, page=page,
                   content_type="multipart/form-data")
    with app.app_context():
        document_id = db.session.scalar(select(Document.id))
    fields = edit_page(browser, draft)
    before = saved(app, draft)

    other, _ = signed_in("buyer", organisation_id=factory.organisation(name="Stockport Council"))
    assert other.get(f"{page}/edit").status_code == 404
    assert other.submit(f"{page}/edit", {**fields, "title": "Ours now"}, page="/buyer/competitions").status_code == 404
    assert other.submit(f"{page}/documents/{document_id}/remove", page="/buyer/competitions").status_code == 404
    supplier, _ = signed_in("supplier")
    assert supplier.get(f"{page}/edit").status_code == 403
    assert saved(app, draft) == before
    assert audited(app, "competition.updated") == [] and audited(app, "competition.document_removed") == []


def test_the_edit_page_reads_only_and_its_post_needs_the_csrf_token(app, buyer, draft):
    browser, user = buyer
    with statements(app) as seen:
        assert browser.get(f"/buyer/competitions/{draft}/edit").status_code == 200
    assert not [s for s in seen if s.lstrip().startswith(("insert", "update", "delete"))]
    before = saved(app, draft)
    fields = edit_page(browser, draft)
    forged = browser.post(f"/buyer/competitions/{draft}/edit", data={**fields, "title": "Forged"})
    assert forged.status_code == 400
    assert saved(app, draft) == before and audited(app, "competition.updated") == []
