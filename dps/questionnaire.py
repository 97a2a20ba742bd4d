"""The selection questionnaire: versioned content (dps/questionnaires/*.yaml) and its rules.

The code never hard-codes a question: it reads the version an application recorded. Each
question names its assessment rule, which turns an answer into an automatic result the DPS team
sees beside it: pass, fail, needs judgement, or information only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources

import yaml

CURRENT_VERSION = "ccin-sq-2020-04"
QUESTION_TYPES = ("yes_no", "text", "textarea", "money", "date", "file", "per_lot_textarea")
RULE_KINDS = ("mandatory_exclusion", "discretionary_exclusion", "required_yes", "minimum", "lot_minimum",
              "future_date", "document_provided", "judgement", "info")
# A money answer above this is a typing mistake, not an insurance policy (£10bn).
MAX_MONEY_PENCE = 10_000_000_000_00

PASS, FAIL, JUDGEMENT, INFO = "pass", "fail", "judgement", "info"
OUTCOME_LABELS = {PASS: "Pass", FAIL: "Fail", JUDGEMENT: "Needs judgement", INFO: "Information"}


@dataclass(frozen=True)
class Rule:
    kind: str
    amount_pence: int | None = None
    exempt_if: str | None = None
    lot_field: str | None = None
    self_cleaning: str = "mandatory_self_cleaning"


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    label: str
    rule: Rule
    section_id: str
    hint: str = ""
    required: bool = True


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    questions: tuple[Question, ...]
    description: str = ""


@dataclass(frozen=True)
class Questionnaire:
    version: str
    title: str
    sections: tuple[Section, ...]

    def section(self, section_id: str) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)

    def question(self, question_id: str) -> Question | None:
        return next((q for s in self.sections for q in s.questions if q.id == question_id), None)

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(q for s in self.sections for q in s.questions)


class QuestionnaireError(ValueError):
    pass


@lru_cache(maxsize=8)
def load(version: str = CURRENT_VERSION) -> Questionnaire:
    if not re.fullmatch(r"[a-z0-9-]+", version):
        raise QuestionnaireError(f"Bad questionnaire version {version!r}")
    try:
        text = (resources.files("dps") / "questionnaires" / f"{version}.yaml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuestionnaireError(f"There is no questionnaire version {version!r}") from None
    raw = yaml.safe_load(text)
    if raw.get("version") != version:
        raise QuestionnaireError(f"{version}.yaml says it is version {raw.get('version')!r}")
    sections = []
    seen: set[str] = set()
    for raw_section in raw["sections"]:
        questions = []
        for q in raw_section["questions"]:
            if q["id"] in seen:
                raise QuestionnaireError(f"Question id {q['id']!r} is used twice")
            seen.add(q["id"])
            if q["type"] not in QUESTION_TYPES:
                raise QuestionnaireError(f"Question {q['id']}: unknown type {q['type']!r}")
            rule = Rule(**q.get("rule", {"kind": "info"}))
            if rule.kind not in RULE_KINDS:
                raise QuestionnaireError(f"Question {q['id']}: unknown rule {rule.kind!r}")
            questions.append(Question(id=q["id"], type=q["type"], label=q["label"], rule=rule,
                                      section_id=raw_section["id"], hint=q.get("hint", ""),
                                      required=q.get("required", True)))
        sections.append(Section(id=raw_section["id"], title=raw_section["title"], questions=tuple(questions),
                                description=raw_section.get("description", "").strip()))
    return Questionnaire(version=version, title=raw["title"], sections=tuple(sections))


# Answers --------------------------------------------------------------------------------------

def parse_money(text: str) -> int:
    """'£1,234.56' -> 123456 pence. Raises ValueError with a message for the user."""
    cleaned = (text or "").strip().replace(",", "").replace("£", "").replace(" ", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("Enter an amount in pounds, like 5000000 or 1,250.50") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("Enter an amount of 0 or more")
    if amount * 100 > MAX_MONEY_PENCE:
        raise ValueError("Enter an amount less than £10,000,000,000")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError("Enter an amount in pounds and pence, with no more than 2 decimal places")
    return int(amount * 100)


def is_answered(question: Question, value, lot_ids: list[int]) -> bool:
    if question.type == "per_lot_textarea":
        return isinstance(value, dict) and all((value.get(str(lot_id)) or "").strip() for lot_id in lot_ids)
    if question.type == "file":
        return bool(value)
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None


def section_status(section: Section, answers: dict, lot_ids: list[int]) -> str:
    """'not_started', 'in_progress' or 'completed' (every required question answered)."""
    answered = [q for q in section.questions if is_answered(q, answers.get(q.id), lot_ids)]
    if not answered:
        return "not_started"
    if all(is_answered(q, answers.get(q.id), lot_ids) for q in section.questions if q.required):
        return "completed"
    return "in_progress"


def missing_answers(questionnaire: Questionnaire, answers: dict, lot_ids: list[int]) -> list[Question]:
    return [q for q in questionnaire.questions if q.required and not is_answered(q, answers.get(q.id), lot_ids)]


# Assessment -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    question: Question
    outcome: str
    detail: str = ""


@dataclass
class Assessment:
    """Automatic results: those that hold for the whole application, and those per lot."""

    general: list[Result] = field(default_factory=list)
    per_lot: dict[int, list[Result]] = field(default_factory=dict)

    def results_for(self, lot_id: int) -> list[Result]:
        return self.general + self.per_lot.get(lot_id, [])

    def outcome_for(self, lot_id: int) -> str:
        outcomes = {r.outcome for r in self.results_for(lot_id)}
        if FAIL in outcomes:
            return FAIL
        if JUDGEMENT in outcomes:
            return JUDGEMENT
        return PASS

    def failures_for(self, lot_id: int) -> list[Result]:
        return [r for r in self.results_for(lot_id) if r.outcome == FAIL]


def _money(pence: int) -> str:
    pounds, pennies = divmod(pence, 100)
    return f"£{pounds:,}" + (f".{pennies:02d}" if pennies else "")


def assess(questionnaire: Questionnaire, answers: dict, lots: list, today: date) -> Assessment:
    """Apply each question's rule to its answer. ``lots`` are the Lot objects applied for."""
    result = Assessment(per_lot={lot.id: [] for lot in lots})
    for q in questionnaire.questions:
        value = answers.get(q.id)
        rule = q.rule
        if rule.kind == "lot_minimum":
            for lot in lots:
                minimum = getattr(lot, rule.lot_field)
                if value is None:
                    result.per_lot[lot.id].append(Result(q, FAIL, "Not answered"))
                elif value >= minimum:
                    result.per_lot[lot.id].append(Result(q, PASS, f"{_money(value)} meets Lot {lot.number}'s {_money(minimum)}"))
                else:
                    result.per_lot[lot.id].append(Result(q, FAIL, f"{_money(value)} is below Lot {lot.number}'s {_money(minimum)}"))
            continue
        if q.type == "per_lot_textarea":
            for lot in lots:
                result.per_lot[lot.id].append(Result(q, JUDGEMENT if rule.kind == "judgement" else INFO,
                                                     f"Lot {lot.number}: {lot.case_studies_required} case studies asked for"))
            continue
        result.general.append(_assess_one(q, value, answers, today))
    return result


def _assess_one(q: Question, value, answers: dict, today: date) -> Result:
    rule = q.rule
    if rule.kind == "info":
        return Result(q, INFO)
    if rule.kind == "judgement":
        return Result(q, JUDGEMENT)
    if rule.kind == "mandatory_exclusion":
        if value == "no":
            return Result(q, PASS)
        if value == "yes":
            if (answers.get(rule.self_cleaning) or "").strip():
                return Result(q, JUDGEMENT, "Declared, with self-cleaning evidence to weigh")
            return Result(q, FAIL, "Declared, with no self-cleaning evidence: a mandatory exclusion")
        return Result(q, FAIL, "Not answered")
    if rule.kind == "discretionary_exclusion":
        if value == "no":
            return Result(q, PASS)
        return Result(q, JUDGEMENT, "Declared: consider what the supplier says" if value == "yes" else "Not answered")
    if rule.kind == "required_yes":
        return Result(q, PASS) if value == "yes" else Result(q, FAIL, "Answered no" if value == "no" else "Not answered")
    if rule.kind == "minimum":
        if rule.exempt_if and answers.get(rule.exempt_if) == "yes":
            return Result(q, JUDGEMENT, "Declares itself exempt: check it employs nobody")
        if value is None:
            return Result(q, FAIL, "Not answered")
        if value >= rule.amount_pence:
            return Result(q, PASS, f"{_money(value)} meets the {_money(rule.amount_pence)} minimum")
        return Result(q, FAIL, f"{_money(value)} is below the {_money(rule.amount_pence)} minimum")
    if rule.kind == "future_date":
        if not value:
            return Result(q, FAIL, "Not answered")
        when = date.fromisoformat(value)
        if when > today:
            return Result(q, PASS, f"Expires {when.day} {when:%B %Y}")
        return Result(q, FAIL, f"Expired on {when.day} {when:%B %Y}")
    if rule.kind == "document_provided":
        return Result(q, PASS, f"{len(value)} document(s)") if value else Result(q, FAIL, "No document")
    raise QuestionnaireError(f"No assessment for rule {rule.kind!r}")
