"""Building blocks for tests of applications: a DPS with lots, suppliers with complete details,
and complete answers to the questionnaire."""
from __future__ import annotations

import io
from datetime import date

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import Agreement, Document, Lot, Organisation, User
from dps.services import applications

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

ORGANISATION_DETAILS = {
    "name": "Brightwater Research Ltd", "trading_name": "", "address_line_1": "1 Union Street",
    "address_line_2": "", "town": "Oldham", "postcode": "ol1 1ut", "nation": "England", "legal_form": "company",
    "registration_number": "09876543", "vat_number": "", "size": "small", "is_vcse": "no",
    "parent_company": "", "contact_name": "Amara Okafor", "contact_email": "amara@brightwater.example.org",
    "contact_phone": "",
}


def make_dps(app, nation: str = "England", starts_on: date = date(2020, 4, 1), ends_on: date = date(2025, 3, 31)) -> dict:
    """The DPS and two lots: Lot 1 asks for £1m public liability, Lot 2 for £2m."""
    with app.app_context():
        body = Organisation(name="Oldham Council", kind="council", membership="full", nation="England",
                            created_at=clock.now())
        agreement = Agreement(reference="CCIN-DPS-2020", title="CCIN Dynamic Purchasing System", description="A DPS.",
                              starts_on=starts_on, ends_on=ends_on, accountable_body=body,
                              legal_regime="Public Contracts Regulations 2015, regulation 34", nation=nation)
        lot1 = Lot(agreement=agreement, number=1, title="Research and policy", description="Research.",
                   selection_criteria="£1m public liability.", public_liability_min_pence=1_000_000_00,
                   professional_indemnity_min_pence=1_000_000_00, case_studies_required=2)
        lot2 = Lot(agreement=agreement, number=2, title="Prototyping", description="Prototypes.",
                   selection_criteria="£2m public liability.", public_liability_min_pence=2_000_000_00,
                   professional_indemnity_min_pence=1_000_000_00, case_studies_required=2)
        db.session.add_all([body, agreement, lot1, lot2])
        db.session.commit()
        return {"agreement": agreement.id, "lot1": lot1.id, "lot2": lot2.id, "body": body.id}


def good_section_data(section_id: str, lot_ids: list[int], public_liability: str = "2000000") -> dict:
    """What a supplier that meets every criterion types into a section's form."""
    version = questionnaire.load()
    data: dict = {}
    for q in version.section(section_id).questions:
        if q.rule.kind in ("mandatory_exclusion", "discretionary_exclusion"):
            data[q.id] = "no"
        elif q.type == "yes_no":
            data[q.id] = "no" if q.id == "employers_liability_exempt" else "yes"
    if section_id == "economic_financial":
        data["annual_turnover"] = "250,000"
    if section_id == "insurance":
        data.update({"employers_liability": "5000000", "public_liability": public_liability,
                     "professional_indemnity": "1000000", "insurance_expiry": ["31", "3", "2026"]})
    if section_id == "technical":
        for lot_id in lot_ids:
            data[f"case_studies__{lot_id}"] = "Oldham Council, 2019: a community wealth building review. Plymouth, 2018: a food plan."
        data["references"] = "Jo Smith, Oldham Council, jo@oldham.example.org"
    return data


def upload(name: str = "evidence.pdf", content: bytes = PDF):
    return (io.BytesIO(content), name)


def complete_draft(app, user_id: int, lot_ids: list[int], public_liability_pence: int = 2_000_000_00) -> int:
    """A draft that is ready to submit, built through the services (fast)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        org = user.organisation
        org.name = org.name or "Supplier"
        org.legal_form, org.registration_number, org.size, org.is_vcse = "company", "09876543", "small", False
        org.address_line_1, org.town, org.postcode = "1 Union Street", "Oldham", "OL1 1UT"
        org.contact_name, org.contact_email = user.name, user.email
        application = applications.start(user)
        applications.choose_lots(application, user, lot_ids)
        version = questionnaire.load()
        values = {}
        for q in version.questions:
            if q.rule.kind in ("mandatory_exclusion", "discretionary_exclusion"):
                values[q.id] = "no"
            elif q.type == "yes_no":
                values[q.id] = "no" if q.id == "employers_liability_exempt" else "yes"
        values.update({"annual_turnover": 25_000_000, "employers_liability": 5_000_000_00,
                       "public_liability": public_liability_pence, "professional_indemnity": 1_000_000_00,
                       "insurance_expiry": "2026-03-31", "references": "Jo Smith, Oldham Council",
                       "case_studies": {str(i): "Two pieces of relevant work." for i in lot_ids}})
        for section in version.sections:
            applications.save_answers(application, user, section.id, values)
        for n, qid in enumerate(("accounts", "insurance_certificates")):
            doc = Document(organisation_id=org.id, storage_key=f"{org.id}/test-{application.id}-{n}", filename=f"{qid}.pdf",
                           content_type="application/pdf", size_bytes=len(PDF), sha256="0" * 64,
                           uploaded_at=clock.now(), uploaded_by_id=user.id)
            db.session.add(doc)
            db.session.flush()
            applications.attach_document(application, user, qid, doc)
        db.session.commit()
        return application.id
