"""A supplier's organisation details (Part 1): the identifier checks, the page, and the flag a
change of identity raises for the DPS team."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from dps import clock, validators
from dps.extensions import db
from dps.models import (
    Admission,
    Agreement,
    Application,
    ApplicationLot,
    AuditEvent,
    Lot,
    Organisation,
    User,
)
from dps.services import ServiceError, suppliers
from tests.applying import make_agreement
from tests.conftest import outbox, set_clock


def text(response) -> str:
    return response.get_data(as_text=True)


# Validators -----------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, stored", [
    ("01234567", "01234567"),
    ("1234567", "01234567"),
    ("sc123456", "SC123456"),
    ("NI 123456", "NI123456"),
    (" OC123456 ", "OC123456"),
])
def test_company_numbers(typed, stored):
    assert validators.company_number(typed) == stored


@pytest.mark.parametrize("typed", ["ABCDEFG", "123456789", "S1234567", "SC12345", "", "SC-123456"])
def test_company_numbers_refused(typed):
    with pytest.raises(ValueError, match="Enter a company number in the correct format, like 01234567 or SC123456"):
        validators.company_number(typed)


@pytest.mark.parametrize("typed, stored", [("OC123456", "OC123456"), ("so 300001", "SO300001"), ("NC000123", "NC000123")])
def test_llp_numbers(typed, stored):
    assert validators.llp_number(typed) == stored


@pytest.mark.parametrize("typed", ["01234567", "SC123456", "OC12345"])
def test_llp_numbers_refused(typed):
    with pytest.raises(ValueError, match="like OC123456"):
        validators.llp_number(typed)


@pytest.mark.parametrize("typed, scheme, stored", [
    ("1187654", "GB-CHC", "1187654"),
    ("220949", "GB-CHC", "220949"),
    ("sc012345", "GB-SC", "SC012345"),
    ("NIC 100001", "GB-NIC", "NIC100001"),
])
def test_charity_numbers(typed, scheme, stored):
    assert validators.charity_number(typed) == (scheme, stored)


@pytest.mark.parametrize("typed", ["12345", "12345678", "SC12345", "NI100001", "NIC1000"])
def test_charity_numbers_refused(typed):
    with pytest.raises(ValueError, match="Enter a charity number in the correct format"):
        validators.charity_number(typed)


@pytest.mark.parametrize("typed, stored", [
    ("RS007654", "RS007654"),
    ("30155R", "30155R"),
    ("30155 r", "30155R"),
    ("IP28575R", "IP28575R"),
    ("ip 1234", "IP1234"),
])
def test_mutuals_numbers(typed, stored):
    assert validators.mutuals_number(typed) == stored


@pytest.mark.parametrize("typed", ["RS07654", "1234567R", "30155", "R30155", "01234567"])
def test_mutuals_numbers_refused(typed):
    with pytest.raises(ValueError, match="Enter a Mutuals Public Register number"):
        validators.mutuals_number(typed)


@pytest.mark.parametrize("typed, stored", [
    ("GB123456782", "GB123456782"),
    ("gb 123 4567 82", "GB123456782"),
    ("123456782", "GB123456782"),
    ("GB123456782001", "GB123456782001"),
    # A number issued since 2010 passes the "+55" form of the check.
    ("GB100000034", "GB100000034"),
])
def test_vat_numbers(typed, stored):
    assert validators.vat_number(typed) == stored


def test_vat_number_with_wrong_check_digits():
    with pytest.raises(ValueError, match="Enter a real VAT number: this one's check digits are wrong"):
        validators.vat_number("GB123456789")


@pytest.mark.parametrize("typed", ["GB12345678", "FR123456782", "GB1234567820", "GBABCDEFGHI"])
def test_vat_numbers_in_the_wrong_format(typed):
    with pytest.raises(ValueError, match="Enter a VAT number in the correct format, like GB123456789"):
        validators.vat_number(typed)


@pytest.mark.parametrize("typed, stored", [
    ("ol1 1ut", "OL1 1UT"),
    ("SW1A 1AA", "SW1A 1AA"),
    ("sw1a1aa", "SW1A 1AA"),
    ("GIR 0AA", "GIR 0AA"),
    ("M1 1AE", "M1 1AE"),
    ("B33 8TH", "B33 8TH"),
    ("CR2 6XH", "CR2 6XH"),
    ("DN55 1PT", "DN55 1PT"),
    ("W1A 0AX", "W1A 0AX"),
    ("BT1  1AA", "BT1 1AA"),
])
def test_postcodes(typed, stored):
    assert validators.postcode(typed) == stored


@pytest.mark.parametrize("typed", ["123 ABC", "OL1", "", "OL1 1U", "QL1 1UT", "OL1 1CI"])
def test_postcodes_refused(typed):
    with pytest.raises(ValueError, match="Enter a full UK postcode, like OL1 1UT"):
        validators.postcode(typed)


@pytest.mark.parametrize("legal_form, typed, expected", [
    ("company", "1234567", ("GB-COH", "01234567")),
    ("cic", "SC123456", ("GB-COH", "SC123456")),
    ("partnership", "oc123456", ("GB-COH", "OC123456")),
    ("partnership", "", (None, None)),
    ("co_operative", "RS007654", ("GB-MPR", "RS007654")),
    ("community_benefit_society", "30155R", ("GB-MPR", "30155R")),
    ("charity", "1187654", ("GB-CHC", "1187654")),
    ("charity", "SC012345", ("GB-SC", "SC012345")),
    ("charity", "NIC100001", ("GB-NIC", "NIC100001")),
    ("sole_trader", "", (None, None)),
    ("sole_trader", None, (None, None)),
])
def test_registration_by_legal_form(legal_form, typed, expected):
    assert validators.registration(legal_form, typed) == expected


@pytest.mark.parametrize("legal_form, typed, message", [
    ("sole_trader", "01234567", "A sole trader has no registration number: leave this blank"),
    ("partnership", "01234567", "like OC123456"),
    ("company", "30155R", "Enter a company number"),
    ("co_operative", "01234567", "Enter a Mutuals Public Register number"),
    ("charity", "OC123456", "Enter a charity number"),
])
def test_registration_refused(legal_form, typed, message):
    with pytest.raises(ValueError, match=message):
        validators.registration(legal_form, typed)


def test_northern_ireland_charities_are_listed_by_bare_number():
    assert validators.org_id("GB-NIC", "NIC100001") == "100001"
    assert validators.org_id("GB-SC", "SC012345") == "SC012345"
    assert validators.org_id(None, None) is None


# The page -------------------------------------------------------------------------------------

VALID = {
    "name": "Oldham Digital Co-operative Ltd",
    "trading_name": "Oldham Digital",
    "address_line_1": "Civic Centre",
    "address_line_2": "West Street",
    "town": "Oldham",
    "postcode": "ol1 1ut",
    "nation": "England",
    "legal_form": "company",
    "registration_number": "1234567",
    "vat_number": "GB 123 4567 82",
    "size": "small",
    "is_vcse": "no",
    "parent_company": "",
    "contact_name": "Asha Patel",
    "contact_email": "asha@oldham-digital.example.org",
    "contact_phone": "0161 770 3000",
}


def _organisation(app, organisation_id: int) -> Organisation:
    with app.app_context():
        org = db.session.get(Organisation, organisation_id)
        db.session.expunge(org)
        return org


def _actions(app, organisation_id: int) -> list[AuditEvent]:
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "organisation",
                                     AuditEvent.object_id == str(organisation_id)).order_by(AuditEvent.id)
        ).all()
        db.session.expunge_all()
        return events


def _has_version(app) -> bool:
    from dps.models import QuestionnaireVersion

    with app.app_context():
        return db.session.get(QuestionnaireVersion, 1) is not None


def _admit(app, factory, organisation_id: int, user_id: int, status: str = "admitted") -> None:
    """Put the supplier on a lot, as the DPS team's decision would."""
    ids = make_agreement(app, reference=f"CCIN-DPS-{organisation_id}", title="CCIN DPS", starts_on=date(2024, 1, 1),
                         ends_on=date(2028, 1, 1), lots=((1, "Digital services", 0, 0, 2),),
                         questionnaire_version=None if _has_version(app) else "ccin-sq-2020-04")
    with app.app_context():
        now = clock.now()
        agreement = db.session.get(Agreement, ids["agreement"])
        lot = db.session.get(Lot, ids["lot1"])
        application = Application(organisation_id=organisation_id, agreement=agreement,
                                  questionnaire_version="ccin-sq-2020-04", created_by_id=user_id,
                                  created_at=now, updated_at=now, submitted_at=now, submitted_by_id=user_id,
                                  decided_at=now)
        application_lot = ApplicationLot(application=application, lot=lot, decision="admitted", decided_at=now)
        db.session.add_all([agreement, lot, application, application_lot])
        db.session.flush()
        db.session.add(Admission(organisation_id=organisation_id, lot=lot, application_lot=application_lot,
                                 admitted_at=now, status=status, status_changed_at=now,
                                 status_reason=None if status == "admitted" else "Insurance lapsed"))
        db.session.commit()


def _save(app, organisation_id: int, **values) -> None:
    """Give an organisation valid Part 1 details directly, as an earlier visit to the page would."""
    with app.app_context():
        org = db.session.get(Organisation, organisation_id)
        actor = db.session.scalar(select(User).where(User.organisation_id == organisation_id))
        data = dict(VALID, is_vcse=False, **values)
        suppliers.update_details(org, actor, data)
        db.session.commit()


def test_the_page_asks_for_part_1_and_groups_the_address(signed_in):
    browser, _ = signed_in("supplier")
    response = browser.get("/supplier/organisation")
    assert response.status_code == 200
    body = text(response)
    for words in ("Legal name", "Trading name (optional)", "Registered address", "Postcode",
                  "Company limited by shares or guarantee", "Community interest company (CIC)",
                  "Co-operative society", "Community benefit society",
                  "Charity or charitable incorporated organisation", "Partnership or limited liability partnership",
                  "Sole trader", "Mutuals Public Register", "Fewer than 10 staff",
                  "Is your organisation a voluntary, community or social enterprise?"):
        assert words in body, words
    assert body.index("<fieldset") < body.index('id="address_line_1"') < body.index('id="postcode"') \
        < body.index("</fieldset>")


def test_valid_details_are_saved_with_their_identifier(app, signed_in):
    browser, user = signed_in("supplier")
    response = browser.submit("/supplier/organisation", VALID)
    assert response.status_code == 302
    assert response.headers["Location"] == "/supplier/"

    org = _organisation(app, user["organisation_id"])
    assert (org.name, org.legal_form, org.registration_number) == ("Oldham Digital Co-operative Ltd", "company", "01234567")
    assert (org.identifier_scheme, org.identifier_id) == ("GB-COH", "01234567")
    assert (org.postcode, org.vat_number, org.size, org.is_vcse) == ("OL1 1UT", "GB123456782", "small", False)
    assert org.parent_company is None and org.part1_complete
    assert org.identity_changed_at is None

    [event] = [e for e in _actions(app, org.id) if e.action == "organisation.details_updated"]
    assert event.data["after"]["registration_number"] == "01234567"
    assert event.data["after"]["identifier_scheme"] == "GB-COH"
    assert event.actor_user_id == user["id"]


def test_the_success_message_is_shown_once_saved(signed_in):
    browser, _ = signed_in("supplier")
    response = browser.submit("/supplier/organisation", VALID, follow_redirects=True)
    assert response.status_code == 200
    assert "Your organisation's details have been saved" in text(response).replace("&#39;", "'")


def test_the_form_is_prefilled_from_the_organisation(app, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    body = text(browser.get("/supplier/organisation"))
    assert 'value="Oldham Digital Co-operative Ltd"' in body
    assert 'value="OL1 1UT"' in body and 'value="01234567"' in body and 'value="GB123456782"' in body
    assert 'value="company" checked' in body and 'value="small" checked' in body and 'value="no" checked' in body


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "Enter your organisation's legal name"),
    ("address_line_1", "", "Enter the first line of the registered address"),
    ("town", "", "Enter the town or city"),
    ("postcode", "123 ABC", "Enter a full UK postcode, like OL1 1UT"),
    ("postcode", "OL1", "Enter a full UK postcode, like OL1 1UT"),
    ("nation", "", "Select the nation where your organisation is registered"),
    ("legal_form", "", "Select your organisation's legal form"),
    ("legal_form", "trust", "Select your organisation's legal form"),
    ("registration_number", "ABCDEFG", "Enter a company number in the correct format, like 01234567 or SC123456"),
    ("registration_number", "", "Enter your company number"),
    ("vat_number", "GB123456789", "Enter a real VAT number: this one's check digits are wrong"),
    ("vat_number", "GB12345", "Enter a VAT number in the correct format, like GB123456789"),
    ("size", "", "Select the size of your organisation"),
    ("is_vcse", "", "Select yes if your organisation is a voluntary, community or social enterprise"),
    ("contact_name", "", "Enter the contact's full name"),
    ("contact_email", "not an email", "Enter an email address in the correct format"),
    ("contact_phone", "call me", "Enter a telephone number, like 01632 960 001"),
])
def test_each_bad_field_is_refused_next_to_it(app, signed_in, field, value, message):
    browser, user = signed_in("supplier")
    data = dict(VALID, **{field: value})
    response = browser.submit("/supplier/organisation", data)
    assert response.status_code == 400
    body = text(response).replace("&#39;", "'")
    assert message in body
    assert f'href="#{field}"' in body
    # What was typed elsewhere is still there to correct, not lost.
    for other in ("name", "town", "contact_email"):
        if other != field:
            assert f'value="{VALID[other]}"' in body
    if field != "registration_number":
        assert 'value="1234567"' in body
    assert _organisation(app, user["organisation_id"]).legal_form is None


def test_a_missing_registration_number_is_reported_with_the_other_errors(signed_in):
    browser, _ = signed_in("supplier")
    response = browser.submit("/supplier/organisation", dict(VALID, legal_form="charity", registration_number="",
                                                             postcode="OL1"))
    assert response.status_code == 400
    body = text(response)
    assert "Enter your charity number" in body and 'href="#registration_number"' in body
    assert 'href="#postcode"' in body


def test_a_sole_trader_with_a_registration_number_is_refused(app, signed_in):
    browser, user = signed_in("supplier")
    response = browser.submit("/supplier/organisation", dict(VALID, legal_form="sole_trader", name="Asha Patel"))
    assert response.status_code == 400
    assert "A sole trader has no registration number: leave this blank" in text(response)
    assert 'href="#registration_number"' in text(response)

    response = browser.submit("/supplier/organisation",
                              dict(VALID, legal_form="sole_trader", name="Asha Patel", registration_number=""))
    assert response.status_code == 302
    org = _organisation(app, user["organisation_id"])
    assert (org.legal_form, org.registration_number, org.identifier_scheme, org.identifier_id) == \
        ("sole_trader", None, None, None)


@pytest.mark.parametrize("legal_form, number, scheme, identifier", [
    ("co_operative", "rs007654", "GB-MPR", "RS007654"),
    ("charity", "NIC100001", "GB-NIC", "100001"),
    ("partnership", "OC123456", "GB-COH", "OC123456"),
    ("partnership", "", None, None),
])
def test_each_register_gives_its_identifier(app, signed_in, legal_form, number, scheme, identifier):
    browser, user = signed_in("supplier")
    response = browser.submit("/supplier/organisation", dict(VALID, legal_form=legal_form, registration_number=number))
    assert response.status_code == 302
    org = _organisation(app, user["organisation_id"])
    assert (org.identifier_scheme, org.identifier_id) == (scheme, identifier)


def test_a_number_another_supplier_has_is_refused_by_the_field(app, signed_in):
    first, _ = signed_in("supplier")
    assert first.submit("/supplier/organisation", VALID).status_code == 302
    second, user = signed_in("supplier")
    response = second.submit("/supplier/organisation", dict(VALID, registration_number="01234567"))
    assert response.status_code == 400
    assert "Another organisation has an account with this registration number" in text(response)
    assert 'href="#registration_number"' in text(response)
    assert _organisation(app, user["organisation_id"]).identifier_id is None


def test_a_change_of_legal_name_on_the_dps_is_flagged_to_the_team(app, factory, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    _admit(app, factory, user["organisation_id"], user["id"])
    team = factory.organisation(kind="network", membership=None, name="CCIN")
    admin = factory.user("dps_admin", organisation_id=team)
    gone = factory.user("dps_admin", organisation_id=team)
    with app.app_context():
        db.session.get(User, gone["id"]).active = False
        db.session.commit()
    sent_before = len(outbox(app))

    response = browser.submit("/supplier/organisation", dict(VALID, name="Oldham Digital Services Ltd"))
    assert response.status_code == 302

    org = _organisation(app, user["organisation_id"])
    assert org.name == "Oldham Digital Services Ltd"
    with app.app_context():
        assert org.identity_changed_at == clock.now()
    actions = [e.action for e in _actions(app, org.id)]
    assert actions[-2:] == ["organisation.details_updated", "organisation.identity_changed"]
    changed = _actions(app, org.id)[-1]
    assert changed.data == {"before": {"name": "Oldham Digital Co-operative Ltd"},
                            "after": {"name": "Oldham Digital Services Ltd"}}

    messages = outbox(app)[sent_before:]
    assert [m.to_address for m in messages] == [admin["email"]]  # not the deactivated one
    [message] = messages
    assert message.subject == "A supplier changed its legal name or registration number"
    assert "Oldham Digital Co-operative Ltd" in message.body and "Oldham Digital Services Ltd" in message.body
    assert "http://dps.test/team/" in message.body


def test_a_second_change_before_review_keeps_the_first_time_and_tells_the_team_again(app, factory, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    _admit(app, factory, user["organisation_id"], user["id"])
    factory.user("dps_admin", organisation_id=factory.organisation())
    assert browser.submit("/supplier/organisation", dict(VALID, name="First New Name Ltd")).status_code == 302
    first = _organisation(app, user["organisation_id"]).identity_changed_at
    set_clock(app, "2024-06-04T09:00")
    assert browser.submit("/supplier/organisation", dict(VALID, name="Second New Name Ltd")).status_code == 302

    assert _organisation(app, user["organisation_id"]).identity_changed_at == first
    changes = [e for e in _actions(app, user["organisation_id"]) if e.action == "organisation.identity_changed"]
    assert [e.data["after"]["name"] for e in changes] == ["First New Name Ltd", "Second New Name Ltd"]
    assert "Second New Name Ltd" in outbox(app)[-1].body


def test_a_change_of_registration_number_by_a_removed_supplier_is_flagged_too(app, factory, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    _admit(app, factory, user["organisation_id"], user["id"], status="removed")
    factory.user("dps_admin", organisation_id=factory.organisation())

    assert browser.submit("/supplier/organisation", dict(VALID, registration_number="SC123456")).status_code == 302
    org = _organisation(app, user["organisation_id"])
    assert org.identity_changed_at is not None
    changed = _actions(app, org.id)[-1]
    assert changed.action == "organisation.identity_changed"
    assert changed.data["after"] == {"registration_number": "SC123456"}
    assert "01234567" in outbox(app)[-1].body and "SC123456" in outbox(app)[-1].body


def test_other_changes_by_an_admitted_supplier_are_not_flagged(app, factory, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    _admit(app, factory, user["organisation_id"], user["id"])
    factory.user("dps_admin", organisation_id=factory.organisation())
    sent_before = len(outbox(app))

    assert browser.submit("/supplier/organisation", dict(VALID, contact_name="Sam Jones")).status_code == 302
    assert _organisation(app, user["organisation_id"]).identity_changed_at is None
    assert "organisation.identity_changed" not in [e.action for e in _actions(app, user["organisation_id"])]
    assert len(outbox(app)) == sent_before


def test_a_change_of_legal_name_before_admission_is_not_flagged(app, factory, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    factory.user("dps_admin", organisation_id=factory.organisation())
    sent_before = len(outbox(app))

    assert browser.submit("/supplier/organisation", dict(VALID, name="Oldham Digital Services Ltd")).status_code == 302
    org = _organisation(app, user["organisation_id"])
    assert org.name == "Oldham Digital Services Ltd" and org.identity_changed_at is None
    assert "organisation.identity_changed" not in [e.action for e in _actions(app, org.id)]
    assert len(outbox(app)) == sent_before


def test_saving_unchanged_details_records_nothing(app, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    before = len(_actions(app, user["organisation_id"]))
    assert browser.submit("/supplier/organisation", VALID).status_code == 302
    assert len(_actions(app, user["organisation_id"])) == before


def test_the_team_acknowledges_a_change_of_identity(app, factory, signed_in):
    browser, user = signed_in("supplier")
    _save(app, user["organisation_id"])
    _admit(app, factory, user["organisation_id"], user["id"])
    admin = factory.user("dps_admin", organisation_id=factory.organisation())
    assert browser.submit("/supplier/organisation", dict(VALID, name="New Name Ltd")).status_code == 302

    with app.app_context():
        org = db.session.get(Organisation, user["organisation_id"])
        supplier = db.session.get(User, user["id"])
        with pytest.raises(ServiceError, match="Only the DPS team"):
            suppliers.acknowledge_identity_change(org, supplier)
        suppliers.acknowledge_identity_change(org, db.session.get(User, admin["id"]))
        db.session.commit()
        assert org.identity_changed_at is None
        with pytest.raises(ServiceError, match="no change of legal name or registration number to review"):
            suppliers.acknowledge_identity_change(org, db.session.get(User, admin["id"]))
    event = _actions(app, user["organisation_id"])[-1]
    assert event.action == "organisation.identity_change_acknowledged"
    assert event.actor_user_id == admin["id"]


def test_the_service_refuses_what_the_form_would(app, factory):
    supplier = factory.user("supplier")
    other = factory.user("supplier")
    with app.app_context():
        org = db.session.get(Organisation, supplier["organisation_id"])
        actor = db.session.get(User, supplier["id"])
        with pytest.raises(ServiceError) as refused:
            suppliers.update_details(org, actor, dict(VALID, is_vcse=False, registration_number=" "))
        assert (refused.value.field, refused.value.message) == ("registration_number", "Enter your company number")
        with pytest.raises(ServiceError) as refused:
            suppliers.update_details(org, actor, dict(VALID, is_vcse=False, postcode="OL1"))
        assert refused.value.field == "postcode"
        with pytest.raises(ServiceError) as refused:
            suppliers.update_details(org, actor, dict(VALID, is_vcse=False, size="enormous"))
        assert refused.value.field == "size"
        with pytest.raises(ServiceError, match="your own organisation"):
            suppliers.update_details(org, db.session.get(User, other["id"]), {"name": "Taken Over Ltd"})
        with pytest.raises(ValueError, match="identifier_scheme"):
            suppliers.update_details(org, actor, {"identifier_scheme": "GB-COH"})


def test_only_suppliers_reach_the_page(signed_in):
    browser, _ = signed_in("buyer")
    assert browser.get("/supplier/organisation").status_code == 403
    assert browser.submit("/supplier/organisation", VALID, page="/buyer/").status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/supplier/organisation")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
