"""Validating OCDS exports against the schema files shipped in ``ocds_schema/`` (DESIGN 6).

The core release schema is extended by the lots, bids and techniques extensions (RFC 7386 merge
patches), registered under its canonical ``$id`` so the package schemas' references resolve to
the merged schema, and checked with a Draft 4 validator and a format checker. Nothing is ever
fetched: the reference registry holds the shipped files and refuses every other URI.

Exports stream release by release, so the package is never validated whole. Instead each release
(``validate_release``), each record's envelope and the package envelope (``validate_envelope``) are
checked before they are written. On top of the schema, two promises of ours:
- no field the merged schema does not define (OCDS allows additional fields; the one we add is a
  paged package's ``links``, defined below as OCDS's API extension has it), and
- codes of open codelists come from the codelist CSVs we ship.
Each failure raises ``ExportInvalid`` with a message naming the field's path.

The validators are built once per process (``_checker``). Every release of a page or an export
is checked, so the hot path only asks "valid or not", of the release schema compiled to Python
by fastjsonschema (ten times jsonschema's speed), with the formats checked as jsonschema checks
them. Only for a release it refuses does jsonschema, the reference, work out what is wrong
(``best_match`` over its errors, with the path), and it has the last word: a release it finds
nothing wrong with passes.
"""
from __future__ import annotations

import copy
import csv
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import fastjsonschema
from jsonschema import Draft4Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from . import ExportInvalid

SCHEMA_DIR = Path(__file__).resolve().parent / "ocds_schema"
BASE_URI = "https://standard.open-contracting.org/schema/1__1__5/"
RELEASE_SCHEMA_ID = BASE_URI + "release-schema.json"
RELEASE_PACKAGE_SCHEMA_ID = BASE_URI + "release-package-schema.json"
RECORD_PACKAGE_SCHEMA_ID = BASE_URI + "record-package-schema.json"
VERSIONED_RELEASE_SCHEMA_ID = BASE_URI + "versioned-release-validation-schema.json"
# Merge order; each name is a folder under ocds_schema/extensions.
EXTENSIONS = ("lots", "bids", "techniques")
# What the packages' "extensions" field lists: the extension.json of each version we ship.
EXTENSION_URLS = (
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_lots_extension/v1.1.5/extension.json",
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_bid_extension/v1.1.5/extension.json",
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_techniques_extension/master/extension.json",
)


# A paged package's links (the public endpoints): the addresses of the next and previous pages,
# as the OCDS API (pagination) extension defines them at package level, for both kinds of package.
PAGE_LINKS = {
    "title": "Links",
    "description": "The addresses of the next and previous pages of a package served in pages.",
    "type": "object",
    "properties": {
        "next": {"title": "Next page", "description": "The URL of the next page.", "type": "string",
                 "format": "uri"},
        "prev": {"title": "Previous page", "description": "The URL of the previous page.", "type": "string",
                 "format": "uri"},
    },
    "minProperties": 1,
}


class OfflineOnly(LookupError):
    """A schema reference to something not shipped in ocds_schema/: never fetched, refused.
    (The registry wraps it in referencing's ``Unretrievable``.)"""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: returns ``target`` patched, leaving both arguments unchanged."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _canonical(value: Any) -> Any:
    # JSON Schema equality: 1 and 1.0 are the same number; true and 1 are not the same value.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _unique_items(validator, unique, instance, schema):
    """uniqueItems in linear time. jsonschema compares every pair of items, which is quadratic:
    a compiled release with 20,000 transactions would take hours."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(instance):
        key = json.dumps(_canonical(item), sort_keys=True)
        if key in seen:
            yield ValidationError(f"has non-unique elements (item {index} repeats item {seen[key]})")
            return
        seen[key] = index


# Draft 4, with the linear uniqueItems above and everything else as jsonschema has it.
OCDSValidator = validators.extend(Draft4Validator, {"uniqueItems": _unique_items})


def _load(relative: str) -> dict:
    with open(SCHEMA_DIR / relative, encoding="utf-8") as f:
        return json.load(f)


def merged_release_schema() -> dict:
    schema = _load("release-schema.json")
    for name in EXTENSIONS:
        schema = merge_patch(schema, _load(f"extensions/{name}/release-schema.json"))
    return schema


def _refuse_retrieval(uri: str) -> Resource:
    # Called by the registry for any URI it does not hold: we never go to the network.
    raise OfflineOnly(f"{uri} is not shipped in {SCHEMA_DIR.name}/ and is never fetched")


def _formats(schema: Any) -> set[str]:
    """Every format a schema names."""
    if isinstance(schema, dict):
        found = {schema["format"]} if isinstance(schema.get("format"), str) else set()
        return found.union(*(_formats(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_formats(value) for value in schema))
    return set()


def _compiled(schema: dict, format_checker: FormatChecker) -> Callable[[Any], Any]:
    """``schema`` compiled to a Python function that raises JsonSchemaException at the first
    error. Its formats are checked exactly as ``format_checker`` checks them (fastjsonschema's
    own date-time takes 31 June; and a format the checker does not check, uri without rfc3987,
    is not checked either); it fills in no defaults, and resolves no reference outside the
    schema. (It is given a copy: compiling rewrites the schema's references in place.)"""
    formats = {name: (lambda value, name=name: format_checker.conforms(value, name)) for name in _formats(schema)}
    refuse = {scheme: _refuse_retrieval for scheme in ("http", "https", "ftp", "file", "data")}
    return fastjsonschema.compile(copy.deepcopy(schema), handlers=refuse, formats=formats, use_default=False,
                                  detailed_exceptions=False)


def _envelope_schema(package_schema: dict, contents: str) -> dict:
    """The package schema without its list of releases or records (validated one by one), with
    the links of a paged package."""
    schema = copy.deepcopy(package_schema)
    schema["properties"].pop(contents)
    schema["properties"]["links"] = PAGE_LINKS
    schema["required"] = [name for name in schema["required"] if name != contents]
    return schema


@dataclass(frozen=True)
class _Checker:
    release_schema: dict
    release: Draft4Validator
    release_compiled: Callable[[Any], Any]
    release_fields: _Walker
    envelopes: dict[str, Draft4Validator]
    envelope_schemas: dict[str, dict]
    envelope_fields: dict[str, _Walker]
    record_schema: dict
    record: Draft4Validator
    record_fields: _Walker
    codelists: dict[str, frozenset[str]]
    packages: dict[str, Draft4Validator]


def _codelists() -> dict[str, frozenset[str]]:
    lists = {}
    for path in sorted((SCHEMA_DIR / "codelists").glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            lists[path.name] = frozenset(row["Code"] for row in csv.DictReader(f))
    return lists


@lru_cache(maxsize=1)
def _checker() -> _Checker:
    """Built once per process: the merged schema, the registry and the validators."""
    release_schema = merged_release_schema()
    release_package = _load("release-package-schema.json")
    record_package = _load("record-package-schema.json")
    registry = Registry(retrieve=_refuse_retrieval).with_resources([
        (RELEASE_SCHEMA_ID, Resource.from_contents(release_schema, default_specification=DRAFT4)),
        (RELEASE_PACKAGE_SCHEMA_ID, Resource.from_contents(release_package, default_specification=DRAFT4)),
        (RECORD_PACKAGE_SCHEMA_ID, Resource.from_contents(record_package, default_specification=DRAFT4)),
        (VERSIONED_RELEASE_SCHEMA_ID,
         Resource.from_contents(_load("versioned-release-validation-schema.json"), default_specification=DRAFT4)),
    ]).crawl()
    format_checker = Draft4Validator.FORMAT_CHECKER
    if "date-time" not in format_checker.checkers:  # rfc3339-validator missing: refuse to pretend
        raise RuntimeError("OCDS validation needs rfc3339-validator to check date-time formats")

    def validator(schema: dict) -> Draft4Validator:
        return OCDSValidator(schema, registry=registry, format_checker=format_checker)

    envelope_schemas = {
        "releases": _envelope_schema(release_package, "releases"),
        "records": _envelope_schema(record_package, "records"),
    }
    # A record without its releases and compiled release (each validated as a release).
    record_schema = copy.deepcopy(record_package["definitions"]["record"])
    for name in ("releases", "compiledRelease", "versionedRelease"):
        record_schema["properties"].pop(name)
    record_schema["required"] = [name for name in record_schema["required"] if name != "releases"]
    codelists = _codelists()
    return _Checker(
        release_schema=release_schema,
        release=validator(release_schema),
        release_compiled=_compiled(release_schema, format_checker),
        release_fields=_Walker(release_schema, codelists),
        envelopes={kind: validator(schema) for kind, schema in envelope_schemas.items()},
        envelope_schemas=envelope_schemas,
        envelope_fields={kind: _Walker(schema, codelists) for kind, schema in envelope_schemas.items()},
        record_schema=record_schema,
        record=validator(record_schema),
        record_fields=_Walker(record_schema, codelists),
        codelists=codelists,
        packages={"releases": validator(release_package), "records": validator(record_package)},
    )


def format_path(prefix: str, parts) -> str:
    """('releases[3]', ['awards', 0, 'value']) -> 'releases[3].awards[0].value'."""
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _schema_errors(validator: Draft4Validator, instance: Any, where: str,
                   compiled: Callable[[Any], Any] | None = None) -> None:
    """Raise ExportInvalid naming the field of the most relevant error, if ``instance`` has one.
    ``compiled``: the same schema compiled, asked first; ``validator`` only works out the errors
    of an instance it refuses."""
    if compiled is not None:
        try:
            compiled(instance)
            return
        except fastjsonschema.JsonSchemaException:
            pass
    elif validator.is_valid(instance):  # stops at the first error; makes none of the others
        return
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise ExportInvalid(f"{format_path(where, error.absolute_path)}: {error.message}")


# The undefined-fields and codelist walk ---------------------------------------------------------

class _Walker:
    """Walks an instance and the schema together, following $ref within the schema. One for each
    schema, built with the validators: it keeps the patterns of patternProperties compiled."""

    def __init__(self, root: dict, codelists: dict[str, frozenset[str]]):
        self.root = root
        self.codelists = codelists
        self._patterns: dict[str, re.Pattern] = {}

    def resolve(self, node: dict) -> dict:
        seen = 0
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ExportInvalid(f"schema reference {ref!r} is not local")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
            seen += 1
            if seen > 50:
                raise ExportInvalid(f"schema reference loop at {ref!r}")
        return node

    def _pattern(self, pattern: str) -> re.Pattern:
        if pattern not in self._patterns:
            self._patterns[pattern] = re.compile(pattern)
        return self._patterns[pattern]

    def problems(self, instance: Any, node: dict, path: list) -> Iterator[tuple[list, str]]:
        node = self.resolve(node)
        codelist = node.get("codelist")
        if codelist and node.get("openCodelist") and codelist in self.codelists:
            codes = instance if isinstance(instance, list) else [instance]
            for code in codes:
                if isinstance(code, str) and code not in self.codelists[codelist]:
                    yield path, f"{code!r} is not a code of the {codelist} codelist"
        if isinstance(instance, dict):
            properties = node.get("properties", {})
            patterns = node.get("patternProperties", {})
            for key, value in instance.items():
                if key in properties:
                    yield from self.problems(value, properties[key], [*path, key])
                    continue
                matched = [p for p in patterns if self._pattern(p).search(key)]
                if matched:
                    yield from self.problems(value, patterns[matched[0]], [*path, key])
                    continue
                yield [*path, key], "is not a field the OCDS schema (with our extensions) defines"
        elif isinstance(instance, list):
            items = node.get("items")
            if isinstance(items, dict):
                for index, value in enumerate(instance):
                    yield from self.problems(value, items, [*path, index])


def _undefined(walker: _Walker, instance: Any, where: str) -> None:
    for path, message in walker.problems(instance, walker.root, []):
        raise ExportInvalid(f"{format_path(where, path)}: {message}")


# The public functions ----------------------------------------------------------------------------

def _who(release: dict) -> str:
    return f" (ocid {release.get('ocid')!r}, release {release.get('id')!r})"


def validate_release(release: dict, where: str = "release") -> None:
    """Raise ExportInvalid naming the field (``where`` is its place, e.g. 'releases[3]') unless
    ``release`` is a valid OCDS 1.1.5 release with our extensions and uses no undefined field."""
    checker = _checker()
    try:
        _schema_errors(checker.release, release, where, checker.release_compiled)
        _undefined(checker.release_fields, release, where)
    except ExportInvalid as exc:
        raise ExportInvalid(exc.message + _who(release)) from None


def validate_envelope(envelope: dict, contents: str = "releases") -> None:
    """Check a package without its ``contents`` ('releases' or 'records'), which are written
    (and checked) one by one."""
    checker = _checker()
    _schema_errors(checker.envelopes[contents], envelope, "package")
    _undefined(checker.envelope_fields[contents], envelope, "package")


def validate_package_envelope(package_without_releases: dict) -> None:
    """A release package's envelope: everything but ``releases``."""
    validate_envelope(package_without_releases, "releases")


def validate_whole_package(package: dict, contents: str = "releases") -> None:
    """Check a whole package in one go (a second opinion for tests and small packages: the
    exports themselves stream and check piece by piece). Schema only, no undefined-field walk."""
    _schema_errors(_checker().packages[contents], package, "package")


def validate_record_envelope(record: dict, where: str = "record") -> None:
    """A record without its releases and compiled release (each checked as a release)."""
    checker = _checker()
    _schema_errors(checker.record, record, where)
    _undefined(checker.record_fields, record, where)
