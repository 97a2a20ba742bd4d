"""Ids out of range are not found, everywhere (issue 14).

Every route of the URL map with an integer part is requested with 2^31 (one past PostgreSQL's
INTEGER) and 2^63 (one past SQLite's and BIGINT's), by GET and, where the route takes it, by POST
with a valid CSRF token, as every role: the answer is the service's 404 page, never a 5xx. Then
ids that arrive in forms and query strings get the same answer. Runs on SQLite and, with
DPS_TEST_DATABASE_URL, on PostgreSQL (where 2^31 alone used to be a 500).
"""
from __future__ import annotations

import re

import pytest
from werkzeug.routing import IntegerConverter

from dps import BigIdConverter

HUGE = (2 ** 31, 2 ** 63)
ROLES = ("anonymous", "supplier", "buyer", "dps_admin", "auditor")


@pytest.fixture
def browsers(app, factory, signed_in):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a failing route answers as in production: a 500 page
    found = {"anonymous": app.test_client()}
    team_org = factory.organisation()
    for role in ROLES[1:]:
        found[role], _ = signed_in(role, organisation_id=team_org if role in ("dps_admin", "auditor") else None)
    return found


def _token(browser, role: str) -> str:
    # Signed in, every page's layout has the sign-out form; signed out, the sign-in page has one.
    return browser.csrf_token("/sign-in" if role == "anonymous" else "/")


def _integer_routes(app) -> list[tuple[object, list[str]]]:
    found = []
    for rule in app.url_map.iter_rules():
        names = [name for name, converter in rule._converters.items() if isinstance(converter, IntegerConverter)]
        if names:
            found.append((rule, names))
    return found


def _url(rule, names: list[str], value: int) -> str:
    """The rule's address with ``value`` for every integer part and a plain word for the others."""
    def part(match: re.Match) -> str:
        name = match.group(1).split(":")[-1]
        return str(value) if name in names else "x"
    return re.sub(r"<([^>]+)>", part, rule.rule)


def test_the_app_int_is_bounded_and_every_integer_route_uses_it(app):
    routes = _integer_routes(app)
    assert len(routes) > 60  # the whole map, not a sample
    for rule, names in routes:
        for name in names:
            converter = rule._converters[name]
            limit = 2 ** 63 - 1 if isinstance(converter, BigIdConverter) else 2 ** 31 - 1
            assert converter.max == limit, (rule.rule, name)


def test_every_route_with_an_id_too_large_is_not_found_for_every_role(app, browsers):
    failures = []
    for role, browser in browsers.items():
        token = _token(browser, role)
        for rule, names in _integer_routes(app):
            big_route = any(isinstance(rule._converters[n], BigIdConverter) for n in names)
            for value in HUGE:
                url = _url(rule, names, value)
                methods = [m for m in ("GET", "POST") if m in rule.methods]
                for method in methods:
                    if method == "GET":
                        response = browser.get(url)
                    else:
                        response = browser.post(url, data={"csrf_token": token})
                    status = response.status_code
                    if big_route and value < 2 ** 63 - 1:
                        # A BIGINT id in range: the route's own answer (sign in, role gate, not found).
                        ok = status in (302, 403, 404)
                    else:
                        ok = status == 404 and "Page not found" in response.get_data(as_text=True)
                    if not ok:
                        failures.append(f"{role} {method} {url}: {status}")
    assert not failures, failures


def test_ids_in_forms_and_query_strings_too_large_are_not_found(app, factory, signed_in):
    app.config["PROPAGATE_EXCEPTIONS"] = False
    team, _ = signed_in("dps_admin", organisation_id=factory.organisation())
    supplier, _ = signed_in("supplier")
    for value in (*HUGE, -(2 ** 31) - 1, 10 ** 30):
        # A select box coerced to int (the organisation of a new buyer account).
        response = team.submit("/team/accounts/new-buyer", {"organisation": str(value), "name": "A Buyer",
                                                            "email": "a.buyer@example.org"})
        assert response.status_code == 404, value
        # The members list's keyset ids.
        assert team.get(f"/team/members?after={value}").status_code == 404, value
        assert team.get(f"/team/members?before={value}").status_code == 404, value
    # The audit log reads its own page links and organisation pick: an id past the column is
    # none (the newest page, no pick), never an error.
    for key in ("before", "after", "organisation_id"):
        for value in (*HUGE, 10 ** 30):
            assert team.get(f"/team/audit?{key}={value}&organisation=x").status_code in (200, 400), (key, value)
    # Ids in range still work as before: the form answers for itself.
    response = team.submit("/team/accounts/new-buyer", {"organisation": "12345", "name": "A Buyer",
                                                        "email": "a.buyer@example.org"})
    assert response.status_code in (200, 400)
    assert team.get("/team/members?after=5").status_code == 200
    # A supplier's "start from my previous application" field.
    token = supplier.csrf_token("/")
    response = supplier.post("/supplier/applications/new", data={"csrf_token": token, "agreement": "1",
                                                                  "previous": str(2 ** 63)})
    assert response.status_code == 404


def test_cursor_ids_past_an_integer_column_give_the_first_page(app, factory, signed_in):
    from dps.pagination import encode_cursor

    app.config["PROPAGATE_EXCEPTIONS"] = False
    team, _ = signed_in("dps_admin", organisation_id=factory.organisation())
    # The accounts list is sorted by organisation name and id, then name and id (INTEGERs): a
    # cursor with an id past 32 bits is not one this service made, and gives the first page (as
    # the list's own text says), not a database error.
    for value in (2 ** 31, 2 ** 62):
        for cursor in (encode_cursor(["a", value, "b", 1]), encode_cursor(["a", 1, "b", value])):
            for direction in ("after", "before"):
                response = team.get(f"/team/accounts?{direction}={cursor}")
                assert response.status_code == 200, (value, direction)
