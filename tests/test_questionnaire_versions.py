"""Questionnaire versions (issue 9, item 5): the DPS team uploads a version as YAML, every problem
in it is named by line and question, it is previewed as a supplier would see it with its rules in
words, and published; a published version is fixed for ever (service, pages and database
triggers), and an application keeps the version it started with."""
from __future__ import annotations

import html
import io
import re
from datetime import date

import pytest
from sqlalchemy import func, select, text

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import Agreement, Application, AuditEvent, Lot, Organisation, QuestionnaireVersion, User
from dps.services import ServiceError
from dps.services import questionnaires
from dps.services.questionnaires import QuestionnaireProblems

SHIPPED = "ccin-sq-2020-04"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _plain(response) -> str:
    """The page's words, without tags, spaces run together."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def _shipped(version: str = SHIPPED) -> str:
    content = questionnaire.shipped_text(SHIPPED)
    return content.replace(f"version: {SHIPPED}", f"version: {version}", 1)


def _agreement(app, reference: str = "CCIN-DPS-2020", lots: bool = True) -> int:
    """An agreement made directly with the model, with two lots (until agreement services land)."""
    with app.app_context():
        body = Organisation(name=f"Oldham Council ({reference})", kind="council", membership="full",
                            nation="England", created_at=clock.now())
        agreement = Agreement(reference=reference, title=f"Agreement {reference}", description="A DPS.",
                              starts_on=date(2020, 4, 1), ends_on=date(2025, 3, 31), accountable_body=body,
                              regime="pcr2015_dps", nation="England", created_at=clock.now(),
                              published_at=clock.now())
        db.session.add(agreement)
        db.session.flush()
        if lots:
            for number, title, public_liability, indemnity in ((1, "Policy labs", 1_000_000_00, 500_000_00),
                                                               (2, "Prototypes", 2_000_000_00, 1_000_000_00)):
                db.session.add(Lot(agreement_id=agreement.id, number=number, title=title, description="What it covers.",
                                   selection_criteria="Criteria.", public_liability_min_pence=public_liability,
                                   professional_indemnity_min_pence=indemnity, case_studies_required=number + 1))
        db.session.commit()
        return agreement.id


def _base(agreement_id: int) -> str:
    return f"/team/agreements/{agreement_id}/questionnaires"


def _upload(client, agreement_id: int, content: str | bytes, filename: str = "questionnaire.yaml"):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return client.submit(_base(agreement_id), {"file": (io.BytesIO(data), filename)},
                         content_type="multipart/form-data")


def _version_id(app, name: str) -> int | None:
    with app.app_context():
        return db.session.scalar(select(QuestionnaireVersion.id).where(QuestionnaireVersion.version == name))


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(QuestionnaireVersion))


def _publish(client, agreement_id: int, version_id: int, confirm: bool = True):
    url = f"{_base(agreement_id)}/{version_id}"
    return client.submit(f"{url}/publish", {"confirm": "y"} if confirm else {}, page=url)


def _problems(response) -> list[str]:
    """The problems listed by the file field."""
    match = re.search(r'<ul[^>]*id="file-problems"[^>]*>(.*?)</ul>', response.get_data(as_text=True), re.S)
    assert match, "no list of problems by the file field"
    return [html.unescape(re.sub(r"<[^>]+>", "", item)).strip()
            for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]


@pytest.fixture
def team(signed_in):
    return signed_in("dps_admin")


@pytest.fixture
def agreement_id(app) -> int:
    return _agreement(app)


# Checking the file ------------------------------------------------------------------------------

def test_the_shipped_questionnaire_has_no_problems():
    content = questionnaire.shipped_text(SHIPPED)
    assert questionnaire.problems_in(content) == []
    parsed = questionnaire.parse(content, expected_version=SHIPPED)
    assert parsed.version == SHIPPED and len(parsed.sections) == 6
    rule = parsed.question("employers_liability").rule
    assert (rule.kind, rule.amount_pence, rule.exempt_if) == ("minimum", 500000000, "employers_liability_exempt")
    assert parsed.question("mandatory_self_cleaning").required is False
    assert parsed.section("mandatory_exclusion").description.startswith("Regulation 57(1)")


def test_lot_minimum_fields_are_lot_columns():
    assert set(questionnaire.LOT_FIELDS) <= set(Lot.__table__.columns.keys())


BROKEN = """\
version: Not A Name
title: A questionnaire with mistakes
sections:
  - id: insurance
    title: Insurance
    questions:
      - id: public_liability
        type: money
        label: Public liability insurance
        rule: {kind: minimun, amount_pence: 500000000}
      - id: expiry
        type: text
        label: When does it expire?
        rule: {kind: future_date}
      - id: public_liability
        type: moneys
        label: yes
      - id: employers
        type: money
        label: Employer's liability
        colour: blue
        required: maybe
        rule: {kind: minimum, amount_pence: -5, exempt_if: nobody}
      - id: indemnity
        type: money
        label: Professional indemnity
        rule: {kind: lot_minimum, lot_field: professional_indemnity}
      - id: declared
        type: yes_no
        label: Any conviction?
        rule: {kind: mandatory_exclusion}
  - title: A section without an id
    questions: []
"""


def test_every_problem_is_named_by_line_and_question():
    problems = questionnaire.problems_in(BROKEN)
    expected = [
        'Line 1: version "Not A Name" must have only lower-case letters',
        'Line 10, question public_liability: unknown rule kind "minimun" (did you mean "minimum"? use one of: '
        "mandatory_exclusion, discretionary_exclusion, required_yes, minimum, lot_minimum",
        "Line 14, question expiry: rule kind future_date can only assess a question of type date (this question is text)",
        'Line 15, question public_liability: question id "public_liability" is already used by the question on line 7',
        'Line 16, question public_liability: unknown type "moneys"',
        'Line 17, question public_liability: label must be text, not yes/no (true/false): put it in quotes ("yes")',
        'Line 21, question employers: unknown key "colour"',
        'Line 22, question employers: required must be true or false, not the text "maybe"',
        "Line 23, question employers: amount_pence must be between 0 and",
        'Line 23, question employers: exempt_if names question "nobody", which is not in the file',
        'Line 27, question indemnity: lot_field "professional_indemnity" is not a lot’s insurance level '
        '(did you mean "professional_indemnity_min_pence"?',
        'Line 31, question declared: a mandatory_exclusion rule reads self-cleaning evidence from question '
        '"mandatory_self_cleaning", which is not in the file',
        'Line 32, section 2: the section has no "id:"',
        "Line 33, section 2: questions is an empty list",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), problem


def _line_in(content: str, at: str) -> int:
    assert at in content, at
    return content[:content.index(at)].count("\n") + 1


@pytest.mark.parametrize("old, new, at, problem", [
    # A change to the shipped file; the problem it makes starts on the line where ``at`` starts.
    ("title: CCIN DPS selection questionnaire (April 2020)\n", "", "version:", 'there is no "title:" line'),
    ("version: ccin-sq-2020-04", "version: " + "x" * 41, "version:", 'version "xxxxxxxx'),
    ("version: ccin-sq-2020-04", "version: 2020", "version:", 'version must be text, not a number: put it in quotes ("2020")'),
    ("  - id: insurance\n", "  - id: Insurance\n", "  - id: Insurance",
     'section 4: section id "Insurance" must start with a lower-case letter'),
    ("  - id: policies\n", "  - id: insurance\n", "  - id: insurance\n    title: Policies",
     'section insurance: section id "insurance" is already used by the section on line '),
    ("{kind: lot_minimum, lot_field: public_liability_min_pence}", "{kind: lot_minimum}", "{kind: lot_minimum}",
     'question public_liability: rule kind lot_minimum needs "lot_field:"'),
    ("{kind: minimum, amount_pence: 500000000, exempt_if: employers_liability_exempt}", "{kind: minimum}",
     "{kind: minimum}", 'question employers_liability: rule kind minimum needs "amount_pence:"'),
    ("amount_pence: 500000000,", "amount_pence: 5.5,", "amount_pence: 5.5",
     "question employers_liability: amount_pence must be a whole number, not a number"),
    ("exempt_if: employers_liability_exempt", "exempt_if: annual_turnover", "exempt_if: annual_turnover",
     'question employers_liability: exempt_if names question "annual_turnover", which is of type money: it must be '
     "of type yes_no"),
    ("{kind: lot_minimum, lot_field: public_liability_min_pence}",
     "{kind: lot_minimum, lot_field: public_liability_min_pence, amount_pence: 5}", "{kind: lot_minimum",
     'question public_liability: rule kind lot_minimum does not take "amount_pence" (it takes only lot_field)'),
    ("{kind: future_date}", "{kind: future_date, until: 2025}", "{kind: future_date",
     'question insurance_expiry: unknown key "until"'),
    ("rule: {kind: document_provided}\n\n  - id: insurance", "rule: {kind: required_yes}\n\n  - id: insurance",
     "rule: {kind: required_yes}",
     "question accounts: rule kind required_yes can only assess a question of type yes_no (this question is file)"),
    ("{id: corruption, type: yes_no,", "{id: submit, type: yes_no,", "{id: submit",
     'question submit: "submit" is the name of a part of the form itself'),
    ("        rule: {kind: judgement}\n      - id: references", "        rule: {kind: info, amount_pence: 3}\n      - id: references",
     "rule: {kind: info, amount_pence", 'question case_studies: rule kind info does not take "amount_pence"'),
    ("      - id: employers_liability\n", "      - id: employers_liability\n        id: again\n", "        id: again",
     'question employers_liability: "id" is given twice (first on line '),
    ('label: "Annual turnover in your last full financial year"', "label: !!python/object:os.system x",
     "label: !!python", "question annual_turnover: label uses the YAML tag tag:yaml.org,2002:python/object:os.system"),
    ("  - id: policies\n", "  - id: policies\n    summary: x\n", "    summary: x",
     'section policies: unknown key "summary" (use one of: id, title, description, questions)'),
])
def test_each_check_names_its_line(old, new, at, problem):
    shipped = questionnaire.shipped_text(SHIPPED)
    assert old in shipped
    changed = shipped.replace(old, new, 1)
    expected = f"Line {_line_in(changed, at)}, {problem}" if not problem.startswith(("there", "version")) \
        else f"Line {_line_in(changed, at)}: {problem}"
    problems = questionnaire.problems_in(changed)
    assert any(p.startswith(expected) for p in problems), (expected, problems)


def test_syntax_errors_aliases_and_size_are_refused_before_anything_is_built():
    syntax = questionnaire.problems_in("version: x\ntitle: y\nsections:\n  - id: a\n   title: b\n")
    assert len(syntax) == 1 and syntax[0].startswith("Line 5: this is not valid YAML"), syntax
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b]\n"
    aliases = questionnaire.problems_in(laughs)
    assert aliases[0] == "Line 2: the alias *a is not allowed: write the value out in full"
    assert {p.split(":")[0] for p in aliases} == {"Line 2", "Line 3"}
    deep = questionnaire.problems_in("a: " + "[" * 50 + "]" * 50)
    assert deep == ["Line 1: the file is nested more than 10 levels deep, which no questionnaire needs"]
    big = _shipped() + "#" * questionnaire.MAX_SOURCE_BYTES
    assert questionnaire.problems_in(big) == ["The file is larger than 512 KB, which no questionnaire needs"]
    assert questionnaire.problems_in("") == ["Line 1: the file is empty"]
    assert questionnaire.problems_in("---\na: 1\n---\nb: 2\n")[0].startswith("Line 3: a second YAML document")
    with pytest.raises(questionnaire.QuestionnaireError) as refused:
        questionnaire.parse(BROKEN)
    assert len(refused.value.problems) == len(questionnaire.problems_in(BROKEN))


# Uploading through the page ---------------------------------------------------------------------

def test_a_valid_upload_becomes_a_draft(app, team, agreement_id):
    client, user = team
    page = _text(client.get(_base(agreement_id)))
    assert "Selection questionnaire versions" in page and "No version is published yet" in page
    assert 'enctype="multipart/form-data"' in page and 'accept=".yaml,.yml"' in page

    response = _upload(client, agreement_id, _shipped())
    assert response.status_code == 302, _text(response)
    version_id = _version_id(app, SHIPPED)
    assert response.headers["Location"].endswith(f"{_base(agreement_id)}/{version_id}")
    with app.app_context():
        row = db.session.get(QuestionnaireVersion, version_id)
        assert (row.agreement_id, row.published_at, row.uploaded_by_id) == (agreement_id, None, user["id"])
        assert row.title == "CCIN DPS selection questionnaire (April 2020)" and row.source == _shipped()
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "questionnaire.uploaded")).one()
        assert event.actor_user_id == user["id"] and event.data["questions"] == 33
        assert questionnaires.current_for(db.session.get(Agreement, agreement_id)) is None

    listing = _text(client.get(_base(agreement_id)))
    assert SHIPPED in listing and "Draft" in listing and "Test Dps_Admin" in listing


def test_a_file_with_several_mistakes_gets_every_one_named_and_nothing_is_saved(app, team, agreement_id):
    client, _user = team
    response = _upload(client, agreement_id, BROKEN, "broken.yml")
    assert response.status_code == 400
    page = _text(response)
    assert "Error: Questionnaire versions" in page
    assert "The file has 14 problems: correct them and upload the file again" in page
    problems = _problems(response)
    assert problems == questionnaire.problems_in(BROKEN)
    lines = {int(re.match(r"Line (\d+)", p).group(1)) for p in problems}
    assert len(lines) >= 3 and {10, 14, 27} <= lines
    assert any("question public_liability: unknown rule kind \"minimun\"" in p for p in problems)
    assert re.search(r'<input class="govuk-file-upload govuk-file-upload--error" id="file" name="file" type="file" '
                     r'aria-describedby="file-problems file-hint file-error"', response.get_data(as_text=True))
    assert _count(app) == 0
    with app.app_context():
        assert not db.session.scalar(select(func.count()).select_from(AuditEvent)
                                     .where(AuditEvent.action.like("questionnaire.%")))


def test_a_syntax_error_names_its_line(app, team, agreement_id):
    client, _user = team
    broken = _shipped().replace("  - id: insurance\n    title: Insurance\n", "  - id: insurance\n   title: Insurance\n", 1)
    response = _upload(client, agreement_id, broken)
    assert response.status_code == 400
    problems = _problems(response)
    line = _line_in(broken, "   title: Insurance")
    assert len(problems) == 1 and problems[0].startswith(f"Line {line}: this is not valid YAML"), problems
    assert _count(app) == 0


@pytest.mark.parametrize("content, filename, message", [
    (b"version: x", "questionnaire.txt", "The selected file must be a .yaml or .yml file"),
    ("title: caf\u00e9\n".encode("latin-1"), "q.yaml", "The selected file must be saved as UTF-8 text: line 1"),
    (b"   \n", "q.yaml", "The selected file is empty"),
    (b"a" * (512 * 1024 + 1), "q.yaml", "The selected file must be 512 KB or smaller"),
])
def test_the_file_itself_is_checked(app, team, agreement_id, content, filename, message):
    client, _user = team
    response = _upload(client, agreement_id, content, filename)
    assert response.status_code == 400
    assert message in _text(response)
    assert _count(app) == 0


def test_no_file_is_refused_by_the_field(app, team, agreement_id):
    client, _user = team
    response = client.submit(_base(agreement_id), {}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Select the questionnaire file (.yaml or .yml)" in _text(response)


def test_a_utf8_file_with_a_byte_order_mark_is_read(app, team, agreement_id):
    client, _user = team
    response = _upload(client, agreement_id, b"\xef\xbb\xbf" + _shipped().encode("utf-8"))
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(QuestionnaireVersion, _version_id(app, SHIPPED)).source == _shipped()


# Preview --------------------------------------------------------------------------------------

def test_the_preview_shows_every_question_as_a_supplier_would_see_it_with_its_rule(app, team, agreement_id):
    client, _user = team
    _upload(client, agreement_id, _shipped())
    version_id = _version_id(app, SHIPPED)
    response = client.get(f"{_base(agreement_id)}/{version_id}")
    assert response.status_code == 200
    raw = response.get_data(as_text=True)
    page = _text(response)
    assert "<title>Preview of questionnaire version ccin-sq-2020-04" in page
    content = questionnaire.parse(_shipped())
    for section in content.sections:
        assert f'id="section-{section.id}">{section.title}</h2>' in page
    for q in content.questions:
        assert q.label in page, q.id
        assert f"<code>{q.id}</code>" in page
    # As the supplier's form draws them: inline yes/no radios, £ inputs, date boxes, file inputs,
    # and a box per lot for case studies; and all disabled.
    assert re.search(r'<input class="govuk-radios__input" id="preview-corruption" name="preview-corruption" '
                     r'type="radio" value="yes"\s+disabled', raw)
    assert re.search(r'<div class="govuk-input__prefix" aria-hidden="true">£</div>\s*<input class="govuk-input '
                     r'govuk-input--width-10" id="preview-employers_liability"', raw)
    assert 'id="preview-insurance_expiry-day"' in raw and 'type="file"' in raw
    assert "Case studies for Lot 1: Policy labs" in page and "This lot asks for 3." in page
    enabled = [tag for tag in re.findall(r"<(?:input|textarea)\b[^>]*>", raw)
               if 'name="preview-' in tag and "disabled" not in tag]
    assert enabled == []
    # The rules, in words.
    assert "Fails below £5,000,000; passes at £5,000,000 or more. If “Are you exempt from employer's liability " \
           "insurance because you employ nobody?” is answered “Yes”, it needs the DPS team’s judgement instead." in page
    assert "Lot’s own minimum: public liability." in page and "Lot’s own minimum: professional indemnity." in page
    assert "Lot 1, Policy labs: £1,000,000.00" in page and "Lot 2, Prototypes: £1,000,000.00" in page
    assert "Mandatory exclusion: “No” passes. “Yes” fails, unless self-cleaning evidence is given in answer to " \
           "“If you answered yes to any of these: what have you done" in page
    assert "Passes when at least one document is attached" in page and "Recorded, not assessed." in page
    assert "This is a draft" in page and "Publish this version" in page and "Delete draft ccin-sq-2020-04" in page

    source = client.get(f"{_base(agreement_id)}/{version_id}/source")
    assert source.status_code == 200 and source.get_data(as_text=True) == _shipped()
    assert source.headers["Content-Disposition"] == 'attachment; filename="ccin-sq-2020-04.yaml"'


def test_a_version_is_found_only_through_its_own_agreement(app, team, agreement_id):
    client, _user = team
    other = _agreement(app, "CCIN-DM-2025")
    _upload(client, agreement_id, _shipped())
    version_id = _version_id(app, SHIPPED)
    assert client.get(f"{_base(other)}/{version_id}").status_code == 404
    assert client.get(f"{_base(other)}/{version_id}/source").status_code == 404
    assert _publish(client, other, version_id).status_code == 404
    assert client.get(f"{_base(999999)}").status_code == 404
    assert client.get(f"{_base(agreement_id)}/99999999999").status_code == 404
    # The same version name cannot be used by another agreement.
    response = _upload(client, other, _shipped())
    assert response.status_code == 400
    assert "Version ccin-sq-2020-04 belongs to another agreement (CCIN-DPS-2020)" in _text(response)


# Publishing, and what is fixed ------------------------------------------------------------------

def test_publishing_needs_the_confirmation_then_new_applications_answer_it(app, team, agreement_id):
    client, user = team
    _upload(client, agreement_id, _shipped())
    version_id = _version_id(app, SHIPPED)

    refused = _publish(client, agreement_id, version_id, confirm=False)
    assert refused.status_code == 400
    assert "Confirm that you have checked the preview" in _text(refused)
    with app.app_context():
        assert db.session.get(QuestionnaireVersion, version_id).published_at is None

    response = _publish(client, agreement_id, version_id)
    assert response.status_code == 302
    page = _text(client.get(response.headers["Location"]))
    assert "Version ccin-sq-2020-04 is published" in page
    assert "This version is published, so it is fixed" in page
    assert "Publish this version" not in page and "Delete draft" not in page
    with app.app_context():
        row = db.session.get(QuestionnaireVersion, version_id)
        assert row.published_at == clock.now()
        assert questionnaires.current_for(db.session.get(Agreement, agreement_id)).id == version_id
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "questionnaire.published")).one()
        assert event.actor_user_id == user["id"] and event.data["version"] == SHIPPED
    listing = _plain(client.get(_base(agreement_id)))
    assert "New applications answer ccin-sq-2020-04 , CCIN DPS selection questionnaire (April 2020), published 3 June " \
           "2024 at 9:00am." in listing and "New applications answer this" in listing


def test_a_published_version_cannot_be_replaced_published_again_or_deleted(app, team, agreement_id, is_postgres):
    client, _user = team
    _upload(client, agreement_id, _shipped())
    version_id = _version_id(app, SHIPPED)
    _publish(client, agreement_id, version_id)
    url = f"{_base(agreement_id)}/{version_id}"

    changed = _shipped().replace("title: CCIN DPS selection questionnaire (April 2020)", "title: Changed", 1)
    replaced = _upload(client, agreement_id, changed)
    assert replaced.status_code == 400
    assert ("Version ccin-sq-2020-04 is published, so it can never be replaced: give the new version a new name "
            "on its version: line") in _text(replaced)

    # The page offers no buttons; a request made by hand is refused, with the reason.
    again = client.post(f"{url}/publish", data={"confirm": "y", "csrf_token": client.csrf_token(_base(agreement_id))})
    assert again.status_code == 400
    assert "Version ccin-sq-2020-04 is already published: it is fixed, and cannot be published again" in _text(again)
    deleted = client.post(f"{url}/delete", data={"csrf_token": client.csrf_token(_base(agreement_id))})
    assert deleted.status_code == 400
    assert "Version ccin-sq-2020-04 is published: it can never be changed or deleted" in _text(deleted)

    with app.app_context():
        row = db.session.get(QuestionnaireVersion, version_id)
        agreement = db.session.get(Agreement, agreement_id)
        actor = db.session.get(User, _user["id"])
        with pytest.raises(ServiceError, match="is published, so it can never be replaced"):
            questionnaires.upload(actor, agreement, changed)
        with pytest.raises(ServiceError, match="already published"):
            questionnaires.publish(actor, row)
        with pytest.raises(ServiceError, match="can never be changed or deleted"):
            questionnaires.delete_draft(actor, row)
        db.session.rollback()
        assert row.title == "CCIN DPS selection questionnaire (April 2020)" and row.source == _shipped()

    # Beneath the service: the database's triggers refuse to change or delete it.
    for statement in ("UPDATE questionnaire_versions SET title = 'Changed' WHERE id = :id",
                      "UPDATE questionnaire_versions SET published_at = NULL WHERE id = :id",
                      "DELETE FROM questionnaire_versions WHERE id = :id"):
        with app.app_context():
            with pytest.raises(Exception, match="a published questionnaire version cannot be changed or deleted"):
                db.session.execute(text(statement), {"id": version_id})
                db.session.flush()
            db.session.rollback()
    with app.app_context():
        row = db.session.get(QuestionnaireVersion, version_id)
        assert row.title == "CCIN DPS selection questionnaire (April 2020)" and row.published_at is not None


def test_a_draft_can_be_replaced_and_deleted(app, team, agreement_id):
    client, _user = team
    _upload(client, agreement_id, _shipped("ccin-sq-2025-01"))
    version_id = _version_id(app, "ccin-sq-2025-01")
    corrected = _shipped("ccin-sq-2025-01").replace("title: CCIN DPS selection questionnaire (April 2020)",
                                                    "title: CCIN DPS selection questionnaire (2025)", 1)
    response = _upload(client, agreement_id, corrected)
    assert response.status_code == 302
    assert "The draft ccin-sq-2025-01 has been replaced" in _text(client.get(response.headers["Location"]))
    with app.app_context():
        row = db.session.get(QuestionnaireVersion, version_id)
        assert (row.title, row.source) == ("CCIN DPS selection questionnaire (2025)", corrected)
    assert _count(app) == 1

    url = f"{_base(agreement_id)}/{version_id}"
    deleted = client.submit(f"{url}/delete", page=url)
    assert deleted.status_code == 302 and deleted.headers["Location"].endswith(_base(agreement_id))
    assert "The draft ccin-sq-2025-01 has been deleted." in _text(client.get(_base(agreement_id)))
    assert _count(app) == 0
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("questionnaire.%"))
                                     .order_by(AuditEvent.id)).all()
        assert actions == ["questionnaire.uploaded", "questionnaire.replaced", "questionnaire.draft_deleted"]
    assert client.get(url).status_code == 404


# Who may do what ------------------------------------------------------------------------------

def test_auditors_may_read_but_every_post_is_refused(app, team, signed_in, agreement_id):
    client, _user = team
    _upload(client, agreement_id, _shipped())
    draft_id = _version_id(app, SHIPPED)
    auditor, _ = signed_in("auditor")
    listing = auditor.get(_base(agreement_id))
    assert listing.status_code == 200
    assert "Upload a version" not in _text(listing)
    preview = auditor.get(f"{_base(agreement_id)}/{draft_id}")
    assert preview.status_code == 200
    assert "Publish this version" not in _text(preview) and "Delete draft" not in _text(preview)
    assert auditor.get(f"{_base(agreement_id)}/{draft_id}/source").status_code == 200

    token = auditor.csrf_token(_base(agreement_id))
    posts = [
        (_base(agreement_id), {"file": (io.BytesIO(_shipped("other").encode()), "q.yaml")}),
        (f"{_base(agreement_id)}/{draft_id}/publish", {"confirm": "y"}),
        (f"{_base(agreement_id)}/{draft_id}/delete", {}),
    ]
    for url, data in posts:
        response = auditor.post(url, data={**data, "csrf_token": token}, content_type="multipart/form-data")
        assert response.status_code == 403, url
    with app.app_context():
        assert db.session.get(QuestionnaireVersion, draft_id).published_at is None
    assert _count(app) == 1


@pytest.mark.parametrize("role", ["buyer", "supplier"])
def test_buyers_and_suppliers_see_nothing(app, team, signed_in, agreement_id, role):
    client, _user = team
    _upload(client, agreement_id, _shipped())
    draft_id = _version_id(app, SHIPPED)
    other, _ = signed_in(role)
    for url in (_base(agreement_id), f"{_base(agreement_id)}/{draft_id}", f"{_base(agreement_id)}/{draft_id}/source"):
        assert other.get(url).status_code == 403, url
    token = other.csrf_token("/account")  # the sign-out form on any page carries one
    for url in (_base(agreement_id), f"{_base(agreement_id)}/{draft_id}/publish", f"{_base(agreement_id)}/{draft_id}/delete"):
        assert other.post(url, data={"csrf_token": token, "confirm": "y"}).status_code == 403, url
    with app.app_context():
        assert db.session.get(QuestionnaireVersion, draft_id).published_at is None


def test_the_service_refuses_anyone_but_the_dps_team(app, factory, agreement_id):
    buyer = factory.user("buyer")
    with app.app_context():
        agreement = db.session.get(Agreement, agreement_id)
        with pytest.raises(ServiceError, match="Only the DPS team"):
            questionnaires.upload(db.session.get(User, buyer["id"]), agreement, _shipped())
        with pytest.raises(QuestionnaireProblems) as refused:
            questionnaires.upload(None, agreement, BROKEN, actor_label="test")
        assert refused.value.field == "file" and len(refused.value.problems) == 14


# Versions over time -----------------------------------------------------------------------------

def test_an_application_keeps_its_version_when_a_new_one_is_published(app, factory, agreement_id):
    supplier = factory.user("supplier")
    with app.app_context():
        agreement = db.session.get(Agreement, agreement_id)
        v1 = questionnaires.upload(None, agreement, _shipped(), actor_label="test")
        questionnaires.publish(None, v1, actor_label="test")
        assert questionnaires.current_for(agreement).id == v1.id
        db.session.add(Application(organisation_id=supplier["organisation_id"], agreement_id=agreement_id,
                                   questionnaire_version=questionnaires.current_for(agreement).version,
                                   created_at=clock.now(), created_by_id=supplier["id"], updated_at=clock.now()))
        db.session.commit()

        # Version 2 drops a question and adds one.
        v2_text = _shipped("ccin-sq-2025-01").replace(
            "      - id: references\n", "      - id: social_value\n        type: textarea\n"
            "        label: \"How will your work add social value?\"\n        rule: {kind: judgement}\n"
            "      - id: references_v2\n", 1)
        v2 = questionnaires.upload(None, agreement, v2_text, actor_label="test")
        assert questionnaires.current_for(agreement).id == v1.id  # a draft changes nothing
        clock.set_simulated(clock.parse_london("2024-06-04T09:00"), frozen=True)
        questionnaires.publish(None, v2, actor_label="test")
        db.session.commit()

        assert questionnaires.current_for(agreement).version == "ccin-sq-2025-01"
        application = db.session.scalars(select(Application)).one()
        assert application.questionnaire_version == SHIPPED
        answered = questionnaire.load(application.questionnaire_version)
        assert answered.version == SHIPPED
        assert answered.question("references") is not None and answered.question("social_value") is None
        latest = questionnaire.load(questionnaires.current_for(agreement).version)
        assert latest.question("social_value") is not None and latest.question("references") is None
        # A version an application answers cannot be deleted even as a draft would be.
        v3 = questionnaires.upload(None, agreement, _shipped("ccin-sq-2025-02"), actor_label="test")
        db.session.commit()
        application.questionnaire_version = v3.version
        db.session.commit()
        with pytest.raises(ServiceError, match="Applications answer version ccin-sq-2025-02"):
            questionnaires.delete_draft(None, v3)


def test_a_version_without_the_exclusion_grounds_is_refused_naming_the_section():
    from dps import questionnaire

    text = questionnaire.shipped_text("ccin-sq-2020-04")
    start = text.index("  - id: discretionary_exclusion")
    end = text.index("  - id: economic_financial")
    problems = questionnaire.problems_in(text[:start] + text[end:])
    assert problems == ["The questionnaire has no section 'discretionary_exclusion': every version asks the "
                        "exclusion grounds there, and renewed self-declarations ask them again"]
    assert questionnaire.problems_in(text) == []
