"""The selection questionnaire: versioned content (dps/questionnaires/*.yaml) and its rules.

The code never hard-codes a question: it reads the version an application recorded. Each
question names its assessment rule, which turns an answer into an automatic result the DPS team
sees beside it: pass, fail, needs judgement, or information only.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources

import yaml

from .filters import plural

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
    """What is wrong with a questionnaire; ``problems`` lists each problem found, by line."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


# Checking an uploaded file ---------------------------------------------------------------------
#
# The DPS team uploads a version as YAML. Everything wrong with it is reported at once, each
# problem with its line (from the YAML nodes' marks) and the question it concerns, so that one
# round of corrections is enough. The file is bounded before it is composed: its size, and no
# aliases (a few lines of aliases can stand for billions of nodes) and no deep nesting.

MAX_SOURCE_BYTES = 512 * 1024
MAX_DEPTH = 10  # a questionnaire needs 6: file, sections, section, questions, question, rule
VERSION_PATTERN = re.compile(r"[a-z0-9-]+")
VERSION_LIMIT = 40  # questionnaire_versions.version
TITLE_LIMIT = 200  # questionnaire_versions.title
# Question ids are form field names and answer keys (answers.question_id is 60 characters);
# section ids are part of the supplier's page addresses.
ID_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
ID_LIMIT = 60
RESERVED_IDS = frozenset({"csrf_token", "submit"})  # the names of the form's own fields
# The Lot columns a lot_minimum rule may compare an answer with, and how the team reads them.
LOT_FIELDS = {"public_liability_min_pence": "public liability",
              "professional_indemnity_min_pence": "professional indemnity"}
# The question types each rule kind can assess (None: any type).
RULE_TYPES: dict[str, tuple[str, ...] | None] = {
    "mandatory_exclusion": ("yes_no",), "discretionary_exclusion": ("yes_no",), "required_yes": ("yes_no",),
    "minimum": ("money",), "lot_minimum": ("money",), "future_date": ("date",), "document_provided": ("file",),
    "judgement": None, "info": None,
}
# The fields each rule kind takes besides ``kind``: True for required, False for optional.
RULE_FIELDS: dict[str, dict[str, bool]] = {
    "minimum": {"amount_pence": True, "exempt_if": False},
    "lot_minimum": {"lot_field": True},
    "mandatory_exclusion": {"self_cleaning": False},
}
# The question a field of a rule names must be of one of these types (the assessment reads its
# answer as "yes"/"no", or as text).
REFERENCE_TYPES = {"exempt_if": ("yes_no",), "self_cleaning": ("text", "textarea")}
DEFAULT_SELF_CLEANING = "mandatory_self_cleaning"

TOP_KEYS = ("version", "title", "sections")
SECTION_KEYS = ("id", "title", "description", "questions")
QUESTION_KEYS = ("id", "type", "label", "hint", "required", "rule")
RULE_KEYS = ("kind", "amount_pence", "exempt_if", "lot_field", "self_cleaning")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _MAP, _SEQ = (_TAG + name for name in ("str", "int", "bool", "map", "seq"))
_SCALAR_NAMES = {_TAG + name: label for name, label in (
    ("int", "a number"), ("float", "a number"), ("bool", "yes/no (true/false)"), ("null", "empty"),
    ("timestamp", "a date"))}
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _one_of(values) -> str:
    return ", ".join(values)


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f'did you mean "{close[0]}"? ' if close else ""


def _line_of(position: int, text: str) -> int:
    return text.count("\n", 0, position) + 1


def _named(what: str, node) -> str | None:
    """"question public_liability" for a mapping whose id is well formed, before it is checked."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if (isinstance(key, yaml.ScalarNode) and key.value == "id" and isinstance(value, yaml.ScalarNode)
                    and value.tag == _STR and len(value.value) <= ID_LIMIT and ID_PATTERN.fullmatch(value.value)):
                return f"{what} {value.value}"
    return None


@dataclass
class _Reference:
    """A rule field naming another question, checked once every question has been read."""

    line: int
    where: str
    field: str
    target: str
    implicit: bool = False


class _Checker:
    """Walks the composed YAML nodes, noting each problem with its line, and builds the plain
    data ``parse`` turns into a Questionnaire (meaningful only when there are no problems)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, int, str]] = []
        self.question_lines: dict[str, int] = {}
        self.question_types: dict[str, str] = {}
        self.references: list[_Reference] = []

    def add(self, at, where: str, message: str) -> None:
        line = at if isinstance(at, int) else at.start_mark.line + 1
        self.found.append((line, len(self.found), f"Line {line}{', ' + where if where else ''}: {message}"))

    @property
    def problems(self) -> list[str]:
        return [message for _line, _order, message in sorted(self.found)]

    # Shapes ---------------------------------------------------------------------------------

    def _tag_problem(self, node, where: str, name: str, wanted: str) -> None:
        if node.tag in _SCALAR_NAMES:
            self.add(node, where, f"{name} must be {wanted}, not {_SCALAR_NAMES[node.tag]}"
                     + (f": put it in quotes (\"{node.value}\")" if wanted == "text" and node.value else ""))
        elif node.tag == _STR:
            self.add(node, where, f'{name} must be {wanted}, not the text "{node.value}"')
        elif isinstance(node, yaml.MappingNode):
            self.add(node, where, f"{name} must be {wanted}, not a list of keys and values")
        elif isinstance(node, yaml.SequenceNode):
            self.add(node, where, f"{name} must be {wanted}, not a list")
        else:
            self.add(node, where, f"{name} uses the YAML tag {node.tag}, which is not allowed here")

    def mapping(self, node, where: str, name: str, allowed: tuple[str, ...]) -> dict | None:
        """The node's keys and value nodes, or None (noted) if it is not a mapping."""
        if not isinstance(node, yaml.MappingNode) or node.tag != _MAP:
            self._tag_problem(node, where, name, "a set of keys and values (key: value)")
            return None
        found: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag not in (_STR, _INT, _BOOL):
                self.add(key, where, "a key must be a word, like id or label")
                continue
            name_ = key.value
            if name_ in found:
                self.add(key, where, f'"{name_}" is given twice (first on line {found[name_].start_mark.line + 1})')
                continue
            if name_ not in allowed:
                self.add(key, where, f'unknown key "{name_}" ({_suggest(name_, allowed)}use one of: {_one_of(allowed)})')
                continue
            found[name_] = value
        return found

    def sequence(self, node, where: str, name: str) -> list | None:
        if not isinstance(node, yaml.SequenceNode) or node.tag != _SEQ:
            self._tag_problem(node, where, name, "a list (lines starting with -)")
            return None
        if not node.value:
            self.add(node, where, f"{name} is an empty list")
            return None
        return node.value

    def text(self, node, where: str, name: str, *, limit: int | None = None, allow_empty: bool = False) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            if allow_empty and node.tag == _TAG + "null":
                return ""
            self._tag_problem(node, where, name, "text")
            return None
        value = node.value
        if not allow_empty and not value.strip():
            self.add(node, where, f"{name} is empty")
            return None
        if limit is not None and len(value) > limit:
            self.add(node, where, f"{name} must be {limit} characters or fewer (it is {len(value)})")
            return None
        return value

    def identifier(self, node, where: str, name: str) -> str | None:
        value = self.text(node, where, name)
        if value is None:
            return None
        if len(value) > ID_LIMIT or not ID_PATTERN.fullmatch(value):
            self.add(node, where, f'{name} "{value}" must start with a lower-case letter and have only lower-case '
                     f"letters, digits and underscores (_), {ID_LIMIT} characters at most")
            return None
        return value

    def boolean(self, node, where: str, name: str) -> bool | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self._tag_problem(node, where, name, "true or false")
            return None
        return _CONSTRUCTOR.construct_yaml_bool(node)

    def integer(self, node, where: str, name: str) -> int | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
            self._tag_problem(node, where, name, "a whole number")
            return None
        try:
            return _CONSTRUCTOR.construct_yaml_int(node)
        except ValueError:  # more digits than Python will convert
            self.add(node, where, f"{name} is not a number this service can hold")
            return None

    # The questionnaire ------------------------------------------------------------------------

    def document(self, root) -> dict:
        top = self.mapping(root, "", "the file", TOP_KEYS)
        if top is None:
            return {}
        raw: dict = {}
        if "version" not in top:
            self.add(root, "", 'there is no "version:" line (the version’s name, like ccin-sq-2025-01)')
        else:
            version = self.text(top["version"], "", "version")
            if version is not None:
                if len(version) > VERSION_LIMIT or not VERSION_PATTERN.fullmatch(version):
                    self.add(top["version"], "", f'version "{version}" must have only lower-case letters, digits and '
                             f"hyphens (-), {VERSION_LIMIT} characters at most, like ccin-sq-2025-01")
                else:
                    raw["version"] = version
        if "title" not in top:
            self.add(root, "", 'there is no "title:" line (the questionnaire’s title, as suppliers will see it)')
        else:
            raw["title"] = self.text(top["title"], "", "title", limit=TITLE_LIMIT)
        if "sections" not in top:
            self.add(root, "", 'there is no "sections:" list')
            return raw
        sections = self.sequence(top["sections"], "", "sections")
        raw["sections"] = []
        section_lines: dict[str, int] = {}
        for number, node in enumerate(sections or [], start=1):
            raw["sections"].append(self.section(node, number, section_lines))
        self.check_references()
        return raw

    def section(self, node, number: int, section_lines: dict[str, int]) -> dict:
        where = _named("section", node) or f"section {number}"
        fields = self.mapping(node, where, "a section", SECTION_KEYS)
        if fields is None:
            return {}
        raw: dict = {}
        if "id" not in fields:
            self.add(node, where, 'the section has no "id:"')
        else:
            section_id = self.identifier(fields["id"], where, "section id")
            if section_id is not None:
                where = f"section {section_id}"
                if section_id in section_lines:
                    self.add(fields["id"], where, f'section id "{section_id}" is already used by the section on '
                             f"line {section_lines[section_id]}")
                else:
                    section_lines[section_id] = fields["id"].start_mark.line + 1
                raw["id"] = section_id
        if "title" not in fields:
            self.add(node, where, 'the section has no "title:"')
        else:
            raw["title"] = self.text(fields["title"], where, "title", limit=TITLE_LIMIT)
        if "description" in fields:
            raw["description"] = self.text(fields["description"], where, "description", allow_empty=True)
        if "questions" not in fields:
            self.add(node, where, 'the section has no "questions:" list')
            return raw
        questions = self.sequence(fields["questions"], where, "questions")
        raw["questions"] = [self.question(q, where, n) for n, q in enumerate(questions or [], start=1)]
        return raw

    def question(self, node, section_where: str, number: int) -> dict:
        where = _named("question", node) or f"question {number} of {section_where}"
        fields = self.mapping(node, where, "a question", QUESTION_KEYS)
        if fields is None:
            return {}
        raw: dict = {}
        question_id = None
        if "id" not in fields:
            self.add(node, where, 'the question has no "id:"')
        else:
            question_id = self.identifier(fields["id"], where, "question id")
            if question_id is not None:
                where = f"question {question_id}"
                if question_id in RESERVED_IDS:
                    self.add(fields["id"], where, f'"{question_id}" is the name of a part of the form itself: choose another id')
                elif question_id in self.question_lines:
                    self.add(fields["id"], where, f'question id "{question_id}" is already used by the question on '
                             f"line {self.question_lines[question_id]}")
                else:
                    self.question_lines[question_id] = fields["id"].start_mark.line + 1
                raw["id"] = question_id
        question_type = None
        if "type" not in fields:
            self.add(node, where, f'the question has no "type:" (use one of: {_one_of(QUESTION_TYPES)})')
        else:
            value = self.text(fields["type"], where, "type")
            if value is not None and value not in QUESTION_TYPES:
                self.add(fields["type"], where, f'unknown type "{value}" ({_suggest(value, QUESTION_TYPES)}use one of: '
                         f"{_one_of(QUESTION_TYPES)})")
            elif value is not None:
                question_type = raw["type"] = value
                if question_id is not None and question_id not in self.question_types:
                    self.question_types[question_id] = value
        if "label" not in fields:
            self.add(node, where, 'the question has no "label:" (the question as suppliers will read it)')
        else:
            raw["label"] = self.text(fields["label"], where, "label")
        if "hint" in fields:
            raw["hint"] = self.text(fields["hint"], where, "hint", allow_empty=True)
        if "required" in fields:
            raw["required"] = self.boolean(fields["required"], where, "required")
        if "rule" in fields:
            raw["rule"] = self.rule(fields["rule"], where, question_type)
        return raw

    def rule(self, node, where: str, question_type: str | None) -> dict:
        fields = self.mapping(node, where, "rule", RULE_KEYS)
        if fields is None:
            return {}
        if "kind" not in fields:
            self.add(node, where, f'the rule has no "kind:" (use one of: {_one_of(RULE_KINDS)})')
            return {}
        kind = self.text(fields["kind"], where, "rule kind")
        if kind is None:
            return {}
        if kind not in RULE_KINDS:
            self.add(fields["kind"], where, f'unknown rule kind "{kind}" ({_suggest(kind, RULE_KINDS)}use one of: '
                     f"{_one_of(RULE_KINDS)})")
            return {}
        raw: dict = {"kind": kind}
        types = RULE_TYPES[kind]
        if question_type is not None and types is not None and question_type not in types:
            self.add(fields["kind"], where, f"rule kind {kind} can only assess a question of type {' or '.join(types)} "
                     f"(this question is {question_type})")
        takes = RULE_FIELDS.get(kind, {})
        for name, required in takes.items():
            if required and name not in fields:
                self.add(node, where, f'rule kind {kind} needs "{name}:"'
                         + (f" (one of: {_one_of(LOT_FIELDS)})" if name == "lot_field" else
                            " (the minimum in pence, e.g. 500000000 for £5,000,000)" if name == "amount_pence" else ""))
        for name, value in fields.items():
            if name == "kind":
                continue
            if name not in takes:
                self.add(value, where, f'rule kind {kind} does not take "{name}"'
                         + (f" (it takes only {_one_of(takes)})" if takes else ""))
                continue
            if name == "amount_pence":
                amount = self.integer(value, where, "amount_pence")
                if amount is not None and not 0 <= amount <= MAX_MONEY_PENCE:
                    self.add(value, where, f"amount_pence must be between 0 and {MAX_MONEY_PENCE} (in pence)")
                elif amount is not None:
                    raw[name] = amount
            elif name == "lot_field":
                lot_field = self.text(value, where, "lot_field")
                if lot_field is not None and lot_field not in LOT_FIELDS:
                    self.add(value, where, f'lot_field "{lot_field}" is not a lot’s insurance level '
                             f"({_suggest(lot_field, LOT_FIELDS)}use one of: {_one_of(LOT_FIELDS)})")
                elif lot_field is not None:
                    raw[name] = lot_field
            else:  # exempt_if, self_cleaning: another question's id
                target = self.text(value, where, name)
                if target is not None:
                    raw[name] = target
                    self.references.append(_Reference(value.start_mark.line + 1, where, name, target))
        if kind == "mandatory_exclusion" and "self_cleaning" not in fields:
            self.references.append(_Reference(node.start_mark.line + 1, where, "self_cleaning",
                                              DEFAULT_SELF_CLEANING, implicit=True))
        return raw

    def check_references(self) -> None:
        for ref in self.references:
            wanted = REFERENCE_TYPES[ref.field]
            if ref.target not in self.question_lines:
                if ref.implicit:
                    self.add(ref.line, ref.where, f'a mandatory_exclusion rule reads self-cleaning evidence from question '
                             f'"{ref.target}", which is not in the file: add that question, or name another '
                             "with self_cleaning:")
                else:
                    self.add(ref.line, ref.where, f'{ref.field} names question "{ref.target}", which is not in the file')
            elif f"question {ref.target}" == ref.where:
                self.add(ref.line, ref.where, f"{ref.field} must name another question, not this one")
            elif ref.target in self.question_types and self.question_types[ref.target] not in wanted:
                self.add(ref.line, ref.where, f'{ref.field} names question "{ref.target}", which is of type '
                         f"{self.question_types[ref.target]}: it must be of type {' or '.join(wanted)}")


def _scan(text: str) -> list[str]:
    """Read the YAML as events only (nothing is built): syntax errors, aliases and nesting."""
    problems: list[str] = []
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                problems.append(f"Line {event.start_mark.line + 1}: the alias *{event.anchor} is not allowed: "
                                "write the value out in full")
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    problems.append(f"Line {event.start_mark.line + 1}: the file is nested more than {MAX_DEPTH} "
                                    "levels deep, which no questionnaire needs")
                    return problems
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        return problems + [_syntax_problem(exc)]
    except yaml.reader.ReaderError as exc:
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return problems + [f"Line {_line_of(exc.position, text)}: the file contains a character YAML does not "
                           f"allow ({character}): save it again as plain UTF-8 text"]
    return problems


def _syntax_problem(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in (exc.problem or ""):
        return (f"Line {line}: a second YAML document starts here (a --- line): a questionnaire is one "
                "document, so remove the line or make it a separate file")
    detail = exc.problem or "it cannot be read"
    if exc.context:
        where = f" on line {exc.context_mark.line + 1}" if exc.context_mark and exc.context_mark.line + 1 != line else ""
        detail += f" ({exc.context}{where})"
    return (f"Line {line}: this is not valid YAML: {detail}. Check the indentation, colons and quotes on this "
            "line and the one before")


def _read(text: str) -> tuple[dict, list[str]]:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        return {}, [f"The file is larger than {MAX_SOURCE_BYTES // 1024} KB, which no questionnaire needs"]
    problems = _scan(text)
    if problems:
        return {}, problems
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:  # e.g. a second document in the file
        return {}, [_syntax_problem(exc)]
    if root is None:
        return {}, ["Line 1: the file is empty"]
    checker = _Checker()
    raw = checker.document(root)
    return raw, checker.problems


# Every questionnaire asks the exclusion grounds of reg 57 in these sections: a renewed
# self-declaration (reg 34) asks them again, read from the version the supplier is on.
REQUIRED_SECTIONS = ("mandatory_exclusion", "discretionary_exclusion")


def problems_in(text: str) -> list[str]:
    """Everything wrong with a questionnaire's YAML text, each naming its line and question id
    where it can; [] when it can be published."""
    raw, problems = _read(text)
    if not problems:
        have = {section["id"] for section in raw["sections"]}
        problems += [f"The questionnaire has no section {needed!r}: every version asks the exclusion grounds "
                     "there, and renewed self-declarations ask them again" for needed in REQUIRED_SECTIONS
                     if needed not in have]
    return problems


def parse(text: str, expected_version: str | None = None) -> Questionnaire:
    """Read a questionnaire from its YAML text. Raises QuestionnaireError listing what is wrong."""
    raw, problems = _read(text)
    if problems:
        raise QuestionnaireError("; ".join(problems), problems)
    version = raw["version"]
    if expected_version is not None and version != expected_version:
        raise QuestionnaireError(f"The file says it is version {version!r}, not {expected_version!r}")
    sections = []
    for raw_section in raw["sections"]:
        questions = tuple(
            Question(id=q["id"], type=q["type"], label=q["label"], rule=Rule(**q.get("rule", {"kind": "info"})),
                     section_id=raw_section["id"], hint=q.get("hint", ""), required=q.get("required", True))
            for q in raw_section["questions"])
        sections.append(Section(id=raw_section["id"], title=raw_section["title"], questions=questions,
                                description=(raw_section.get("description") or "").strip()))
    return Questionnaire(version=version, title=raw["title"], sections=tuple(sections))


@lru_cache(maxsize=32)
def _parsed(sha256: str, version: str, text: str) -> Questionnaire:
    # Keyed by the content's hash: a published version never changes, and a draft replaced under
    # the same name has another hash, so no worker ever reads stale questions.
    return parse(text, expected_version=version)


def shipped_text(name: str) -> str:
    """A questionnaire shipped with the code (dps/questionnaires/NAME.yaml): the demo's content."""
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise QuestionnaireError(f"Bad questionnaire file name {name!r}")
    return (resources.files("dps") / "questionnaires" / f"{name}.yaml").read_text(encoding="utf-8")


def load(version: str) -> Questionnaire:
    """The questions of a version held in the database (published or a draft being previewed)."""
    from .extensions import db
    from .models import QuestionnaireVersion

    row = db.session.execute(
        db.select(QuestionnaireVersion.sha256, QuestionnaireVersion.source)
        .where(QuestionnaireVersion.version == version)).first()
    if row is None:
        raise QuestionnaireError(f"There is no questionnaire version {version!r}")
    return _parsed(row.sha256, version, row.source)


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
        return Result(q, PASS, plural(len(value), "document")) if value else Result(q, FAIL, "No document")
    raise QuestionnaireError(f"No assessment for rule {rule.kind!r}")
