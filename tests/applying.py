"""Building blocks for tests of applications: a DPS with lots, suppliers with complete details,
and complete answers to the questionnaire."""
from __future__ import annotations

import io
from datetime import date

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import Admission, Agreement, Application, ApplicationLot, Document, Lot, Organisation, User
from dps.services import applications

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

ORGANISATION_DETAILS = {
    "name": "Brightwater Research Ltd", "trading_name": "", "address_line_1": "1 Union Street",
    "address_line_2": "", "town": "Oldham", "postcode": "ol1 1ut", "nation": "England", "legal_form": "company",
    "registration_number": "09876543", "vat_number": "", "size": "small", "is_vcse": "no",
    "parent_company": "", "contact_name": "Amara Okafor", "contact_email": "amara@brightwater.example.org",
    "contact_phone": "",
}


QUESTIONNAIRE = "ccin-sq-2020-04"


def accountable_body(app, name: str = "Oldham Council", nation: str = "England") -> int:
    """The accountable body and the installation row set-up writes (without set-up's first
    account, so tests make their own DPS team users)."""
    from dps.models import Installation

    with app.app_context():
        installation = db.session.get(Installation, 1)
        if installation is not None:
            return installation.accountable_body_id
        body = Organisation(name=name, kind="council", membership="full", nation=nation, contracting_authority=True,
                            created_at=clock.now())
        db.session.add(body)
        db.session.flush()
        db.session.add(Installation(id=1, accountable_body_id=body.id, set_up_at=clock.now()))
        db.session.commit()
        return body.id


def make_agreement(app, *, reference: str = "CCIN-DPS-2020", title: str = "CCIN Dynamic Purchasing System",
                   nation: str = "England", starts_on: date = date(2020, 4, 1), ends_on: date = date(2025, 3, 31),
                   lots: tuple[tuple[int, str, int, int, int], ...] = (), questionnaire_version: str | None = QUESTIONNAIRE,
                   publish: bool = True, description: str = "A DPS.") -> dict:
    """An agreement made through the DPS team's services: its lots (number, title, public
    liability, professional indemnity, case studies), a published questionnaire, published."""
    from dps.models.agreements import PCR_2015_DPS
    from dps.services import agreements, questionnaires

    body_id = accountable_body(app)
    with app.app_context():
        agreement = agreements.create_agreement(
            None, actor_label="test", reference=reference, title=title, description=description, regime=PCR_2015_DPS,
            starts_on=starts_on, ends_on=ends_on, nation=nation, accountable_body_id=body_id)
        ids = {"agreement": agreement.id, "body": body_id}
        for number, lot_title, public_liability, indemnity, case_studies in lots:
            lot = agreements.create_lot(
                None, agreement, actor_label="test", number=number, title=lot_title, description=f"What lot {number} covers.",
                scope="", cpv_codes=["73000000-2"],
                selection_criteria=f"Criteria for lot {number}.\n\nA second paragraph for lot {number}.",
                public_liability_min_pence=public_liability, professional_indemnity_min_pence=indemnity,
                case_studies_required=case_studies)
            ids[f"lot{number}"] = lot.id
        if questionnaire_version:
            text = questionnaire.shipped_text(QUESTIONNAIRE)
            if questionnaire_version != QUESTIONNAIRE:
                text = text.replace(f"version: {QUESTIONNAIRE}", f"version: {questionnaire_version}", 1)
            version = questionnaires.upload(None, agreement, text, actor_label="test")
            questionnaires.publish(None, version, actor_label="test")
        if publish:
            # Published whatever the clock says: a test may stand after the agreement's end.
            agreement.published_at = clock.now()
        db.session.commit()
        return ids


def make_dps(app, nation: str = "England", starts_on: date = date(2020, 4, 1), ends_on: date = date(2025, 3, 31)) -> dict:
    """The DPS and two lots: Lot 1 asks for £1m public liability, Lot 2 for £2m."""
    return make_agreement(app, nation=nation, starts_on=starts_on, ends_on=ends_on, lots=(
        (1, "Research and policy", 1_000_000_00, 1_000_000_00, 2),
        (2, "Prototyping", 2_000_000_00, 1_000_000_00, 2)))


def good_section_data(section_id: str, lot_ids: list[int], public_liability: str = "2000000") -> dict:
    """What a supplier that meets every criterion types into a section's form."""
    version = questionnaire.parse(questionnaire.shipped_text(QUESTIONNAIRE))
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
        application = applications.start(user, db.session.get(Agreement, db.session.get(Lot, lot_ids[0]).agreement_id))
        applications.choose_lots(application, user, lot_ids)
        version = questionnaire.load(application.questionnaire_version)
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


def add_suppliers(app, dps: dict, builder: dict, names, *, lots=(1,), status: str = "admitted",
                  decided: bool = True, **details) -> list[int]:
    """Suppliers written directly, in one transaction: each with a decided application and an
    admission of ``status`` to ``lots`` (numbers: ``dps["lot1"]``...); ``builder`` is the user
    the rows name as their author. ``details``: organisation columns, each a value or a function
    of the index. Their ids, in order."""
    with app.app_context():
        now = clock.now()
        ids = []
        for i, name in enumerate(names):
            values = {key: value(i) if callable(value) else value for key, value in details.items()}
            org = Organisation(name=name, kind="supplier", created_at=now, **values)
            db.session.add(org)
            db.session.flush()
            application = Application(organisation_id=org.id, agreement_id=dps["agreement"], questionnaire_version=QUESTIONNAIRE,
                                      created_at=now, created_by_id=builder["id"], updated_at=now, submitted_at=now,
                                      submitted_by_id=builder["id"], decision_due_on=now.date(),
                                      decided_at=now if decided else None)
            db.session.add(application)
            for number in lots:
                decision = ApplicationLot(application=application, lot_id=dps[f"lot{number}"], decision="admitted",
                                          decided_at=now)
                db.session.add(decision)
                db.session.flush()
                db.session.add(Admission(organisation_id=org.id, lot_id=dps[f"lot{number}"],
                                         application_lot_id=decision.id, admitted_at=now, status=status,
                                         status_changed_at=now,
                                         status_reason=None if status == "admitted" else "Set up by the test"))
            ids.append(org.id)
        db.session.commit()
        return ids
